from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from aihub.access.models import ApiToken, AuditEvent, Membership, Role, Tenant
from aihub.api.query import TimeRangeQuerySerializer


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know, so a typo never passes silently as a no-op."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields) if isinstance(self.initial_data, dict) else set()
        if unknown:
            raise serializers.ValidationError({name: "Unknown field." for name in sorted(unknown)})
        return attrs


class RulesField(serializers.ListField):
    child = serializers.CharField(max_length=300)


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = ["id", "slug", "name", "rule_ceiling", "created_at"]


class TenantCreateSerializer(StrictSerializer):
    slug = serializers.SlugField(max_length=63)
    name = serializers.CharField(max_length=200)
    rule_ceiling = RulesField(required=False, default=list)


class UserSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()


class MyTenantSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="tenant.id")
    slug = serializers.CharField(source="tenant.slug")
    name = serializers.CharField(source="tenant.name")
    is_default = serializers.BooleanField()
    roles = serializers.SerializerMethodField()
    rules = serializers.SerializerMethodField(help_text="Every rule the caller's roles give in this tenant.")
    rule_ceiling = serializers.ListField(source="tenant.rule_ceiling", child=serializers.CharField())

    def get_roles(self, membership: Membership) -> list[str]:
        return [role.name for role in membership.roles.all()]

    def get_rules(self, membership: Membership) -> list[str]:
        return list(dict.fromkeys(rule for role in membership.roles.all() for rule in role.rules))


class CredentialSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=["api_token", "oauth2", "oidc", "session"])
    scopes = serializers.ListField(child=serializers.CharField(), allow_null=True)
    token_tenant = serializers.CharField(allow_null=True)


class MeSerializer(serializers.Serializer):
    user = UserSummarySerializer()
    is_staff = serializers.BooleanField()
    credential = CredentialSerializer()
    tenants = MyTenantSerializer(many=True)


class ApiTokenSerializer(serializers.ModelSerializer):
    prefix = serializers.CharField(source="display_prefix", read_only=True)
    tenant: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "tenant", "expires_at", "last_used_at", "revoked_at", "created_at"]


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.SerializerMethodField(help_text="The secret. It is shown in this response only.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]

    def get_token(self, obj: ApiToken) -> str:
        return str(self.context["secret"])


class ApiTokenCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    tenant = serializers.SlugField(required=False, allow_null=True, help_text="Restrict the token to this tenant.")
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class RoleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Role
        fields = ["id", "name", "description", "rules", "created_at"]


class RoleCreateSerializer(StrictSerializer):
    name = serializers.SlugField(max_length=63)
    description = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)
    rules = RulesField()


class RoleUpdateSerializer(StrictSerializer):
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    rules = RulesField(required=False)


class MembershipSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)
    roles: Any = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "roles", "created_at"]


class MembershipCreateSerializer(StrictSerializer):
    username = serializers.CharField(max_length=150)
    roles = serializers.ListField(child=serializers.SlugField(), allow_empty=True)


class MembershipUpdateSerializer(StrictSerializer):
    roles = serializers.ListField(child=serializers.SlugField(), allow_empty=True)


AUDIT_EVENT_EXAMPLE: dict[str, Any] = {
    "id": 4711,
    "created_at": "2025-01-01T12:00:00Z",
    "action": "membership.roles_changed",
    "actor": "alice",
    "actor_id": 7,
    "target_type": "membership",
    "target_id": "2f1d0c3b-7a6e-4b5c-9d8e-1f2a3b4c5d6e",
    "ip_address": "203.0.113.9",
    "request_id": "b93660d86a8442b5bc6afda2eca27b14",
    "details": {"user": "bob", "roles_before": ["member"], "roles": ["knowledge-admin", "member"]},
}


@extend_schema_serializer(examples=[OpenApiExample("A member's roles changed", value=AUDIT_EVENT_EXAMPLE)])
class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(
        source="actor_label", help_text="The username who acted, as it was then; empty when no user did."
    )
    actor_id = serializers.IntegerField(allow_null=True, help_text="The user who acted; null once deleted, or none.")

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "action",
            "actor",
            "actor_id",
            "target_type",
            "target_id",
            "ip_address",
            "request_id",
            "details",
        ]
        read_only_fields = fields


class AuditLogQuerySerializer(TimeRangeQuerySerializer):
    action = serializers.CharField(
        required=False, max_length=64, help_text="Only this action, e.g. `token.created` or `role.updated`."
    )
    actor = serializers.CharField(required=False, max_length=200, help_text="Only what this username did.")
