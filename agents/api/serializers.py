"""Agents API bodies. Input serializers only parse; agents.services validates configs, classes and tools."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from agents.models import Agent, AgentVersion
from agents.services import CONVERSATION_STARTERS_MAX, QUICK_REPLIES_MAX
from aihub.access.api.serializers import StrictSerializer
from jobs.api.serializers import JOB_EXAMPLE, THREAD_EXAMPLE_ID
from jobs.api.submission import MessageSubmitSerializer, thread_field

CLASS_EXAMPLE: dict[str, Any] = {
    "name": "chat",
    "description": "A model with a system prompt and a window of the conversation.",
    "needs_model": True,
    "tools": [],
    "config_schema": {
        "type": "object",
        "title": "ChatConfig",
        "additionalProperties": False,
        "properties": {
            "temperature": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 2}, {"type": "null"}]},
            "history_window": {"type": "integer", "default": 20, "minimum": 0, "maximum": 500},
        },
    },
}

AGENT_EXAMPLE: dict[str, Any] = {
    "id": "5a0c8f43-9a6e-4d0e-8f3b-1c2d3e4f5a6b",
    "slug": "support-bot",
    "name": "Support bot",
    "description": "Answers questions about our product.",
    "class_name": "tools",
    "config": {"temperature": 0.2, "max_steps": 5, "history_window": 20},
    "model": "offline/aihub-offline-1",
    "system_prompt": "You are a friendly support agent.",
    "tools": ["calculator", "current_time"],
    "conversation_starters": ["What can you do?", "What is 2 * (3 + 4)?"],
    "quick_replies": ["Thanks!", "Tell me more"],
    "enabled": True,
    "version": 3,
    "created_at": "2025-01-01T12:00:00Z",
    "updated_at": "2025-01-02T08:30:00Z",
}


@extend_schema_serializer(examples=[OpenApiExample("The chat class", value=CLASS_EXAMPLE, response_only=True)])
class AgentClassSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    needs_model = serializers.BooleanField(help_text="Whether instances need a model id (echo does not).")
    tools = serializers.ListField(child=serializers.CharField(), help_text="Tools an instance of this class may use.")
    config_schema = serializers.JSONField(help_text="JSON schema of the `config` of agents of this class.")


@extend_schema_serializer(examples=[OpenApiExample("A tools agent", value=AGENT_EXAMPLE, response_only=True)])
class AgentSerializer(serializers.ModelSerializer):
    config = serializers.JSONField(help_text="Normalised: every setting of the class's schema, defaults filled in.")
    tools = serializers.ListField(child=serializers.CharField())
    conversation_starters = serializers.ListField(
        child=serializers.CharField(), help_text="Prompts a frontend offers to start a new thread with."
    )
    quick_replies = serializers.ListField(
        child=serializers.CharField(), help_text="Short answers a frontend suggests after a reply."
    )

    class Meta:
        model = Agent
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "class_name",
            "config",
            "model",
            "system_prompt",
            "tools",
            "conversation_starters",
            "quick_replies",
            "enabled",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class _AgentFields(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    class_name = serializers.CharField(max_length=100, help_text="A registered class (GET agents/classes/).")
    config = serializers.DictField(required=False, help_text="Validated against the class's config schema.")
    model = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="<provider>/<model>; empty: the offline model."
    )
    system_prompt = serializers.CharField(required=False, allow_blank=True, max_length=100_000)
    tools = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100)
    # Only parsed here; the service checks the bounds, blanks and repeats (so the admin gets the same errors).
    conversation_starters = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text=f"At most {CONVERSATION_STARTERS_MAX[0]} distinct, non-blank prompts of at most "
        f"{CONVERSATION_STARTERS_MAX[1]} characters.",
    )
    quick_replies = serializers.ListField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text=f"At most {QUICK_REPLIES_MAX[0]} distinct, non-blank replies of at most {QUICK_REPLIES_MAX[1]} "
        "characters.",
    )
    enabled = serializers.BooleanField(required=False)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A tools agent",
            request_only=True,
            value={
                "slug": "support-bot",
                "name": "Support bot",
                "class_name": "tools",
                "config": {"temperature": 0.2},
                "model": "offline/aihub-offline-1",
                "system_prompt": "You are a friendly support agent.",
                "tools": ["calculator", "current_time"],
                "conversation_starters": ["What can you do?", "What is 2 * (3 + 4)?"],
                "quick_replies": ["Thanks!", "Tell me more"],
            },
        )
    ]
)
class AgentCreateSerializer(_AgentFields):
    slug = serializers.SlugField(max_length=63, help_text="Unique in the tenant; names the agent in URLs and rules.")


@extend_schema_serializer(
    examples=[
        OpenApiExample("Change the prompt", request_only=True, value={"system_prompt": "Answer in French."}),
        OpenApiExample("Disable", request_only=True, value={"enabled": False}),
        OpenApiExample(
            "Offer conversation starters", request_only=True, value={"conversation_starters": ["What can you do?"]}
        ),
    ]
)
class AgentUpdateSerializer(_AgentFields):
    class_name = serializers.CharField(max_length=100, required=False)


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Version 2",
            response_only=True,
            value={
                "version": 2,
                "snapshot": {**{k: v for k, v in AGENT_EXAMPLE.items() if k not in ("id", "version")}},
                "created_by": "alice",
                "created_at": "2025-01-02T08:30:00Z",
            },
        )
    ]
)
class AgentVersionSerializer(serializers.ModelSerializer):
    snapshot = serializers.JSONField(help_text="The agent's settings as they were in this version.")
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = AgentVersion
        fields = ["version", "snapshot", "created_by", "created_at"]
        read_only_fields = fields


class AgentListQuerySerializer(serializers.Serializer):
    enabled = serializers.BooleanField(required=False, allow_null=True, default=None)


@extend_schema_serializer(
    examples=[
        OpenApiExample("Arithmetic", request_only=True, value={"arguments": {"expression": "2 * (3 + 4)"}}),
        OpenApiExample(
            "Write a thread's state",
            request_only=True,
            value={
                "arguments": {"key": "plan", "value": "premium"},
                "thread": "7c1d2e3f-1111-4a2b-9c3d-4e5f6a7b8c9d",
            },
        ),
    ]
)
class ToolCallSerializer(StrictSerializer):
    arguments = serializers.DictField(required=False, default=dict, help_text="Checked against the tool's schema.")
    thread = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text="A thread you can see, for tools that use its state."
    )
    # DRF's metaclass moves declared fields off the class, so this does not shadow Serializer.context.
    context = serializers.DictField(  # type: ignore[assignment]
        required=False, default=dict, help_text="What the tool sees as the request context."
    )


@extend_schema_serializer(examples=[OpenApiExample("A result", response_only=True, value={"output": "14"})])
class ToolResultSerializer(serializers.Serializer):
    output = serializers.JSONField(help_text="What the tool returned.")


@extend_schema_serializer(
    examples=[
        OpenApiExample("On a new thread", request_only=True, value={"content": "Hello, who are you?"}),
        OpenApiExample(
            "On a thread, after the job running there",
            request_only=True,
            value={
                "content": [{"type": "text", "text": "And in French?"}],
                "thread": THREAD_EXAMPLE_ID,
                "busy": "enqueue",
                "additional_instructions": "Be brief.",
                "context": {"customer_id": 42},
            },
        ),
        OpenApiExample(
            "With a job id of your choosing (safe to retry)",
            request_only=True,
            value={"content": "Hello, who are you?", "job_id": JOB_EXAMPLE["id"]},
        ),
        OpenApiExample(
            "A stateless turn: your own history, nothing kept",
            request_only=True,
            value={
                "content": "And in French?",
                "chat_history": [
                    {"role": "user", "content": "Say hello.", "agent": "support-bot", "caller_agent": None},
                    {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "Hello!"}],
                        "agent": "support-bot",
                        "caller_agent": None,
                        "timestamp": "2025-01-01T12:00:00Z",
                    },
                ],
            },
        ),
        OpenApiExample(
            "With your own model endpoint and key (needs aihub.user.client-config)",
            request_only=True,
            value={
                "content": "Hello, who are you?",
                "chat_history": [],
                "client_config": {
                    "base_url": "https://llm.example.com/v1",
                    "api_key": "sk-your-own-key",
                    "default_headers": {"OpenAI-Organization": "org-example"},
                },
            },
        ),
    ]
)
class AgentMessageSerializer(MessageSubmitSerializer):
    """The shared message fields (jobs.api.submission), with ``thread`` in the body; the agent is in the path."""

    thread = thread_field()


# --- Handoffs and the agent graph ------------------------------------------------------------------------

HANDOFF_EXAMPLE: dict[str, Any] = {
    "source": "triage",
    "target": "billing",
    "description": "Questions about invoices and payments.",
    "required_state_keys": ["customer_id"],
    "created_at": "2025-01-02T08:30:00Z",
}


@extend_schema_serializer(examples=[OpenApiExample("To billing", value=HANDOFF_EXAMPLE, response_only=True)])
class HandoffSerializer(serializers.Serializer):
    # DRF's metaclass moves declared fields off the class, so this does not shadow Field.source.
    source = serializers.CharField(  # type: ignore[assignment]
        source="source.slug", help_text="The agent that hands off."
    )
    target = serializers.CharField(source="target.slug", help_text="The agent that takes the thread over.")
    description = serializers.CharField(help_text="When to hand off; the model reads it in `transfer_to_agent`.")
    required_state_keys = serializers.ListField(
        child=serializers.CharField(), help_text="Thread state keys that must be set before the handoff is allowed."
    )
    created_at = serializers.DateTimeField()


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "To billing, once the customer is known",
            request_only=True,
            value={
                "target": "billing",
                "description": "Questions about invoices and payments.",
                "required_state_keys": ["customer_id"],
            },
        )
    ]
)
class HandoffCreateSerializer(StrictSerializer):
    target = serializers.SlugField(max_length=63, help_text="The slug of another agent of the tenant.")
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
    required_state_keys = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=20, required=False, default=list
    )


@extend_schema_serializer(
    examples=[OpenApiExample("No keys needed", request_only=True, value={"required_state_keys": []})]
)
class HandoffUpdateSerializer(StrictSerializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    required_state_keys = serializers.ListField(
        child=serializers.CharField(max_length=200), max_length=20, required=False
    )


class GraphToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(help_text="What the model reads about the tool.")
    parameters = serializers.JSONField(help_text="JSON schema of the tool's arguments.")
    requires_approval = serializers.BooleanField(help_text="A call by the agent waits for a person's approval.")


class GraphNodeSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    class_name = serializers.CharField()
    model = serializers.CharField(help_text="The model its jobs use; empty for classes without one (echo).")
    enabled = serializers.BooleanField()
    is_entry_point = serializers.BooleanField(
        help_text="Enabled, and no agent you can see hands off to it: where a conversation starts."
    )
    tools = serializers.ListField(
        child=serializers.CharField(), help_text="What the agent's model is offered, `transfer_to_agent` included."
    )
    tool_schemas = GraphToolSerializer(many=True, help_text="The same tools, with their JSON schemas.")
    handoffs = serializers.ListField(child=serializers.CharField(), help_text="The agents it may hand off to.")
    conversation_starters = serializers.ListField(child=serializers.CharField())
    quick_replies = serializers.ListField(child=serializers.CharField())


class GraphEdgeSerializer(serializers.Serializer):
    source = serializers.CharField()  # type: ignore[assignment]  # not Field.source: see HandoffSerializer
    target = serializers.CharField()
    description = serializers.CharField()
    required_state_keys = serializers.ListField(child=serializers.CharField())


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "Triage hands off to billing",
            response_only=True,
            value={
                "nodes": [
                    {
                        "slug": "billing",
                        "name": "Billing",
                        "description": "Invoices and payments.",
                        "class_name": "tools",
                        "model": "offline/aihub-offline-1",
                        "enabled": True,
                        "is_entry_point": False,
                        "tools": ["calculator"],
                        "tool_schemas": [
                            {
                                "name": "calculator",
                                "description": "Evaluate an arithmetic expression.",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"expression": {"title": "Expression", "type": "string"}},
                                    "required": ["expression"],
                                    "additionalProperties": False,
                                },
                                "requires_approval": False,
                            }
                        ],
                        "handoffs": [],
                        "conversation_starters": [],
                        "quick_replies": ["Pay now", "Send me the invoice"],
                    },
                    {
                        "slug": "triage",
                        "name": "Triage",
                        "description": "Finds the right agent.",
                        "class_name": "tools",
                        "model": "offline/aihub-offline-1",
                        "enabled": True,
                        "is_entry_point": True,
                        "tools": ["transfer_to_agent"],
                        "tool_schemas": [
                            {
                                "name": "transfer_to_agent",
                                "description": "Hand the conversation over to another agent: it answers the "
                                "user's next message on this thread. Agents you can hand off to:\n- billing: "
                                "Questions about invoices and payments.",
                                "parameters": {
                                    "type": "object",
                                    "properties": {
                                        "agent": {"const": "billing", "type": "string"},
                                        "reason": {"default": "", "maxLength": 1000, "type": "string"},
                                    },
                                    "required": ["agent"],
                                    "additionalProperties": False,
                                },
                                "requires_approval": False,
                            }
                        ],
                        "handoffs": ["billing"],
                        "conversation_starters": ["I have a question about my invoice", "What can you do?"],
                        "quick_replies": [],
                    },
                ],
                "edges": [
                    {
                        "source": "triage",
                        "target": "billing",
                        "description": "Questions about invoices and payments.",
                        "required_state_keys": ["customer_id"],
                    }
                ],
            },
        )
    ]
)
class AgentGraphSerializer(serializers.Serializer):
    nodes = GraphNodeSerializer(many=True)
    edges = GraphEdgeSerializer(many=True)
