"""Lists come in one envelope: {"items", "total", "limit", "offset"}, with the limit capped."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from aihub.access.models import Membership
from aihub.access.services import DEFAULT_ROLES, role_create

pytestmark = pytest.mark.django_db

SMALL_PAGES = {"PAGE_SIZE": 2, "MAX_PAGE_SIZE": 3}


@pytest.fixture
def roles_url(membership: Membership) -> str:
    return f"/api/v1/{membership.tenant.slug}/roles/"


@pytest.fixture
def seven_roles(membership: Membership) -> list[str]:
    """The tenant's default roles plus enough of its own to make seven."""
    for index in range(7 - len(DEFAULT_ROLES)):
        role_create(tenant=membership.tenant, name=f"extra-{index}", rules=["aihub.user.agents.>"])
    return sorted(membership.tenant.roles.values_list("name", flat=True))


def test_a_list_comes_in_the_envelope(member_client: APIClient, roles_url: str, seven_roles: list[str]) -> None:
    body = member_client.get(roles_url).json()

    assert body.keys() == {"items", "total", "limit", "offset"}
    assert body["total"] == 7
    assert body["offset"] == 0
    assert body["limit"] == 50
    assert sorted(role["name"] for role in body["items"]) == seven_roles


def test_the_default_page_size_comes_from_settings(
    member_client: APIClient, roles_url: str, seven_roles: list[str]
) -> None:
    with override_settings(AIHUB=SMALL_PAGES):
        body = member_client.get(roles_url).json()

    assert body["limit"] == 2
    assert len(body["items"]) == 2
    assert body["total"] == 7


def test_the_limit_is_capped_at_max_page_size(member_client: APIClient, roles_url: str, seven_roles: list[str]) -> None:
    with override_settings(AIHUB=SMALL_PAGES):
        body = member_client.get(roles_url, {"limit": 1000}).json()

    assert body["limit"] == 3
    assert len(body["items"]) == 3
    assert body["total"] == 7


def test_offset_pages_through_the_whole_list_once(
    member_client: APIClient, roles_url: str, seven_roles: list[str]
) -> None:
    seen: list[str] = []
    for offset in range(0, 7, 3):
        body = member_client.get(roles_url, {"limit": 3, "offset": offset}).json()
        assert body["offset"] == offset
        seen += [role["name"] for role in body["items"]]

    assert sorted(seen) == seven_roles
    assert len(seen) == len(set(seen))


def test_an_offset_past_the_end_is_an_empty_page(
    member_client: APIClient, roles_url: str, seven_roles: list[str]
) -> None:
    body = member_client.get(roles_url, {"offset": 100}).json()

    assert body["items"] == []
    assert body["total"] == 7


@pytest.mark.parametrize("limit", ["0", "-5", "many"])
def test_a_nonsense_limit_falls_back_to_the_default(
    member_client: APIClient, roles_url: str, seven_roles: list[str], limit: str
) -> None:
    body = member_client.get(roles_url, {"limit": limit}).json()

    assert body["limit"] == 50
