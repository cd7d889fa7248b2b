"""The memory API: ``memories/`` (the caller's own) and ``org-memories/`` (the tenant's shared), isolated by user
and tenant, with semantic search, edits, deletes, and problem details for bad input."""

from __future__ import annotations

import pytest

from agents.memory import MEMORY_MAX_CHARS, QUERY_MAX_CHARS, memory_create
from agents.models import Memory, MemoryScope
from aihub.access import services as access_services
from aihub.access.models import Membership, Tenant
from knowledge.embedders import Embedder
from tests.agents.test_api import member_with_rules
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.knowledge.conftest import minilm  # noqa: F401 - the session-scoped model fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _model(minilm: Embedder) -> None:  # noqa: F811
    """Writes and searches embed: the real model, loaded once per session."""


def url(tenant: Tenant, kind: str = "memories", *rest: str) -> str:
    return "/".join([f"/api/v1/{tenant.slug}/{kind}", *rest, ""])


def mine(membership: Membership, text: str) -> Memory:
    return memory_create(tenant=membership.tenant, scope=MemoryScope.USER, owner_id=membership.user_id, text=text)


def shared(tenant: Tenant, text: str) -> Memory:
    return memory_create(tenant=tenant, scope=MemoryScope.TENANT, text=text)


@pytest.fixture
def neighbour(membership: Membership) -> Membership:
    """Another member of the same tenant."""
    return MembershipFactory.create(tenant=membership.tenant)


def member_with_rules_in(tenant: Tenant, role: str, *rules: str) -> Membership:
    access_services.role_create(tenant=tenant, name=role, rules=list(rules))
    return MembershipFactory.create(tenant=tenant, roles=[role])


# --- Own memories -------------------------------------------------------------------------------------------


def test_a_member_lists_only_their_own_memories_newest_first_with_pagination(
    client_as: ClientAs, membership: Membership, neighbour: Membership
) -> None:
    first, second = mine(membership, "Likes tea."), mine(membership, "Works in Bern.")
    mine(neighbour, "Likes coffee.")
    shared(membership.tenant, "The office opens at eight.")

    response = client_as(membership).get(url(membership.tenant), {"limit": 1})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["total"], body["limit"]) == (2, 1)
    assert [m["id"] for m in body["items"]] == [str(second.pk)]
    assert body["items"][0]["scope"] == "user" and body["items"][0]["score"] is None
    rest = client_as(membership).get(url(membership.tenant), {"limit": 1, "offset": 1}).json()
    assert [m["id"] for m in rest["items"]] == [str(first.pk)]


def test_semantic_search_ranks_the_callers_memories_by_meaning(
    client_as: ClientAs, membership: Membership, neighbour: Membership
) -> None:
    mine(membership, "The quarterly report is due in March.")
    tea = mine(membership, "Drinks green tea every morning.")
    mine(neighbour, "Drinks black coffee every morning.")

    body = client_as(membership).get(url(membership.tenant), {"q": "favourite hot drink"}).json()
    assert body["total"] == 2
    assert body["items"][0]["id"] == str(tea.pk)
    assert body["items"][0]["score"] > body["items"][1]["score"]


def test_a_member_adds_edits_and_deletes_a_memory(client_as: ClientAs, membership: Membership) -> None:
    client = client_as(membership)
    created = client.post(url(membership.tenant), {"text": "Prefers answers in German."}, format="json")
    assert created.status_code == 201, created.content
    memory = Memory.objects.get(pk=created.json()["id"])
    assert (memory.owner_id, memory.scope, memory.tenant_id) == (membership.user_id, "user", membership.tenant_id)

    changed = client.patch(
        url(membership.tenant, "memories", str(memory.pk)),
        {"text": "Prefers answers in French.", "metadata": {"set_by": "user"}},
        format="json",
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["text"] == "Prefers answers in French."
    assert changed.json()["metadata"] == {"set_by": "user"}
    assert client.get(url(membership.tenant, "memories", str(memory.pk))).json()["text"] == (
        "Prefers answers in French."
    )

    assert client.delete(url(membership.tenant, "memories", str(memory.pk))).status_code == 204
    assert not Memory.objects.exists()


def test_deleting_all_my_memories_leaves_everyone_elses(
    client_as: ClientAs, membership: Membership, neighbour: Membership
) -> None:
    mine(membership, "Likes tea."), mine(membership, "Works in Bern.")
    theirs = mine(neighbour, "Likes coffee.")
    office = shared(membership.tenant, "The office opens at eight.")

    response = client_as(membership).delete(url(membership.tenant))
    assert response.status_code == 200, response.content
    assert response.json() == {"deleted": 2}
    assert set(Memory.objects.values_list("pk", flat=True)) == {theirs.pk, office.pk}


def test_a_memory_of_another_user_or_tenant_is_a_404(
    client_as: ClientAs, membership: Membership, neighbour: Membership
) -> None:
    theirs = mine(neighbour, "Likes coffee.")
    elsewhere_member = MembershipFactory.create(user=membership.user)
    elsewhere = mine(elsewhere_member, "Likes tea elsewhere.")
    client = client_as(membership)
    for memory in (theirs, elsewhere):
        detail = url(membership.tenant, "memories", str(memory.pk))
        assert_problem(client.get(detail), 404)
        assert_problem(client.patch(detail, {"text": "Mine now."}, format="json"), 404)
        assert_problem(client.delete(detail), 404)
    # A shared memory is not one of "my" memories either.
    office = shared(membership.tenant, "The office opens at eight.")
    assert_problem(client.get(url(membership.tenant, "memories", str(office.pk))), 404)
    assert Memory.objects.get(pk=theirs.pk).text == "Likes coffee."
    assert Memory.objects.count() == 3


def test_empty_or_huge_texts_and_queries_are_clear_problems_and_store_nothing(
    client_as: ClientAs, membership: Membership
) -> None:
    client = client_as(membership)
    assert_invalid(client.post(url(membership.tenant), {"text": "   "}, format="json"), "text")
    assert_invalid(client.post(url(membership.tenant), {"text": "x" * (MEMORY_MAX_CHARS + 1)}, format="json"), "text")
    assert_invalid(client.post(url(membership.tenant), {}, format="json"), "text")
    assert_invalid(client.post(url(membership.tenant), {"text": "ok", "colour": "red"}, format="json"), "colour")
    assert_invalid(client.post(url(membership.tenant), {"text": "ok", "metadata": [1]}, format="json"), "metadata")
    assert not Memory.objects.exists()

    assert_invalid(client.get(url(membership.tenant), {"q": ""}), "q")
    assert_invalid(client.get(url(membership.tenant), {"q": "q" * (QUERY_MAX_CHARS + 1)}), "q")

    memory = mine(membership, "Likes tea.")
    detail = url(membership.tenant, "memories", str(memory.pk))
    assert_invalid(client.patch(detail, {"text": ""}, format="json"), "text")
    assert Memory.objects.get(pk=memory.pk).text == "Likes tea."


# --- Shared memories ----------------------------------------------------------------------------------------


def test_members_read_and_search_the_tenants_memories_but_only_admins_change_them(
    client_as: ClientAs, membership: Membership, admin_membership: Membership
) -> None:
    tenant = membership.tenant
    office = shared(tenant, "The office opens at eight.")
    shared(admin_membership.tenant, "Another tenant's secret.")
    member = client_as(membership)

    listed = member.get(url(tenant, "org-memories")).json()
    assert [m["id"] for m in listed["items"]] == [str(office.pk)]
    searched = member.get(url(tenant, "org-memories"), {"q": "opening hours"}).json()
    assert searched["items"][0]["id"] == str(office.pk) and searched["items"][0]["score"] > 0
    detail = url(tenant, "org-memories", str(office.pk))
    assert member.get(detail).json()["scope"] == "tenant"

    assert_problem(member.post(url(tenant, "org-memories"), {"text": "New rule."}, format="json"), 403)
    assert_problem(member.patch(detail, {"text": "Changed."}, format="json"), 403)
    assert_problem(member.delete(detail), 403)
    assert_problem(member.delete(url(tenant, "org-memories")), 403)
    assert Memory.objects.filter(tenant=tenant).count() == 1


def test_an_admin_manages_the_tenants_memories(client_as: ClientAs, admin_membership: Membership) -> None:
    tenant, admin = admin_membership.tenant, client_as(admin_membership)
    created = admin.post(url(tenant, "org-memories"), {"text": "Fiscal year starts in April."}, format="json")
    assert created.status_code == 201, created.content
    memory = Memory.objects.get(pk=created.json()["id"])
    assert (memory.scope, memory.owner_id) == ("tenant", None)

    detail = url(tenant, "org-memories", str(memory.pk))
    assert admin.patch(detail, {"text": "Fiscal year starts in July."}, format="json").json()["text"] == (
        "Fiscal year starts in July."
    )
    own = mine(admin_membership, "Admins have memories too.")
    response = admin.delete(url(tenant, "org-memories"))
    assert response.json() == {"deleted": 1}
    assert list(Memory.objects.values_list("pk", flat=True)) == [own.pk]


def test_shared_memories_follow_the_memories_rules(client_as: ClientAs, membership: Membership) -> None:
    office = shared(membership.tenant, "The office opens at eight.")
    agent_user = member_with_rules(membership.tenant, "aihub.user.agents.>")
    assert_problem(client_as(agent_user).get(url(membership.tenant, "org-memories")), 404)
    assert_problem(client_as(agent_user).get(url(membership.tenant, "org-memories", str(office.pk))), 404)
    # Their own memories need no rule.
    assert client_as(agent_user).get(url(membership.tenant)).status_code == 200

    editor = member_with_rules_in(membership.tenant, "editor", "aihub.admin.memories")
    created = client_as(editor).post(url(membership.tenant, "org-memories"), {"text": "Lunch at noon."}, format="json")
    assert created.status_code == 201, created.content


def test_a_user_sees_no_memories_of_a_tenant_they_do_not_belong_to(
    client_as: ClientAs, membership: Membership, admin_membership: Membership
) -> None:
    shared(admin_membership.tenant, "Another tenant's secret.")
    assert_problem(client_as(membership).get(url(admin_membership.tenant, "org-memories")), 404)
    assert_problem(client_as(membership).get(url(admin_membership.tenant)), 404)
