"""Factories for the access models. Tenants and memberships are made through the services, as in real use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import factory
from django.contrib.auth.models import User

from aihub.access import services
from aihub.access.models import ApiToken, Membership, Tenant

PASSWORD = "correct-horse-battery-staple"
"""The password every ``UserFactory`` user has."""

if TYPE_CHECKING:

    class IssuedApiToken(ApiToken):
        """What ``ApiTokenFactory`` returns: an ``ApiToken`` that still knows its secret."""

        raw: str

else:
    IssuedApiToken = ApiToken


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)


class TenantFactory(factory.django.DjangoModelFactory[Tenant]):
    class Meta:
        model = Tenant

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.title())
    rule_ceiling: list[str] = []

    @classmethod
    def _create(cls, model_class: type[Tenant], *args: Any, **kwargs: Any) -> Tenant:
        return services.tenant_create(**kwargs)


class MembershipFactory(factory.django.DjangoModelFactory[Membership]):
    """``MembershipFactory.create(user=..., tenant=..., roles=["member"])``."""

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


class ApiTokenFactory(factory.django.DjangoModelFactory[IssuedApiToken]):
    """The created token carries its secret as ``.raw`` (the database only has the hash)."""

    class Meta:
        model = ApiToken

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"token {n}")
    tenant = None
    expires_at = None

    @classmethod
    def _create(cls, model_class: type[ApiToken], *args: Any, **kwargs: Any) -> IssuedApiToken:
        token, raw = services.api_token_create(**kwargs)
        issued = cast(IssuedApiToken, token)
        issued.raw = raw
        return issued
