"""Usage accounting: every ended job records its tokens and cost (at the catalogue's prices), its final event
carries them, /usage reports totals and time series, and /usage/jobs/ and /usage/calls/ list the record of each
ended job (latest end first) and passthrough call: a member's own or, for admins, the tenant's; never another
tenant's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import catalogue
from agents.models import Agent, CatalogueModel
from aihub.access.models import Membership
from jobs import services
from jobs.models import Job
from jobs.usage import passthrough_record
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import run_now
from threads.models import Event

pytestmark = pytest.mark.django_db

OFFLINE = "offline/aihub-offline-1"


def price_offline(input_price: str, output_price: str) -> None:
    catalogue.catalogue_ensure_builtins()
    catalogue.catalogue_model_update(
        model=CatalogueModel.objects.get(model_id=OFFLINE),
        input_price_per_million=Decimal(input_price),
        output_price_per_million=Decimal(output_price),
    )


def finished(agent: Agent, user: User, text: str = "hello there world", *, at: datetime | None = None) -> Job:
    job = run_now(services.job_submit(agent=agent, user=user, content=text)[0])
    if at is not None:
        Job.objects.filter(pk=job.pk).update(created_at=at)
        job.refresh_from_db()
    return job


# --- Accounting ------------------------------------------------------------------------------------------------


def test_a_finished_job_records_tokens_model_and_cost_at_the_catalogues_prices(echo: Agent, user: User) -> None:
    price_offline("2", "4")

    job = finished(echo, user, "hello there world")

    # The echo agent's offline model: 3 words in, 3 words out.
    assert (job.model, job.input_tokens, job.output_tokens) == (OFFLINE, 3, 3)
    assert job.cost == Decimal("0.000018")  # (3 * 2 + 3 * 4) / 1e6
    assert job.usage == {
        "input_tokens": 3,
        "output_tokens": 3,
        "total_tokens": 6,
        "cost": 0.000018,
        "currency": "USD",
        "model": OFFLINE,
    }
    final = Event.objects.get(job_id=job.pk, type="job.succeeded")
    assert final.data["usage"] == job.usage


def test_a_model_without_prices_costs_nothing(echo: Agent, user: User) -> None:
    agent = AgentFactory.create(tenant=echo.tenant, model="elsewhere/unpriced")

    job = finished(agent, user)

    assert (job.model, job.cost, job.usage["cost"]) == ("elsewhere/unpriced", Decimal(0), 0.0)


def test_a_job_cancelled_before_it_ran_ends_with_zero_usage_in_its_final_event(echo: Agent, user: User) -> None:
    job = services.job_submit(agent=echo, user=user, content="never mind")[0]

    services.job_cancel(job=job)

    final = Event.objects.get(job_id=job.pk, type="job.cancelled")
    assert final.data["usage"]["total_tokens"] == 0
    assert final.data["usage"]["cost"] == 0.0


def test_the_job_result_carries_the_usage(client_as: ClientAs, membership: Membership) -> None:
    price_offline("1", "1")
    agent = AgentFactory.create(tenant=membership.tenant, slug="echo")
    job = finished(agent, membership.user, "one two")

    body = client_as(membership).get(f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/").json()

    assert body["usage"] == {
        "input_tokens": 2,
        "output_tokens": 2,
        "total_tokens": 4,
        "cost": 0.000004,
        "currency": "USD",
        "model": OFFLINE,
    }


# --- The /usage report -----------------------------------------------------------------------------------------

DAY1 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
DAY2 = datetime(2026, 11, 3, 14, 5, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def history(membership: Membership, admin_membership: Membership) -> dict[str, Any]:
    """Jobs of a member and of an admin (another tenant's admin, made a member of this one) over three days."""
    tenant = membership.tenant
    boss = MembershipFactory.create(tenant=tenant, roles=["admin"])
    echo = AgentFactory.create(tenant=tenant, slug="echo")
    helper = AgentFactory.create(tenant=tenant, slug="helper", model="elsewhere/other")
    price_offline("1000000", "2000000")  # 1 per input token, 2 per output token: easy sums
    jobs = [
        finished(echo, membership.user, "one two", at=DAY1),  # 2 in, 2 out: 6
        finished(echo, membership.user, "one two three", at=DAY1 + timedelta(minutes=10)),  # 3 + 3: 9
        finished(helper, membership.user, "one", at=DAY2),  # 1 + 1, unpriced: 0
        finished(echo, boss.user, "one two three four", at=DAY2),  # 4 + 4: 12
    ]
    # Outside the period asked for, and in another tenant.
    finished(echo, membership.user, "late", at=DECEMBER)
    finished(AgentFactory.create(tenant=admin_membership.tenant), admin_membership.user, "elsewhere", at=DAY1)
    return {"tenant": tenant, "member": membership, "boss": boss, "jobs": jobs}


def usage_of(client: Any, membership: Membership, **params: Any) -> Any:
    query = {"from": "2026-11-01", "to": "2026-11-30", **params}
    return client.get(f"/api/v1/{membership.tenant.slug}/usage", query)


def test_a_member_sees_their_own_totals(client_as: ClientAs, history: dict[str, Any]) -> None:
    member = history["member"]

    response = usage_of(client_as(member), member)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"] == "mine"
    assert body["totals"] == {"jobs": 3, "input_tokens": 6, "output_tokens": 6, "total_tokens": 12, "cost": 15.0}
    assert [point["period"] for point in body["series"]] == ["2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"]
    assert [point["total_tokens"] for point in body["series"]] == [10, 2]


def test_an_admin_sees_the_tenants_usage_by_user(client_as: ClientAs, history: dict[str, Any]) -> None:
    boss, member = history["boss"], history["member"]

    body = usage_of(client_as(boss), boss, group_by="user").json()

    assert body["scope"] == "tenant"
    assert body["totals"]["jobs"] == 4 and body["totals"]["cost"] == 27.0
    by_user = {group["label"]: (group["jobs"], group["cost"]) for group in body["groups"]}
    assert by_user == {boss.user.username: (1, 12.0), member.user.username: (3, 15.0)}
    assert body["groups"][0]["label"] == member.user.username  # the biggest spender first


def test_an_admin_may_ask_for_their_own_usage_only(client_as: ClientAs, history: dict[str, Any]) -> None:
    boss = history["boss"]

    body = usage_of(client_as(boss), boss, scope="mine").json()

    assert (body["scope"], body["totals"]["jobs"]) == ("mine", 1)


def test_usage_grouped_by_agent_and_by_model(client_as: ClientAs, history: dict[str, Any]) -> None:
    boss = history["boss"]
    client = client_as(boss)

    by_agent = usage_of(client, boss, group_by="agent").json()
    by_model = usage_of(client, boss, group_by="model").json()

    assert {g["key"]: g["total_tokens"] for g in by_agent["groups"]} == {"echo": 18, "helper": 2}
    assert {g["key"]: g["cost"] for g in by_model["groups"]} == {OFFLINE: 27.0, "elsewhere/other": 0.0}
    assert [(p["period"][:10], p["key"], p["jobs"]) for p in by_agent["series"]] == [
        ("2026-11-02", "echo", 2),
        ("2026-11-03", "echo", 1),
        ("2026-11-03", "helper", 1),
    ]


def test_hourly_and_monthly_series(client_as: ClientAs, history: dict[str, Any]) -> None:
    member = history["member"]
    client = client_as(member)

    hourly = usage_of(client, member, interval="hour").json()
    monthly = usage_of(client, member, interval="month", to="2026-12-31").json()

    assert [(p["period"], p["jobs"]) for p in hourly["series"]] == [
        ("2026-11-02T09:00:00Z", 2),
        ("2026-11-03T14:00:00Z", 1),
    ]
    assert [(p["period"], p["jobs"]) for p in monthly["series"]] == [
        ("2026-11-01T00:00:00Z", 3),
        ("2026-12-01T00:00:00Z", 1),
    ]


def test_the_period_bounds_the_report(client_as: ClientAs, history: dict[str, Any]) -> None:
    member = history["member"]

    body = usage_of(client_as(member), member, **{"from": "2026-11-03T00:00:00Z", "to": "2026-11-04"}).json()

    assert body["totals"]["jobs"] == 1


def test_a_member_cannot_see_the_tenants_usage(client_as: ClientAs, history: dict[str, Any]) -> None:
    member = history["member"]

    body = assert_problem(usage_of(client_as(member), member, scope="tenant"), 403)

    assert "aihub.admin.usage" in body["detail"]


def test_bad_report_parameters_are_named(client_as: ClientAs, membership: Membership) -> None:
    client = client_as(membership)

    assert_invalid(usage_of(client, membership, interval="week", group_by="colour"), "interval", "group_by")
    assert_invalid(usage_of(client, membership, **{"from": "2026-11-05", "to": "2026-11-04"}), "from")
    assert_invalid(usage_of(client, membership, to="yesterday"), "to")


def test_another_tenants_usage_is_not_found(client_as: ClientAs, history: dict[str, Any]) -> None:
    outsider = MembershipFactory.create(roles=["admin"])

    assert_problem(usage_of(client_as(outsider), history["member"]), 404)
    assert_problem(usage_of(client_as(history["member"]), history["member"], scope="everyone"), 400)


def test_an_empty_period_reports_zeros(client_as: ClientAs, membership: Membership) -> None:
    body = usage_of(client_as(membership), membership).json()

    assert body["totals"] == {"jobs": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "cost": 0.0}
    assert (body["groups"], body["series"], body["limits"]) == ([], [], [])


# --- Usage records -----------------------------------------------------------------------------------------


def records_of(client: Any, membership: Membership, **params: str) -> list[str]:
    """The jobs of the usage records the client sees in the membership's tenant, in the list's order."""
    response = client.get(f"/api/v1/{membership.tenant.slug}/usage/jobs/", params)
    assert response.status_code == 200, response.content
    return [item["job"] for item in response.json()["items"]]


def ids(*jobs: Job) -> list[str]:
    return [str(job.pk) for job in jobs]


def test_a_member_lists_the_usage_records_of_their_own_ended_jobs_latest_end_first(
    client_as: ClientAs, history: dict[str, Any]
) -> None:
    member, (first, second, third, _) = history["member"], history["jobs"]
    late = Job.objects.filter(created_by=member.user).latest("finished_at")
    services.job_submit(agent=first.agent, user=member.user, content="still queued")  # nothing accounted yet

    response = client_as(member).get(f"/api/v1/{member.tenant.slug}/usage/jobs/")

    items = response.json()["items"]
    # Not the queued job, not the admin's, not the other tenant's: the jobs ended one after another.
    assert [item["job"] for item in items] == ids(late, third, second, first)
    assert items[-1] == {
        "job": str(first.pk),
        "thread": str(first.thread_id),
        "agent": "echo",
        "agent_version": first.agent_version,
        "user": member.user.username,
        "status": "succeeded",
        "model": OFFLINE,
        "input_tokens": 2,
        "output_tokens": 2,
        "total_tokens": 4,
        "cost": 6.0,
        "currency": "USD",
        "created_at": "2026-11-02T09:30:00Z",
        "finished_at": items[-1]["finished_at"],
    }
    assert datetime.fromisoformat(items[-1]["finished_at"]) == first.finished_at
    assert_problem(client_as(member).get(f"/api/v1/{member.tenant.slug}/usage/jobs/", {"scope": "tenant"}), 403)


def test_an_admin_lists_the_tenants_usage_records_or_only_their_own(
    client_as: ClientAs, history: dict[str, Any]
) -> None:
    boss, (first, second, third, bosses) = history["boss"], history["jobs"]
    client = client_as(boss)

    assert records_of(client, boss)[1:] == ids(bosses, third, second, first)
    assert records_of(client, boss, scope="mine") == ids(bosses)


def test_usage_records_filter_by_agent_model_and_when_the_job_ended(
    client_as: ClientAs, history: dict[str, Any]
) -> None:
    boss, (first, second, third, bosses) = history["boss"], history["jobs"]
    client = client_as(boss)

    assert records_of(client, boss, agent="helper") == ids(third)
    assert records_of(client, boss, model=OFFLINE)[1:] == ids(bosses, second, first)
    # `since` and `until` are on finished_at (the report's from and to are on created_at).
    assert records_of(client, boss, since=second.finished_at.isoformat(), until=bosses.finished_at.isoformat()) == ids(
        third, second
    )
    assert records_of(client, boss, cursor="", until=second.finished_at.isoformat()) == ids(first)
    url = f"/api/v1/{boss.tenant.slug}/usage/jobs/"
    assert_invalid(client.get(url, {"since": "last week"}), "since")
    assert_invalid(client.get(url, {"since": "2026-11-05", "until": "2026-11-04"}), "until")
    assert_invalid(client.get(url, {"scope": "everyone"}), "scope")


def test_another_tenants_usage_records_are_not_found(client_as: ClientAs, history: dict[str, Any]) -> None:
    outsider = MembershipFactory.create(roles=["admin"])

    assert_problem(client_as(outsider).get(f"/api/v1/{history['tenant'].slug}/usage/jobs/"), 404)
    elsewhere = Job.objects.exclude(tenant=history["tenant"]).get()
    assert str(elsewhere.pk) not in records_of(client_as(history["boss"]), history["boss"])


def test_a_cursor_page_of_usage_records_costs_one_statement_however_far_the_walk(
    client_as: ClientAs, history: dict[str, Any]
) -> None:
    client = client_as(history["boss"])
    first = client.get(f"/api/v1/{history['tenant'].slug}/usage/jobs/", {"cursor": "", "limit": "2"}).json()

    with CaptureQueriesContext(connection) as captured:
        second = client.get(first["next"])
    assert len(second.json()["items"]) == 2
    # The page with its agents and users joined: no COUNT, no query per record.
    statements = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT")]
    assert len(statements) == 1, "\n".join(statements)


def test_passthrough_calls_are_listed_newest_first_a_members_own_or_the_tenants(
    client_as: ClientAs, history: dict[str, Any]
) -> None:
    member, boss, tenant = history["member"], history["boss"], history["tenant"]
    usage = {"input_tokens": 10, "output_tokens": 5}
    image = passthrough_record(tenant=tenant, user=member.user, kind="images", model=OFFLINE, usage=usage)
    speech = passthrough_record(tenant=tenant, user=boss.user, kind="speech", model=OFFLINE, usage=usage)
    outsider = Job.objects.exclude(tenant=tenant).select_related("created_by", "tenant").get()
    assert outsider.created_by is not None
    passthrough_record(tenant=outsider.tenant, user=outsider.created_by, kind="speech", model="x", usage={})
    url = f"/api/v1/{tenant.slug}/usage/calls/"

    mine = client_as(member).get(url).json()["items"]
    assert mine == [
        {
            "id": image.pk,
            "kind": "images",
            "model": OFFLINE,
            "user": member.user.username,
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "cost": 20.0,
            "currency": "USD",
            "created_at": mine[0]["created_at"],
        }
    ]
    tenants = client_as(boss).get(url, {"cursor": ""}).json()["items"]
    assert [item["id"] for item in tenants] == [speech.pk, image.pk]
    assert [item["id"] for item in client_as(boss).get(url, {"kind": "images"}).json()["items"]] == [image.pk]
    assert_problem(client_as(member).get(url, {"scope": "tenant"}), 403)
    assert_problem(client_as(MembershipFactory.create(roles=["admin"])).get(url), 404)
