"""Base classes of every API view: address throttling before authentication, tenant resolution."""

from __future__ import annotations

from typing import Any

from adrf.views import APIView as AsyncAPIView
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.db.models import Model, QuerySet
from django.http import Http404
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView
from rest_framework.viewsets import GenericViewSet

from aihub.access.principal import Principal, principal_for
from aihub.api.parsers import check_query
from aihub.api.problems import not_found
from aihub.api.throttling import IpRateThrottle


def caller(request: Request) -> User:
    """The authenticated user (the default permission class has already refused anonymous callers)."""
    user = request.user
    if not isinstance(user, AbstractBaseUser):
        raise NotAuthenticated()
    return user


class ApiMixin:
    # Generic views name their model, so the schema generator (which has no caller) gets an empty queryset.
    model: type[Model] | None = None

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False) and self.model is not None:
            return self.model._default_manager.none()
        return self.visible_queryset()

    def visible_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError

    def get_object(self) -> Any:
        # DRF's lookup answers with Django's "No File matches the given query." (or a bare "Not found." for a
        # malformed id); the API words every 404 the same way, in its own voice.
        try:
            return super().get_object()  # type: ignore[misc]
        except Http404:
            lookup = getattr(self, "lookup_url_kwarg", None) or getattr(self, "lookup_field", "pk")
            model = self.model or self.get_queryset().model
            raise not_found(str(model._meta.verbose_name), self.kwargs.get(lookup, "")) from None  # type: ignore[attr-defined]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        check_query(request.query_params)

    def perform_authentication(self, request: Request) -> None:
        # Before authentication, so that failed credentials are rate limited by address as well.
        throttle = IpRateThrottle()
        if not throttle.allow_request(request, self):
            self.throttled(request, throttle.wait())  # type: ignore[attr-defined]
        super().perform_authentication(request)  # type: ignore[misc]


class TenantMixin:
    """Views under ``/api/v1/{tenant}/``: ``self.principal`` is the caller in that tenant."""

    principal: Principal

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.principal = principal_for(user=caller(request), tenant_ref=kwargs["tenant"], auth=request.auth)


class ApiView(ApiMixin, APIView):
    pass


class TenantApiView(TenantMixin, ApiMixin, APIView):
    pass


class AsyncApiView(ApiMixin, AsyncAPIView):
    """API views whose handlers are ``async def`` (adrf): authentication and throttles run in one call on the
    request's thread, then the handler runs on the event loop, where it may wait without holding a thread. ORM
    work inside it goes through ``aihub.db.db_call``."""


class AsyncTenantApiView(TenantMixin, ApiMixin, AsyncAPIView):
    """AsyncApiView under ``/api/v1/{tenant}/``: the tenant is resolved with the authentication."""


class TenantScopedViewSet(TenantMixin, ApiMixin, GenericViewSet):
    lookup_value_converter = "uuid"
