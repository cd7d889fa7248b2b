"""The operators' admin for agents (with their versions) and model providers.

Forms validate through agents.services and the services write: a save is ``agent_create`` / ``agent_update``
(each change a new version, the operator recorded as its author), never the admin's own ``obj.save()``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from rest_framework.exceptions import APIException

from agents import catalogue, memory, services
from agents.models import (
    Agent,
    AgentVersion,
    CatalogueModel,
    Handoff,
    Memory,
    ModelProvider,
    ModelSource,
    ProviderKind,
)
from agents.registry import agent_classes
from agents.tools import TOOLS
from aihub.access.admin import ReadOnlyAdminMixin, ServiceModelAdmin

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _operator(request: HttpRequest) -> User:
    # Only authenticated staff reach a ModelAdmin view.
    return request.user  # type: ignore[return-value]


def _adopt(obj: Any, saved: Any) -> None:
    # The admin keeps using the form's instance after save_model (change message, redirect to its pk).
    obj.__dict__.update(saved.__dict__)


# --- Agents ----------------------------------------------------------------------------------------------


class PrettyJSONWidget(forms.Textarea):
    def __init__(self) -> None:
        super().__init__(attrs={"rows": 8, "cols": 80, "spellcheck": "false", "style": "font-family: monospace"})

    def format_value(self, value: Any) -> Any:
        # forms.JSONField hands over a JSON string; indent it so operators can read and edit it.
        try:
            return json.dumps(json.loads(value), indent=2, sort_keys=True)
        except (TypeError, ValueError):
            return value


_LINE_LISTS = ("conversation_starters", "quick_replies")


def _lines(text: str) -> list[str]:
    # Empty lines are the textarea's layout, not entries; the service refuses repeats and long entries.
    return [line.strip() for line in text.splitlines() if line.strip()]


class AgentForm(forms.ModelForm):
    class_name = forms.ChoiceField(label="Class", choices=())
    config = forms.JSONField(
        required=False,
        widget=PrettyJSONWidget(),
        help_text="A JSON object, checked against the class's config schema. Unset settings take their defaults.",
    )
    tools = forms.MultipleChoiceField(
        choices=(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only classes that use tools accept them.",
    )
    conversation_starters = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text=f"One per line: prompts frontends offer to start a new thread with (at most "
        f"{services.CONVERSATION_STARTERS_MAX[0]}, {services.CONVERSATION_STARTERS_MAX[1]} characters each).",
    )
    quick_replies = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=f"One per line: short answers frontends suggest after a reply (at most "
        f"{services.QUICK_REPLIES_MAX[0]}, {services.QUICK_REPLIES_MAX[1]} characters each).",
    )

    class Meta:
        model = Agent
        fields = (
            "tenant",
            "slug",
            "name",
            "description",
            "class_name",
            "model",
            "system_prompt",
            "tools",
            "conversation_starters",
            "quick_replies",
            "enabled",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read when the form is built, so plug-in classes and tools registered at start-up are offered.
        class_field: forms.ChoiceField = self.fields["class_name"]  # type: ignore[assignment]
        class_field.choices = [(name, f"{name} — {cls.description}") for name, cls in agent_classes().items()]
        tool_field: forms.MultipleChoiceField = self.fields["tools"]  # type: ignore[assignment]
        tool_field.choices = [(name, name) for name in sorted(TOOLS)]
        self.fields["name"].required = False
        if not self.instance._state.adding:
            for field in _LINE_LISTS:
                self.initial[field] = "\n".join(getattr(self.instance, field))

    def clean_conversation_starters(self) -> list[str]:
        return _lines(self.cleaned_data.get("conversation_starters", ""))

    def clean_quick_replies(self) -> list[str]:
        return _lines(self.cleaned_data.get("quick_replies", ""))

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        if slug.lower() in services.RESERVED_AGENT_SLUGS:
            raise ValidationError(f"{slug!r} is reserved: it is a path of the agents API.")
        return slug

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        candidate = Agent(
            pk=self.instance.pk,
            tenant=cleaned.get("tenant") or getattr(self.instance, "tenant", None),
            slug=cleaned.get("slug") or self.instance.slug,
            name=cleaned.get("name") or cleaned.get("slug") or self.instance.slug,
            description=cleaned.get("description", ""),
            class_name=cleaned["class_name"],
            config=cleaned.get("config") or {},
            model=cleaned.get("model", ""),
            system_prompt=cleaned.get("system_prompt", ""),
            tools=list(cleaned.get("tools") or []),
            conversation_starters=cleaned.get("conversation_starters") or [],
            quick_replies=cleaned.get("quick_replies") or [],
            enabled=cleaned.get("enabled", True),
        )
        # An existing agent validates as itself, not as a second row with the same id and slug.
        candidate._state.adding = self.instance._state.adding
        try:
            services.agent_validate(candidate)
        except ValidationError as exc:
            for key, errors in exc.message_dict.items():
                field, _, path = key.partition(".")
                target = field if field in self.fields else None
                for error in errors:
                    self.add_error(target, f"{path}: {error}" if path else error)
            return cleaned
        # What the service will store: defaults filled in, so the change message only names real changes.
        cleaned["config"] = candidate.config
        return cleaned


class AgentVersionInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Every version the agent had, newest first; versions are immutable, so nothing here is editable."""

    model = AgentVersion
    fields = ("version", "created_by", "created_at", "settings")
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    can_delete = False

    @admin.display(description="settings")
    def settings(self, version: AgentVersion) -> str:
        return format_html("<pre style='margin:0'>{}</pre>", json.dumps(version.snapshot, indent=2, sort_keys=True))


class HandoffForm(forms.ModelForm):
    required_state_keys = forms.CharField(
        required=False,
        max_length=2000,
        help_text="Comma-separated thread state keys that must be set before the handoff is allowed.",
    )

    class Meta:
        model = Handoff
        fields = ("target", "description", "required_state_keys")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            self.initial["required_state_keys"] = ", ".join(self.instance.required_state_keys)

    def clean_required_state_keys(self) -> list[str]:
        return [key.strip() for key in self.cleaned_data.get("required_state_keys", "").split(",") if key.strip()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        target = cleaned.get("target")
        if self.errors or target is None or cleaned.get("DELETE"):
            return cleaned
        candidate = Handoff(
            pk=self.instance.pk,
            source=Agent.objects.get(pk=self.instance.source_id),
            target=target,
            description=cleaned.get("description", ""),
            required_state_keys=cleaned.get("required_state_keys", []),
        )
        try:
            services.handoff_validate(candidate)
        except ValidationError as exc:
            for key, errors in exc.message_dict.items():
                self.add_error(key if key in self.fields else None, errors)
        return cleaned


class HandoffInline(admin.TabularInline):
    """The agent's handoff edges (its ``transfer_to_agent`` targets); saved through agents.services."""

    model = Handoff
    form = HandoffForm
    fk_name = "source"
    extra = 0
    verbose_name = "handoff"
    verbose_name_plural = "handoffs (agents this one may pass a thread to)"

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        # Targets are offered from the agent's own tenant only (the service refuses the rest anyway).
        request._handoff_source = obj  # type: ignore[attr-defined]
        return super().get_formset(request, obj, **kwargs)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        source = getattr(request, "_handoff_source", None)
        if db_field.name == "target" and source is not None:
            kwargs["queryset"] = Agent.objects.filter(tenant_id=source.tenant_id).exclude(pk=source.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


def _save_handoffs(formset: Any) -> None:
    """Write the handoff inline's changes through the services, and tell the admin what changed."""
    new, changed, deleted = [], [], []
    for form in formset.forms:
        data = getattr(form, "cleaned_data", None)
        if not data:
            continue  # an empty extra row
        instance = form.instance
        fields = {"description": data.get("description", ""), "required_state_keys": data["required_state_keys"]}
        if formset._should_delete_form(form) or (not instance._state.adding and "target" in form.changed_data):
            if not instance._state.adding:
                services.handoff_delete(handoff=Handoff.objects.get(pk=instance.pk))
                deleted.append(instance)
            if formset._should_delete_form(form):
                continue
            instance._state.adding = True
        if instance._state.adding:
            if form.has_changed():
                new.append(services.handoff_create(source=formset.instance, target=data["target"], **fields))
        elif form.has_changed():
            edge = services.handoff_update(handoff=Handoff.objects.get(pk=instance.pk), **fields)
            changed.append((edge, form.changed_data))
    formset.new_objects, formset.changed_objects, formset.deleted_objects = new, changed, deleted


@admin.register(Agent)
class AgentAdmin(ServiceModelAdmin):
    form = AgentForm
    list_display = ("slug", "name", "tenant", "class_name", "model", "enabled", "version", "updated_at")
    list_filter = ("enabled", "class_name", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("slug", "name", "description", "tenant__slug")
    ordering = ("tenant__slug", "slug")
    inlines = (HandoffInline, AgentVersionInline)
    actions = ("enable_agents", "disable_agents")

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields: tuple[str, ...] = ("tenant", "slug", "name", "description", "class_name", "config", "model")
        fields = (*fields, "system_prompt", "tools", *_LINE_LISTS, "enabled")
        return fields if obj is None else (*fields, "version")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The slug names the agent in URLs and permission rules, so it stays what clients and roles know.
        return ("tenant", "slug", "version") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "name": data.get("name") or "",
            "description": data.get("description", ""),
            "class_name": data["class_name"],
            "config": data.get("config") or {},
            "model": data.get("model", ""),
            "system_prompt": data.get("system_prompt", ""),
            "tools": list(data.get("tools") or []),
            "conversation_starters": data.get("conversation_starters") or [],
            "quick_replies": data.get("quick_replies") or [],
            "enabled": data.get("enabled", True),
        }
        if change:
            fields["name"] = fields["name"] or obj.slug
            agent = services.agent_update(agent=obj, updated_by=_operator(request), **fields)
        else:
            agent = services.agent_create(
                tenant=data["tenant"], slug=data["slug"], created_by=_operator(request), **fields
            )
        _adopt(obj, agent)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # The versions inline is read-only; the admin's change message still asks each formset what it saved.
        for formset in formsets:
            if formset.model is Handoff:
                _save_handoffs(formset)
            else:
                formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        self._delete(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            self._delete(request, agent)

    def _delete(self, request: HttpRequest, agent: Agent) -> None:
        # The delete page already refuses agents with jobs (protected); this covers a job started meanwhile.
        try:
            services.agent_delete(agent=agent)
        except APIException as exc:
            self.message_user(request, str(exc.detail), messages.ERROR)

    @admin.action(description="Enable selected agents", permissions=["change"])
    def enable_agents(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected agents", permissions=["change"])
    def disable_agents(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Agent], *, enabled: bool) -> None:
        changed = 0
        for agent in queryset.filter(enabled=not enabled):
            services.agent_update(agent=agent, enabled=enabled, updated_by=_operator(request))
            changed += 1
        self.message_user(request, f"{changed} agent(s) {'enabled' if enabled else 'disabled'}.", messages.SUCCESS)


# --- Model providers -------------------------------------------------------------------------------------


class ModelProviderForm(forms.ModelForm):
    """The API key is write-only: the page never shows the stored key, and a blank field keeps it."""

    # Not the model's api_key field, whose initial value would be the stored key.
    new_api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored key. Prefer the environment variable below.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored API key", required=False)
    base_url = forms.URLField(
        label="Base URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="The OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; blank for api.openai.com.",
    )

    class Meta:
        model = ModelProvider
        fields = ("name", "kind", "base_url", "api_key_env", "timeout_seconds", "max_retries", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance._state.adding or not self.instance.api_key:
            del self.fields["clear_api_key"]
            self.fields["new_api_key"].help_text = "Write-only. Prefer the environment variable below."
        else:
            self.fields["new_api_key"].help_text = "A key is stored. " + str(self.fields["new_api_key"].help_text)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("clear_api_key") and cleaned.get("new_api_key"):
            self.add_error("clear_api_key", "Either enter a new key or remove the stored one, not both.")
        return cleaned


@admin.register(ModelProvider)
class ModelProviderAdmin(ServiceModelAdmin):
    form = ModelProviderForm
    list_display = (
        "name",
        "kind",
        "base_url",
        "key_source",
        "timeout_seconds",
        "max_retries",
        "enabled",
        "model_list_status",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")
    ordering = ("name",)
    actions = ["refresh_model_lists"]

    @admin.display(description="Model list")
    def model_list_status(self, provider: ModelProvider) -> str:
        if provider.kind != ProviderKind.OPENAI:
            return "built in"
        if provider.models_stale_since is not None:
            return f"stale since {provider.models_stale_since:%Y-%m-%d %H:%M} UTC: {provider.models_error}"
        if provider.models_refreshed_at is None:
            return "not read yet"
        return f"read {provider.models_refreshed_at:%Y-%m-%d %H:%M} UTC"

    @admin.action(description="Read the model lists of the selected providers now")
    def refresh_model_lists(self, request: HttpRequest, queryset: QuerySet[ModelProvider]) -> None:
        for provider in queryset:
            if catalogue.catalogue_refresh(provider=provider, force=True):
                self.message_user(request, f"{provider.name}: model list read.", messages.SUCCESS)
            else:
                provider.refresh_from_db()
                reason = provider.models_error or "not an OpenAI-compatible endpoint, or disabled"
                self.message_user(request, f"{provider.name}: {reason}", messages.WARNING)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["name", "kind", "base_url", "new_api_key", "api_key_env", "timeout_seconds", "max_retries", "enabled"]
        if obj is not None and obj.api_key:
            fields.insert(4, "clear_api_key")
        return fields

    @admin.display(description="API key")
    def key_source(self, provider: ModelProvider) -> str:
        if provider.api_key_env:
            return f"${provider.api_key_env}"
        return "stored" if provider.api_key else "none"

    def save_model(self, request: HttpRequest, obj: ModelProvider, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        fields = {name: data[name] for name in ModelProviderForm.Meta.fields if name in data}
        if change:
            # None keeps the stored key; "" removes it.
            api_key = "" if data.get("clear_api_key") else (data.get("new_api_key") or None)
            provider = services.model_provider_update(provider=obj, api_key=api_key, **fields)
        else:
            provider = services.model_provider_create(api_key=data.get("new_api_key") or "", **fields)
        _adopt(obj, provider)

    def delete_model(self, request: HttpRequest, obj: ModelProvider) -> None:
        services.model_provider_delete(provider=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelProvider]) -> None:
        for provider in queryset:
            services.model_provider_delete(provider=provider)


# --- The model catalogue ---------------------------------------------------------------------------------


@admin.register(CatalogueModel)
class CatalogueModelAdmin(ServiceModelAdmin):
    """Operators price models and choose which the API shows; the lists themselves come from the providers."""

    list_display = (
        "model_id",
        "type",
        "context_length",
        "input_price_per_million",
        "output_price_per_million",
        "visible",
        "available",
        "source",
    )
    list_editable = ("type", "context_length", "input_price_per_million", "output_price_per_million", "visible")
    list_filter = ("type", "visible", "available", "source", "provider_name")
    search_fields = ("model_id", "owned_by")
    ordering = ("type", "model_id")
    readonly_fields = (
        "model_id",
        "provider",
        "name",
        "source",
        "available",
        "owned_by",
        "first_seen_at",
        "last_seen_at",
    )
    fields = (
        *readonly_fields,
        "type",
        "context_length",
        "dimensions",
        "input_price_per_million",
        "output_price_per_million",
        "visible",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # models come from the providers' lists and the built-ins

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A provider's model would come back with its next list; hide it instead. Built-ins never go.
        return obj is None or (obj.source != ModelSource.BUILTIN and not obj.available)

    def save_model(self, request: HttpRequest, obj: CatalogueModel, form: forms.ModelForm, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in catalogue.OPERATOR_FIELDS}
        _adopt(obj, catalogue.catalogue_model_update(model=obj, **fields))


@admin.register(Memory)
class MemoryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What agents remember, read-only for operators (users edit their own through the API); deleting goes
    through agents.memory so the same rules apply as for a user's "forget"."""

    list_display = ["short_text", "scope", "owner", "tenant", "source_agent", "updated_at"]
    list_filter = ["scope", "tenant"]
    list_select_related = ["tenant", "owner", "source_agent"]
    search_fields = ["text", "=id", "owner__username"]
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "id",
        "tenant",
        "scope",
        "owner",
        "text",
        "metadata",
        "embedder",
        "dimensions",
        "source_thread",
        "source_job_id",
        "source_agent",
        "created_at",
        "updated_at",
    )

    @admin.display(description="text")
    def short_text(self, item: Memory) -> str:
        return item.text if len(item.text) <= 80 else item.text[:79] + "…"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request: HttpRequest, obj: Memory) -> None:
        memory.memory_delete(memory=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Memory]) -> None:
        memory.memory_delete_all(memories=queryset)
