from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from aihub.access import services
from aihub.access.models import Membership
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import ADMIN_REQUEST_ID


@pytest.fixture
def operator(db: None) -> User:
    """A superuser who runs the installation."""
    return UserFactory.create(username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_site(operator: User) -> Client:
    """The operator's browser session in the admin; every request carries the X-Request-ID ``ADMIN_REQUEST_ID``."""
    client = Client(headers={"X-Request-ID": ADMIN_REQUEST_ID})
    client.force_login(operator)
    return client


@pytest.fixture
def role_manager(db: None) -> Membership:
    """Manages roles and members, uses everything, but is not a full admin."""
    tenant = TenantFactory.create()
    services.role_create(
        tenant=tenant, name="role-manager", rules=["aihub.user.>", "aihub.admin.roles", "aihub.admin.members"]
    )
    return MembershipFactory.create(tenant=tenant, roles=["role-manager"])
