"""Long-term memory: services, semantic search, the ``remember`` tool, and recall at the start of a job.

A memory is a short text about one user (scope ``user``) or the whole tenant (scope ``tenant``), embedded with
the knowledge app's embedder (``KNOWLEDGE_DEFAULT_EMBEDDER``, the bundled local model unless configured).
Search is exact cosine similarity in NumPy on every database: one caller's memories are few, and exact search
never misses one that an approximate index would.

Agents whose config says ``memory: true`` (the ``chat`` and ``tools`` classes) recall the memories most
relevant to the message at the start of a job (a ``memory.retrieved`` event; they go into the system prompt in
a ``<memories>`` block), and the ``tools`` class is offered ``remember`` to store new ones (``memory.stored``).
An agent without memory enabled neither recalls nor remembers anything: ``remember`` refuses to run for it.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet

from agents.models import Agent, Memory, MemoryScope
from agents.tools import ToolContext, ToolError, tool
from aihub.access.models import Tenant
from knowledge.embedders import EmbeddingError, get_embedder

MEMORY_MAX_CHARS = 2000
"""The longest memory text: a memory is a fact or a preference, not a document."""
QUERY_MAX_CHARS = 1000
"""The longest search query (``?q=``)."""
RECALL_MAX_QUERY_CHARS = 2000
"""How much of the user's message a recall searches with (the start of a longer message)."""
RECALL_MIN_SCORE = 0.2
"""Memories less similar than this to the message are not recalled: unrelated facts only distract a model."""

MEMORIES_RESOURCE = "memories"
"""Rules over the tenant's shared memories: ``aihub.user.memories`` reads them, ``aihub.admin.memories``
changes them. A user's own memories need no rule: they are theirs to see and manage."""


def memory_embedder_name() -> str:
    return str(settings.KNOWLEDGE_DEFAULT_EMBEDDER)


def _clean_text(text: str, *, field: str = "text", limit: int = MEMORY_MAX_CHARS) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError({field: [f"The {field} is empty."]})
    if len(text) > limit:
        raise ValidationError({field: [f"The {field} has {len(text)} characters; at most {limit} are allowed."]})
    return text


def _embed(text: str, *, field: str = "text") -> tuple[str, np.ndarray[Any, Any]]:
    name = memory_embedder_name()
    try:
        vector = get_embedder(name).embed([text])[0]
    except EmbeddingError as exc:
        raise ValidationError({field: [str(exc)]}) from exc
    return name, vector


# --- Services ---------------------------------------------------------------------------------------------


def memory_create(
    *,
    tenant: Tenant,
    scope: str,
    text: str,
    owner_id: int | None = None,
    metadata: dict[str, Any] | None = None,
    source_thread_id: uuid.UUID | None = None,
    source_job_id: uuid.UUID | None = None,
    source_agent_id: uuid.UUID | None = None,
) -> Memory:
    """Store a memory (embedded first, so no memory is ever without its vector). Raises ValidationError.

    The same text again for the same owner is not a second memory: the existing one is returned, touched.
    """
    text = _clean_text(text)
    if scope not in MemoryScope.values:
        raise ValidationError({"scope": [f"Unknown scope {scope!r}: use user or tenant."]})
    if (scope == MemoryScope.USER) != (owner_id is not None):
        raise ValidationError({"scope": ["A user's memory needs its user; a tenant's memory has none."]})
    embedder, vector = _embed(text)
    with transaction.atomic():
        existing = (
            Memory.objects.select_for_update()
            .filter(tenant=tenant, scope=scope, owner_id=owner_id, text=text)
            .order_by("created_at")
            .first()
        )
        if existing is not None:
            existing.save(update_fields=["updated_at"])
            return existing
        return Memory.objects.create(
            tenant=tenant,
            scope=scope,
            owner_id=owner_id,
            text=text,
            embedder=embedder,
            dimensions=int(vector.shape[0]),
            embedding=vector,
            metadata=metadata or {},
            source_thread_id=source_thread_id,
            source_job_id=source_job_id,
            source_agent_id=source_agent_id,
        )


def memory_update(*, memory: Memory, text: str | None = None, metadata: dict[str, Any] | None = None) -> Memory:
    """Change a memory's text (re-embedded) or metadata. Raises ValidationError."""
    fields = ["updated_at"]
    if text is not None:
        memory.text = _clean_text(text)
        memory.embedder, vector = _embed(memory.text)
        memory.embedding, memory.dimensions = vector, int(vector.shape[0])
        fields += ["text", "embedder", "embedding", "dimensions"]
    if metadata is not None:
        memory.metadata = metadata
        fields.append("metadata")
    with transaction.atomic():
        memory.save(update_fields=fields)
    return memory


def memory_delete(*, memory: Memory) -> None:
    with transaction.atomic():
        memory.delete()


def memory_delete_all(*, memories: QuerySet[Memory]) -> int:
    """Delete every memory of ``memories`` (already narrowed to one owner or one tenant); how many went."""
    with transaction.atomic():
        deleted, _ = memories.delete()
    return int(deleted)


# --- Selectors --------------------------------------------------------------------------------------------


def memory_list_of_user(*, tenant: Tenant | uuid.UUID, user_id: int) -> QuerySet[Memory]:
    """One user's own memories in one tenant, newest first."""
    return Memory.objects.filter(tenant=tenant, scope=MemoryScope.USER, owner_id=user_id).order_by("-created_at")


def memory_list_of_tenant(*, tenant: Tenant | uuid.UUID) -> QuerySet[Memory]:
    """The tenant's shared memories, newest first."""
    return Memory.objects.filter(tenant=tenant, scope=MemoryScope.TENANT).order_by("-created_at")


def memory_search(*, memories: QuerySet[Memory], query: str, top_k: int | None = None) -> list[Memory]:
    """``memories`` ranked by cosine similarity to ``query``, most similar first, each with ``.score`` set.

    Only memories made by the current embedder are compared (others live in another vector space). Raises
    ValidationError (field ``q``) for an empty or too long query.
    """
    query = _clean_text(query, field="q", limit=QUERY_MAX_CHARS)
    name, vector = _embed(query, field="q")
    candidates = list(memories.filter(embedder=name, dimensions=int(vector.shape[0])))
    if not candidates:
        return []
    scores = np.vstack([m.embedding for m in candidates]) @ vector
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    ranked = []
    for index in order:
        memory = candidates[int(index)]
        memory.score = float(scores[int(index)])  # type: ignore[attr-defined]
        ranked.append(memory)
    return ranked


# --- Agents: recall and remember ----------------------------------------------------------------------------

MEMORY_HELP = (
    "Long-term memory: at the start of a job the agent recalls the memories most relevant to the message (the "
    "user's own and the tenant's shared ones), and a tools agent is offered `remember` to store new ones about "
    "the user. Off, nothing is recalled or remembered."
)


def recalled_memories(*, tenant_id: Any, user_id: int | None, query: str, top_k: int) -> list[Memory]:
    """The user's and the tenant's memories most relevant to ``query`` (at least RECALL_MIN_SCORE similar)."""
    query = " ".join(query.split())[:RECALL_MAX_QUERY_CHARS]
    if not query or top_k <= 0:
        return []
    memories = Memory.objects.filter(tenant_id=tenant_id).filter(
        Q(scope=MemoryScope.TENANT) | Q(scope=MemoryScope.USER, owner_id=user_id)
        if user_id is not None
        else Q(scope=MemoryScope.TENANT)
    )
    ranked = memory_search(memories=memories, query=query, top_k=top_k)
    return [m for m in ranked if m.score >= RECALL_MIN_SCORE]  # type: ignore[attr-defined]


def memories_prompt(memories: list[Memory]) -> str:
    lines = "\n".join(f"- {' '.join(m.text.split())}" for m in memories)
    return (
        "What you remember from earlier conversations (use it when it is relevant, do not repeat it otherwise):\n"
        f"<memories>\n{lines}\n</memories>"
    )


def recall(*, run: Any, messages: list[dict[str, Any]], top_k: int) -> Generator[Any, None, list[dict[str, Any]]]:
    """Recall memories for a run's message: emit ``memory.retrieved`` and return the messages with the memories
    added to the system prompt. A failing embedder does not fail the job: the event says what went wrong."""
    from agents.runtime import Emit
    from threads.content import text_of

    query = text_of(run.input)
    try:
        found = recalled_memories(tenant_id=run.tenant_id, user_id=run.user_id, query=query, top_k=top_k)
    except ValidationError as exc:
        yield Emit("memory.retrieved", {"memories": [], "error": "; ".join(exc.messages)})
        return messages
    yield Emit(
        "memory.retrieved",
        {
            "memories": [
                {"id": str(m.id), "scope": m.scope, "text": m.text, "score": round(m.score, 4)}  # type: ignore[attr-defined]
                for m in found
            ]
        },
    )
    if not found:
        return messages
    block = memories_prompt(found)
    messages = list(messages)
    if messages and messages[0]["role"] == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{block}"}
    else:
        messages.insert(0, {"role": "system", "content": block})
    return messages


def stored_memory_event(name: str, output: Any, is_error: bool) -> dict[str, Any] | None:
    """The data of a ``memory.stored`` event for a successful ``remember`` call, else None."""
    if name != "remember" or is_error or not isinstance(output, dict) or "id" not in output:
        return None
    return {"id": output["id"], "scope": output["scope"], "text": output["text"]}


@tool()
def remember(context: ToolContext, text: str) -> dict[str, Any]:
    """Remember a fact or preference about the user for later conversations (one short sentence)."""
    agent = Agent.objects.filter(pk=context.agent_id, tenant_id=context.tenant_id).first()
    if agent is None or not (agent.config or {}).get("memory"):
        raise ToolError("This agent does not have memory enabled, so it cannot remember anything.")
    if context.user_id is None:
        raise ToolError("There is no user to remember this for.")
    try:
        memory = memory_create(
            tenant=agent.tenant,
            scope=MemoryScope.USER,
            owner_id=context.user_id,
            text=text,
            source_thread_id=context.thread_id,
            source_job_id=context.job_id,
            source_agent_id=agent.id,
        )
    except ValidationError as exc:
        raise ToolError("; ".join(exc.messages)) from exc
    return {"id": str(memory.id), "scope": memory.scope, "text": memory.text}
