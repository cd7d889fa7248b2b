"""The operators' admin for tenants, roles, memberships, API tokens, external identities and the audit log.

Forms validate and the services write: every save, delete and action below calls aihub.access.services with the
operator as ``actor``, so the audit log records who did it. The admin's own form processing would otherwise write
rows directly (``form.save_m2m()``, ``obj.delete()``), bypassing the default roles, the audit log and the checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Count, Model, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html_join

from aihub.access import services
from aihub.access.models import ApiToken, AuditEvent, ExternalIdentity, Membership, Role, Tenant
from aihub.access.rules import validate_rule
from aihub.access.selectors import audit_event_list

if TYPE_CHECKING:
    from django.contrib.auth.models import User


# --- Shared pieces ---------------------------------------------------------------------------------------


class RulesField(forms.CharField):
    """Permission rules edited as text, one per line, cleaned to a list of validated rules."""

    widget = forms.Textarea(attrs={"rows": 5, "cols": 60, "spellcheck": "false"})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "help_text",
            "One rule per line, e.g. <code>aihub.user.agents.&gt;</code> or <code>aihub.admin.collections.*</code>. "
            "<code>*</code> matches one segment, <code>&gt;</code> the rest.",
        )
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(rule) for rule in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        lines = [str(rule) for rule in value] if isinstance(value, list | tuple) else str(value or "").splitlines()
        return list(dict.fromkeys(line.strip() for line in lines if line.strip()))

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise ValidationError(self.error_messages["required"], code="required")
        errors = []
        for rule in value:
            try:
                validate_rule(rule)
            except ValueError as exc:
                errors.append(ValidationError(str(exc), code="invalid_rule"))
        if errors:
            raise ValidationError(errors)


def _fresh(obj: Model) -> Any:
    # Form validation has already copied the submitted values onto ``obj``; services must see the stored row,
    # or the audit log would record the new values as "before".
    return type(obj)._default_manager.get(pk=obj.pk)


def _adopt(obj: Model, created: Model) -> None:
    # The admin keeps using the form's unsaved instance after save_model (change message, redirect to its pk),
    # so it takes over the state of the row the service created.
    obj.__dict__.update(created.__dict__)


def _actor(request: HttpRequest) -> User:
    # Only authenticated staff reach a ModelAdmin view; the audit log records them as the actor.
    return request.user  # type: ignore[return-value]


def _rules_html(rules: Iterable[str]) -> str:
    return format_html_join("", "<code>{}</code><br>", ((rule,) for rule in rules)) or "—"


class ServiceModelAdmin(admin.ModelAdmin):
    """Turns a service's ValidationError (a race the form could not see) into a message instead of a crash."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        try:
            # The admin runs this in a transaction, so a refused write leaves nothing behind.
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


class ReadOnlyAdminMixin:
    """Visible to operators, written only by the platform itself, superusers included (admins and inlines)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyModelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    pass


# --- Tenants ---------------------------------------------------------------------------------------------


class RoleInline(admin.TabularInline):
    """The tenant's roles at a glance; they are edited on their own page, where the services check them."""

    model = Role
    fields = ("name", "description", "rules_list")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    @admin.display(description="rules")
    def rules_list(self, role: Role) -> str:
        return _rules_html(role.rules)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TenantAddForm(forms.ModelForm):
    rule_ceiling = RulesField(
        required=False,
        label="Rule ceiling",
        help_text="Optional. When set, no role in this tenant grants more than these rules, one per line.",
    )
    owner = forms.ModelChoiceField(
        queryset=get_user_model().objects.order_by("username"),
        required=False,
        help_text="Optional. Becomes a member of the new tenant with its admin role.",
    )

    class Meta:
        model = Tenant
        fields = ("slug", "name", "rule_ceiling")

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"]
        if slug.lower() in services.RESERVED_TENANT_SLUGS:
            raise ValidationError(f"{slug!r} is reserved: it is a path of the API.")
        return slug


class TenantChangeForm(forms.ModelForm):
    rule_ceiling = RulesField(
        required=False,
        label="Rule ceiling",
        help_text="When set, no role in this tenant grants more than these rules, one per line.",
    )

    class Meta:
        model = Tenant
        fields = ("name", "rule_ceiling", "is_active")


@admin.register(Tenant)
class TenantAdmin(ServiceModelAdmin):
    list_display = ("slug", "name", "is_active", "ceiling", "role_count", "member_count", "created_at")
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    ordering = ("slug",)
    inlines = (RoleInline,)
    actions = ("deactivate_tenants", "activate_tenants")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return (
            super()
            .get_queryset(request)
            .annotate(role_count=Count("roles", distinct=True), member_count=Count("memberships", distinct=True))
        )

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        # A new tenant's roles are seeded by the service; there is nothing to list until it exists.
        return self.inlines if obj is not None else ()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = TenantChangeForm if obj is not None else TenantAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("slug", "name", "rule_ceiling", "owner")
        return ("slug", "name", "rule_ceiling", "is_active", "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The slug is in every tenant URL, so it does not change once clients may hold those URLs.
        return ("slug", "created_at") if obj is not None else ()

    @admin.display(description="rule ceiling")
    def ceiling(self, tenant: Tenant) -> str:
        return _rules_html(tenant.rule_ceiling) if tenant.rule_ceiling else "none"

    @admin.display(description="roles", ordering="role_count")
    def role_count(self, tenant: Any) -> int:
        return int(tenant.role_count)

    @admin.display(description="members", ordering="member_count")
    def member_count(self, tenant: Any) -> int:
        return int(tenant.member_count)

    def save_model(self, request: HttpRequest, obj: Tenant, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.tenant_update(
                tenant=_fresh(obj),
                name=data["name"],
                rule_ceiling=data["rule_ceiling"],
                is_active=data["is_active"],
                actor=_actor(request),
            )
        else:
            tenant = services.tenant_create(
                slug=data["slug"],
                name=data["name"],
                rule_ceiling=data["rule_ceiling"],
                owner=data.get("owner"),
                actor=_actor(request),
            )
            _adopt(obj, tenant)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Roles are seeded by tenant_create and edited on their own page: the inline is read-only, so nothing is
        # saved from it, but the admin's change message still asks each formset what it saved.
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        services.tenant_delete(tenant=obj, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            services.tenant_delete(tenant=tenant, actor=_actor(request))

    @admin.action(description="Deactivate selected tenants", permissions=["change"])
    def deactivate_tenants(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Activate selected tenants", permissions=["change"])
    def activate_tenants(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_active(request, queryset, active=True)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Tenant], *, active: bool) -> None:
        changed = 0
        for tenant in queryset.filter(is_active=not active):
            services.tenant_update(tenant=tenant, is_active=active, actor=_actor(request))
            changed += 1
        state = "activated" if active else "deactivated"
        self.message_user(request, f"{changed} tenant(s) {state}.", messages.SUCCESS)


# --- Roles -----------------------------------------------------------------------------------------------


class RoleForm(forms.ModelForm):
    rules = RulesField()

    class Meta:
        model = Role
        fields = ("tenant", "name", "description", "rules")


@admin.register(Role)
class RoleAdmin(ServiceModelAdmin):
    form = RoleForm
    list_display = ("name", "tenant", "description", "rules_list", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("name", "tenant__slug", "description")
    ordering = ("tenant__slug", "name")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("tenant", "name", "description", "rules")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Memberships and API clients refer to roles by name within their tenant.
        return ("tenant", "name") if obj is not None else ()

    @admin.display(description="rules")
    def rules_list(self, role: Role) -> str:
        return _rules_html(role.rules)

    def save_model(self, request: HttpRequest, obj: Role, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.role_update(
                role=_fresh(obj),
                rules=data["rules"],
                description=data["description"],
                actor=_actor(request),
            )
        else:
            role = services.role_create(
                tenant=data["tenant"],
                name=data["name"],
                rules=data["rules"],
                description=data["description"],
                actor=_actor(request),
            )
            _adopt(obj, role)

    def delete_model(self, request: HttpRequest, obj: Role) -> None:
        services.role_delete(role=obj, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Role]) -> None:
        for role in queryset.select_related("tenant"):
            services.role_delete(role=role, actor=_actor(request))


# --- Memberships -----------------------------------------------------------------------------------------


class MembershipForm(forms.ModelForm):
    """Roles are chosen by name; the service resolves them within the membership's tenant."""

    role_names = forms.MultipleChoiceField(
        label="Roles", choices=(), required=False, widget=forms.CheckboxSelectMultiple
    )
    make_default = forms.BooleanField(
        label="Default tenant",
        required=False,
        help_text="The tenant <code>active</code> stands for in this user's API URLs.",
    )

    class Meta:
        model = Membership
        fields = ("user", "tenant")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        instance: Membership = self.instance
        role_field = cast(forms.MultipleChoiceField, self.fields["role_names"])
        default_field = self.fields["make_default"]
        if not instance._state.adding:
            names = Role.objects.filter(tenant_id=instance.tenant_id).values_list("name", flat=True)
            role_field.initial = list(instance.roles.values_list("name", flat=True))
            default_field.initial = instance.is_default
            if instance.is_default:
                # A user always keeps one default while a member anywhere; it moves by choosing another.
                default_field.disabled = True
                default_field.help_text = "To change it, make another membership of this user the default."
        else:
            # The tenant is not chosen yet: offer every role name; clean() checks it exists in that tenant.
            names = Role.objects.values_list("name", flat=True)
            role_field.help_text = "Each chosen role must exist in the chosen tenant."
        role_field.choices = [(name, name) for name in sorted(set(names))]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        tenant = cleaned.get("tenant") or (None if self.instance._state.adding else self.instance.tenant)
        names = cleaned.get("role_names") or []
        if tenant is not None and names:
            known = set(Role.objects.filter(tenant=tenant, name__in=names).values_list("name", flat=True))
            missing = sorted(set(names) - known)
            if missing:
                self.add_error("role_names", f"Tenant {tenant.slug} has no role named {', '.join(missing)}.")
        return cleaned


@admin.register(Membership)
class MembershipAdmin(ServiceModelAdmin):
    form = MembershipForm
    list_display = ("user", "tenant", "role_list", "is_default", "created_at")
    list_filter = ("tenant", "is_default")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "user__email", "tenant__slug")
    autocomplete_fields = ("user", "tenant")
    ordering = ("tenant__slug", "user__username")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return super().get_queryset(request).prefetch_related("roles")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("user", "tenant", "role_names", "make_default")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # A membership is the link between one user and one tenant; another link is another membership.
        return ("user", "tenant") if obj is not None else ()

    @admin.display(description="roles")
    def role_list(self, membership: Membership) -> str:
        return ", ".join(sorted(role.name for role in membership.roles.all())) or "—"

    def save_model(self, request: HttpRequest, obj: Membership, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            membership = _fresh(obj)
        else:
            membership = services.membership_create(
                tenant=data["tenant"],
                user=data["user"],
                role_names=data["role_names"],
                actor=_actor(request),
            )
        if data.get("make_default") and not membership.is_default:
            membership = services.membership_make_default(membership=membership)
        _adopt(obj, membership)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        # Not form.save_m2m(): role changes go through the service, which checks and audits them.
        if change:
            services.membership_set_roles(
                membership=_fresh(form.instance),
                role_names=form.cleaned_data["role_names"],
                actor=_actor(request),
            )

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_delete(membership=obj, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset.select_related("user", "tenant"):
            services.membership_delete(membership=membership, actor=_actor(request))


# --- API tokens ------------------------------------------------------------------------------------------


class ApiTokenAddForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ("user", "name", "tenant", "expires_at")
        help_texts = {
            "tenant": "Optional. Restricts the token to one tenant the user is a member of.",
            "expires_at": "Optional. Without an expiry the token works until it is revoked.",
        }

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationError("The expiry must be in the future.")
        return expires_at

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        user, tenant = cleaned.get("user"), cleaned.get("tenant")
        if user is not None and tenant is not None and not Membership.objects.filter(user=user, tenant=tenant).exists():
            self.add_error("tenant", f"{user.get_username()} is not a member of {tenant.slug}.")
        return cleaned


class TokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("usable", "usable"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        if self.value() == "usable":
            return queryset.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ServiceModelAdmin):
    """Tokens are created, revoked and deleted here, never edited. Revoking keeps the record; deleting is allowed
    because the admin refuses to delete a user or tenant when it may not delete everything that cascades."""

    form = ApiTokenAddForm
    list_display = ("name", "display_prefix", "user", "tenant", "expires_at", "last_used_at", "revoked")
    list_filter = (TokenStateFilter, "tenant")
    list_select_related = ("user", "tenant")
    search_fields = ("name", "public_id", "user__username")
    autocomplete_fields = ("user", "tenant")
    actions = ("revoke_tokens",)
    view_fields = (
        "name",
        "display_prefix",
        "user",
        "tenant",
        "expires_at",
        "created_at",
        "last_used_at",
        "revoked_at",
    )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Never secret_hash: a hash of a high-entropy secret is still nothing an operator needs to see.
        return ("user", "name", "tenant", "expires_at") if obj is None else self.view_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.view_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        services.api_token_delete(token=obj, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.select_related("tenant"):
            services.api_token_delete(token=token, actor=_actor(request))

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="prefix", ordering="public_id")
    def display_prefix(self, token: ApiToken) -> str:
        return token.display_prefix

    @admin.display(description="revoked", boolean=True, ordering="revoked_at")
    def revoked(self, token: ApiToken) -> bool:
        return token.revoked_at is not None

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        token, secret = services.api_token_create(
            user=data["user"],
            name=data["name"],
            tenant=data["tenant"],
            expires_at=data["expires_at"],
            actor=_actor(request),
        )
        _adopt(obj, token)
        # Handed to response_add within this request only: the secret is never stored, not even in a message.
        request._aihub_token_secret = secret  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(request, "_aihub_token_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.opts,
            "token": obj,
            "secret": secret,
        }
        response = TemplateResponse(request, "admin/access/apitoken/created.html", context)
        # The page carries the only copy of the secret; no cache may keep another.
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).select_related("tenant"):
            services.api_token_revoke(token=token, actor=_actor(request))
            revoked += 1
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)


# --- Read-only records -----------------------------------------------------------------------------------


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(ReadOnlyModelAdmin):
    """Read-only but for unlinking, without which the admin could not delete a user who signed in by SSO."""

    list_display = ("subject", "issuer", "user", "last_login_at", "created_at")
    list_filter = ("issuer",)
    list_select_related = ("user",)
    search_fields = ("subject", "issuer", "user__username")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request: HttpRequest, obj: ExternalIdentity) -> None:
        services.external_identity_delete(identity=obj, actor=_actor(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ExternalIdentity]) -> None:
        for identity in queryset.select_related("user"):
            services.external_identity_delete(identity=identity, actor=_actor(request))


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyModelAdmin):
    list_display = ("created_at", "action", "actor_label", "tenant", "target_type", "target_id", "ip_address")
    list_filter = ("action", "tenant")
    search_fields = ("actor_label", "target_id")
    date_hierarchy = "created_at"
    fields = (
        "created_at",
        "action",
        "actor",
        "actor_label",
        "tenant",
        "target_type",
        "target_id",
        "ip_address",
        "request_id",
        "details",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        return audit_event_list()
