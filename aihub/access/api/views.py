"""The caller, API tokens, tenants, roles and members. Thin: parse, call one service or selector, render."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from aihub.access import selectors, services
from aihub.access.api import serializers as s
from aihub.access.models import ApiToken, AuditEvent, Membership, Role, Tenant
from aihub.access.oidc import ExternalIdentityClaims
from aihub.access.permissions import IsAuthenticatedWithScope, IsStaff
from aihub.access.principal import credential_scopes, credential_tenant_id
from aihub.api.base import ApiMixin, ApiView, TenantScopedViewSet, caller
from aihub.api.pagination import cursor_pagination
from aihub.api.problems import PROBLEM_CONTENT_TYPE
from aihub.api.schema import ProblemSerializer

TENANT_PARAMETER = OpenApiParameter(
    "tenant",
    str,
    OpenApiParameter.PATH,
    description="The tenant's slug, or `active` for your default tenant.",
)


def _credential(request: Request) -> dict[str, Any]:
    auth = request.auth
    if isinstance(auth, ApiToken):
        method = "api_token"
    elif isinstance(auth, ExternalIdentityClaims):
        method = "oidc"
    elif auth is None:
        method = "session"
    else:
        method = "oauth2"
    scopes = credential_scopes(auth)
    # The authentication class loaded the token with its tenant.
    token_tenant = auth.tenant if isinstance(auth, ApiToken) else None
    return {
        "method": method,
        "scopes": sorted(scopes) if scopes is not None else None,
        "token_tenant": token_tenant.slug if token_tenant is not None else None,
    }


class MeView(ApiView):
    @extend_schema(responses=s.MeSerializer, summary="The caller: user, tenants with roles, effective rules")
    def get(self, request: Request) -> Response:
        user = caller(request)
        memberships = selectors.membership_list_for_user(user=user)
        restricted_to = credential_tenant_id(request.auth)
        if restricted_to is not None:
            memberships = memberships.filter(tenant_id=restricted_to)
        body = {
            "user": user,
            "is_staff": user.is_staff,
            "credential": _credential(request),
            "tenants": memberships,
        }
        return Response(s.MeSerializer(body).data)


class ApiTokenViewSet(
    ApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, GenericViewSet
):
    """The caller's API tokens. DELETE revokes (the record stays, for the audit trail)."""

    serializer_class = s.ApiTokenSerializer
    lookup_value_converter = "uuid"

    model = ApiToken

    def visible_queryset(self) -> Any:
        return selectors.api_token_list(user=caller(self.request))

    @extend_schema(
        request=s.ApiTokenCreateSerializer,
        responses={
            201: s.ApiTokenCreatedSerializer,
            (404, PROBLEM_CONTENT_TYPE): OpenApiResponse(
                ProblemSerializer, description="`tenant` names no tenant the caller belongs to."
            ),
        },
    )
    def create(self, request: Request) -> Response:
        data = s.ApiTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant_slug = data.validated_data.get("tenant")
        tenant = None
        if tenant_slug:
            tenant = selectors.tenant_list(user=caller(request)).filter(slug=tenant_slug).first()
            if tenant is None:
                raise Http404(f"No tenant {tenant_slug!r}.")
        self._check_may_mint(request, tenant)
        token, secret = services.api_token_create(
            user=caller(request),
            name=data.validated_data["name"],
            tenant=tenant,
            expires_at=data.validated_data.get("expires_at"),
            actor=caller(request),
        )
        body = s.ApiTokenCreatedSerializer(token, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @staticmethod
    def _check_may_mint(request: Request, tenant: Tenant | None) -> None:
        # A credential may not mint one that reaches further than itself.
        if credential_scopes(request.auth) is not None:
            raise PermissionDenied("API tokens cannot be created with an OAuth2 access token.")
        restricted_to = credential_tenant_id(request.auth)
        if restricted_to is not None and (tenant is None or tenant.pk != restricted_to):
            raise PermissionDenied("A tenant-restricted token may only create tokens for its own tenant.")

    @extend_schema(responses={204: None}, summary="Revoke an API token")
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.api_token_revoke(token=self.get_object(), actor=caller(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TenantsViewSet(ApiMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet):
    """Tenants the caller belongs to. Staff create tenants (and become their first admin)."""

    serializer_class = s.TenantSerializer
    lookup_field = "slug"

    def get_permissions(self) -> Any:
        if self.action == "create":
            return [IsAuthenticatedWithScope(), IsStaff()]
        return super().get_permissions()

    model = Tenant

    def visible_queryset(self) -> Any:
        queryset = selectors.tenant_list(user=caller(self.request))
        restricted_to = credential_tenant_id(self.request.auth)
        return queryset.filter(pk=restricted_to) if restricted_to is not None else queryset

    @extend_schema(request=s.TenantCreateSerializer, responses={201: s.TenantSerializer})
    def create(self, request: Request) -> Response:
        # The new tenant would lie outside what the credential may reach, so it may not make one either.
        if credential_tenant_id(request.auth) is not None:
            raise PermissionDenied("A tenant-restricted token cannot create tenants.")
        data = s.TenantCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_create(**data.validated_data, owner=caller(request), actor=caller(request))
        return Response(s.TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[TENANT_PARAMETER])
class RoleViewSet(TenantScopedViewSet):
    """Roles of the tenant and their permission rules. Reading needs aihub.user.roles, changing aihub.admin.roles.

    Writes check the admin rule before looking the row up or reading the body, so a caller who may only look
    learns nothing from a write (not even whether an id exists) beyond a 403.
    """

    serializer_class = s.RoleSerializer

    model = Role

    def visible_queryset(self) -> Any:
        return selectors.role_list(principal=self.principal)

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.RoleSerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.RoleSerializer(self.get_object()).data)

    @extend_schema(request=s.RoleCreateSerializer, responses={201: s.RoleSerializer})
    def create(self, request: Request, tenant: str) -> Response:
        self.principal.require("admin", "roles")
        data = s.RoleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        role = services.role_create(
            tenant=self.principal.tenant, **data.validated_data, granted_by=self.principal, actor=caller(request)
        )
        return Response(s.RoleSerializer(role).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.RoleUpdateSerializer, responses=s.RoleSerializer)
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        self.principal.require("admin", "roles")
        role = self.get_object()
        data = s.RoleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        role = services.role_update(role=role, **data.validated_data, granted_by=self.principal, actor=caller(request))
        return Response(s.RoleSerializer(role).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        self.principal.require("admin", "roles")
        services.role_delete(role=self.get_object(), granted_by=self.principal, actor=caller(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[TENANT_PARAMETER])
class MemberViewSet(TenantScopedViewSet):
    """Who belongs to the tenant, with which roles. Reading needs aihub.user.members, changing aihub.admin.members.

    Writes check the admin rule first, as for roles.
    """

    serializer_class = s.MembershipSerializer

    model = Membership

    def visible_queryset(self) -> Any:
        return selectors.membership_list(principal=self.principal)

    def _render(self, membership: Membership) -> Any:
        # Read back through the selector: the response shows what the database now holds, never a stale cache.
        return s.MembershipSerializer(self.get_queryset().get(pk=membership.pk)).data

    def list(self, request: Request, tenant: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.MembershipSerializer(page, many=True).data)

    def retrieve(self, request: Request, tenant: str, pk: str) -> Response:
        return Response(s.MembershipSerializer(self.get_object()).data)

    @extend_schema(request=s.MembershipCreateSerializer, responses={201: s.MembershipSerializer})
    def create(self, request: Request, tenant: str) -> Response:
        self.principal.require("admin", "members")
        data = s.MembershipCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = selectors.active_user_by_username(username=data.validated_data["username"])
        if user is None:
            raise ValidationError({"username": "No active user has this username."})
        membership = services.membership_create(
            tenant=self.principal.tenant,
            user=user,
            role_names=data.validated_data["roles"],
            granted_by=self.principal,
            actor=caller(request),
        )
        return Response(self._render(membership), status=status.HTTP_201_CREATED)

    @extend_schema(request=s.MembershipUpdateSerializer, responses=s.MembershipSerializer)
    def partial_update(self, request: Request, tenant: str, pk: str) -> Response:
        self.principal.require("admin", "members")
        membership = self.get_object()
        data = s.MembershipUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.membership_set_roles(
            membership=membership,
            role_names=data.validated_data["roles"],
            granted_by=self.principal,
            actor=caller(request),
        )
        return Response(self._render(membership))

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, tenant: str, pk: str) -> Response:
        self.principal.require("admin", "members")
        services.membership_delete(membership=self.get_object(), granted_by=self.principal, actor=caller(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[TENANT_PARAMETER], tags=["audit"])
class AuditLogViewSet(TenantScopedViewSet):
    """The tenant's audit log: who did what to which thing, from where, in which request. Read-only."""

    serializer_class = s.AuditEventSerializer
    model = AuditEvent
    # The log grows with every security-relevant action: it pages by cursor too.
    pagination_class = cursor_pagination("-created_at", "-id")

    def visible_queryset(self) -> Any:
        return selectors.audit_log(principal=self.principal)

    @extend_schema(
        summary="The tenant's audit log, newest first",
        description="Security-relevant actions in this tenant (roles, members, tokens, schedules, the tenant "
        "itself); filter by `action`, `actor` (username) and time (`since`, `until`). Needs `aihub.admin.audit` "
        "(the `admin` role has it, `member` does not).",
        parameters=[s.AuditLogQuerySerializer],
        responses={
            200: s.AuditEventSerializer(many=True),
            (403, PROBLEM_CONTENT_TYPE): OpenApiResponse(ProblemSerializer, description="Without aihub.admin.audit."),
        },
    )
    def list(self, request: Request, tenant: str) -> Response:
        query = s.AuditLogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = self.paginate_queryset(selectors.audit_log(principal=self.principal, **query.validated_data))
        return self.get_paginated_response(s.AuditEventSerializer(page, many=True).data)
