"""Lists come in one envelope: {"items", "total", "limit", "offset"}, with the limit capped; the lists that grow
(messages, events, jobs, documents, chunks, the audit log, usage records) also page by cursor:
{"items", "limit", "next", "previous"}."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.models import Agent
from aihub.access.models import Membership
from aihub.access.services import DEFAULT_ROLES, audit_record, role_create
from jobs import services as job_services
from jobs.models import JobStatus
from jobs.usage import passthrough_record
from tests.agents.factories import AgentFactory
from tests.helpers import assert_problem
from tests.knowledge.factories import CollectionFactory, add_document, add_ingested_document
from threads import services as thread_services
from threads.events import NewEvent
from threads.models import Thread

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


def test_a_limit_of_1000_is_accepted_and_a_larger_one_is_clamped_to_it(
    member_client: APIClient, roles_url: str, seven_roles: list[str]
) -> None:
    assert member_client.get(roles_url, {"limit": 1000}).json()["limit"] == 1000
    assert member_client.get(roles_url, {"limit": 1001}).json()["limit"] == 1000
    # A list that does not grow (roles) pages by offset only, cursor or not.
    assert member_client.get(roles_url, {"cursor": ""}).json().keys() == {"items", "total", "limit", "offset"}


# --- Cursor pages of the lists that grow -------------------------------------------------------------------


Row = Callable[[], str]


@dataclass
class GrowingList:
    """A list route, and how to add one row to it (returning the new row's id); ``filters`` narrow the list to
    the rows the test adds (they stay in the cursor links)."""

    url: str
    add: Row
    newest_first: bool
    filters: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def admin_client(admin_membership: Membership, client_as: Callable[..., APIClient]) -> APIClient:
    return client_as(admin_membership)


@pytest.fixture
def echo(admin_membership: Membership) -> Agent:
    return AgentFactory.create(tenant=admin_membership.tenant, slug="echo")


@pytest.fixture
def thread(admin_membership: Membership) -> Thread:
    return thread_services.thread_create(tenant=admin_membership.tenant, created_by=admin_membership.user)


def _messages(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    def add() -> str:
        message = thread_services.message_create(thread=thread, role="user", content="hi", author=membership.user)
        return str(message.pk)

    return GrowingList(f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/messages/", add, newest_first=False)


def _events(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    def add() -> str:
        (event,) = thread_services.events_append(thread=thread, events=[NewEvent("thought", {"text": "hmm"})])
        return str(event.sequence)

    return GrowingList(f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/events/", add, newest_first=False)


def _jobs(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    def add() -> str:
        return str(job_services.job_submit(agent=echo, user=membership.user, content="hi")[0].pk)

    return GrowingList(f"/api/v1/{membership.tenant.slug}/jobs/", add, newest_first=True)


def _documents(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    collection = CollectionFactory.create(tenant=membership.tenant)
    count = iter(range(10_000))

    def add() -> str:
        return str(add_document(collection, f"Document number {next(count)}.", filename=f"{uuid.uuid4()}.txt").pk)

    return GrowingList(
        f"/api/v1/{membership.tenant.slug}/collections/{collection.slug}/documents/", add, newest_first=True
    )


def _chunks(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    collection = CollectionFactory.create(tenant=membership.tenant)
    count = iter(range(10_000))

    def add() -> str:
        (chunk,) = add_ingested_document(collection, [f"Chunk number {next(count)}."]).chunks.all()
        return str(chunk.pk)

    return GrowingList(f"/api/v1/{membership.tenant.slug}/collections/{collection.slug}/chunks/", add, False)


def _audit_log(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    def add() -> str:
        return str(audit_record(action="role.updated", actor=membership.user, tenant=membership.tenant).pk)

    # The tenant's creation and its members' were audited before: the test's rows are its role updates.
    url = f"/api/v1/{membership.tenant.slug}/audit-log/"
    return GrowingList(url, add, newest_first=True, filters={"action": "role.updated"})


def _usage_records(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    def add() -> str:
        job, _ = job_services.job_submit(agent=echo, user=membership.user, content="hi")
        job_services.job_finish(job=job, status=JobStatus.SUCCEEDED, usage={"input_tokens": 3, "output_tokens": 2})
        return str(job.pk)

    return GrowingList(f"/api/v1/{membership.tenant.slug}/usage/jobs/", add, newest_first=True)


def _usage_calls(membership: Membership, echo: Agent, thread: Thread) -> GrowingList:
    def add() -> str:
        usage = {"input_tokens": 4, "output_tokens": 1}
        call = passthrough_record(tenant=membership.tenant, user=membership.user, kind="speech", model="m", usage=usage)
        return str(call.pk)

    return GrowingList(f"/api/v1/{membership.tenant.slug}/usage/calls/", add, newest_first=True)


GROWING_LISTS = [_messages, _events, _jobs, _documents, _chunks, _audit_log, _usage_records, _usage_calls]


def _ids(body: dict[str, Any]) -> list[str]:
    # A usage record is named by its job.
    return [str(item["id"] if "id" in item else item["job"]) for item in body["items"]]


def _walk(
    client: APIClient, first: dict[str, Any], *, while_walking: Callable[[], None] | None = None
) -> tuple[list[str], Any]:
    """Follow ``next`` from the first page to the end; returns the ids seen and the first page."""
    seen, body = _ids(first), first
    while body["next"]:
        if while_walking:
            while_walking()
            while_walking()
        body = client.get(body["next"]).json()
        assert body.keys() == {"items", "limit", "next", "previous"}
        seen += _ids(body)
    return seen, first


@pytest.mark.parametrize("growing", GROWING_LISTS, ids=lambda f: f.__name__.strip("_"))
def test_a_cursor_walk_over_a_growing_list_returns_every_row_once(
    admin_client: APIClient, admin_membership: Membership, echo: Agent, thread: Thread, growing: Any
) -> None:
    rows: GrowingList = growing(admin_membership, echo, thread)
    before = [rows.add() for _ in range(7)]
    added: list[str] = []

    def add_during_the_walk() -> None:
        added.append(rows.add())

    first = admin_client.get(rows.url, {"cursor": "", "limit": "3", **rows.filters}).json()
    seen, first = _walk(admin_client, first, while_walking=add_during_the_walk)

    assert added
    assert len(seen) == len(set(seen)), "a row came twice"
    if not rows.newest_first:
        # Oldest first: what was added during the walk comes after what was there, in order.
        assert seen == before + added
        return
    # Newest first: the walk returns what was there, newest first; the first page's `previous`, followed until
    # it comes back empty, what was added since, a page at a time.
    assert seen == before[::-1]
    newer: list[str] = []
    page = admin_client.get(first["previous"]).json()
    while page["items"]:
        newer = _ids(page) + newer
        page = admin_client.get(page["previous"]).json()
    assert newer == added[::-1]


@pytest.mark.parametrize("growing", GROWING_LISTS, ids=lambda f: f.__name__.strip("_"))
def test_a_cursor_page_has_links_and_no_total(
    admin_client: APIClient, admin_membership: Membership, echo: Agent, thread: Thread, growing: Any
) -> None:
    rows: GrowingList = growing(admin_membership, echo, thread)
    for _ in range(3):
        rows.add()

    body = admin_client.get(rows.url, {"cursor": "", "limit": "2", **rows.filters}).json()

    assert body.keys() == {"items", "limit", "next", "previous"}
    assert body["limit"] == 2
    assert len(body["items"]) == 2
    assert "cursor=" in body["next"] and "limit=2" in body["next"]
    assert (body["previous"] is not None) == rows.newest_first
    last = admin_client.get(body["next"]).json()
    assert len(last["items"]) == 1
    assert last["next"] is None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "cD1ub3QtYS1kYXRl", "\u00e9t\u00e9", "cD0AAA=="])
def test_a_cursor_the_list_did_not_give_out_is_a_400_problem(
    admin_client: APIClient, admin_membership: Membership, echo: Agent, thread: Thread, cursor: str
) -> None:
    for growing in (_jobs, _events, _chunks, _audit_log, _usage_records, _usage_calls):
        rows: GrowingList = growing(admin_membership, echo, thread)
        rows.add()
        body = assert_problem(admin_client.get(rows.url, {"cursor": cursor}), 400)
        assert body["errors"][0]["field"] == "cursor"


def test_without_a_cursor_the_growing_lists_keep_their_offset_pages(
    admin_client: APIClient, admin_membership: Membership, echo: Agent, thread: Thread
) -> None:
    for growing in (_messages, _jobs, _documents, _chunks, _audit_log, _usage_records, _usage_calls):
        rows: GrowingList = growing(admin_membership, echo, thread)
        rows.add()
        assert admin_client.get(rows.url).json().keys() == {"items", "total", "limit", "offset"}


def test_a_cursor_page_of_jobs_costs_one_statement_however_far_the_walk(
    admin_client: APIClient, admin_membership: Membership, echo: Agent, thread: Thread
) -> None:
    rows = _jobs(admin_membership, echo, thread)
    for _ in range(5):
        rows.add()
    first = admin_client.get(rows.url, {"cursor": "", "limit": "2"}).json()  # also remembers token and roles

    with CaptureQueriesContext(connection) as captured:
        second = admin_client.get(first["next"])
    assert second.status_code == 200
    # The page with its agents and threads joined: no COUNT, no query per job.
    statements = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert len(statements) == 1, "\n".join(statements)
