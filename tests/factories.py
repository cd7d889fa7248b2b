"""Factories for the access models. Tenants and memberships are made through the services, as in real use."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from aihub.access import services
from aihub.access.models import ApiToken, Membership, Tenant


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct-horse-battery-staple")


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())
    rule_ceiling: list[str] = []

    @classmethod
    def _create(cls, model_class: type[Tenant], *args: Any, **kwargs: Any) -> Tenant:
        return services.tenant_create(**kwargs)


class MembershipFactory(factory.django.DjangoModelFactory):
    """``MembershipFactory(user=..., tenant=..., roles=["member"])``."""

    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    roles = ("member",)

    @classmethod
    def _create(cls, model_class: type[Membership], *args: Any, **kwargs: Any) -> Membership:
        return services.membership_create(
            tenant=kwargs["tenant"], user=kwargs["user"], role_names=list(kwargs["roles"])
        )


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """The created token carries its secret as ``.raw`` (the database only has the hash)."""

    class Meta:
        model = ApiToken

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"token {n}")
    tenant = None
    expires_at = None

    @classmethod
    def _create(cls, model_class: type[ApiToken], *args: Any, **kwargs: Any) -> ApiToken:
        token, raw = services.api_token_create(**kwargs)
        token.raw = raw  # type: ignore[attr-defined]
        return token
