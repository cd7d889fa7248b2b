"""Schedules: cron-scheduled agent runs whose firings are ordinary jobs, each tick fired once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from aihub.access.models import Membership
from jobs import schedules
from jobs.models import Job, JobStatus, Schedule, ThreadPolicy
from jobs.tasks import fire_schedules
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory, UserFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import drain_sent_jobs
from tests.threads.factories import ThreadFactory
from threads.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def echo(admin_membership: Membership) -> Agent:
    return AgentFactory.create(tenant=admin_membership.tenant, slug="echo")


@pytest.fixture
def client(client_as: ClientAs, admin_membership: Membership) -> Any:
    return client_as(admin_membership)


def url(membership: Membership, *rest: str) -> str:
    tail = "/".join(rest)
    if not rest:
        return f"/api/v1/{membership.tenant.slug}/schedules/"
    return f"/api/v1/{membership.tenant.slug}/schedules/{tail}" + ("/" if len(rest) == 1 else "")


def make(agent: Agent, user: User, **kwargs: Any) -> Schedule:
    fields: dict[str, Any] = {"name": "hourly", "cron": "0 * * * *", "content": "report please", **kwargs}
    return schedules.schedule_create(agent=agent, created_by=user, **fields)


def make_due(schedule: Schedule) -> datetime:
    """Put the schedule's tick a minute in the past; returns that tick."""
    tick = (timezone.now() - timedelta(minutes=1)).replace(second=0, microsecond=0)
    Schedule.objects.filter(pk=schedule.pk).update(next_run_at=tick)
    return tick


# --- Cron, time zones, next tick ---------------------------------------------------------------------------------


def test_the_next_tick_is_computed_in_the_schedules_time_zone() -> None:
    after = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)  # a Monday, 13:00 in Berlin
    tick = schedules.next_tick(cron="0 7 * * 1-5", tz_name="Europe/Berlin", after=after)
    assert tick == datetime(2025, 1, 7, 6, 0, tzinfo=UTC)  # Tuesday 07:00 Berlin (UTC+1)


@pytest.mark.parametrize("cron", ["", "not a cron", "61 * * * *", "* * * *", "* * * * * *", "0 25 * * *"])
def test_a_bad_cron_expression_is_refused_by_the_service(cron: str, echo: Agent, admin_membership: Membership) -> None:
    with pytest.raises(ValidationError) as refused:
        make(echo, admin_membership.user, cron=cron)
    assert "cron" in refused.value.message_dict
    assert not Schedule.objects.exists()


def test_a_new_schedule_is_due_at_its_first_tick(echo: Agent, admin_membership: Membership) -> None:
    schedule = make(echo, admin_membership.user, cron="*/5 * * * *")
    assert schedule.next_run_at is not None
    assert schedule.next_run_at > timezone.now()
    assert schedule.next_run_at.minute % 5 == 0 and schedule.next_run_at.second == 0


# --- Firing -------------------------------------------------------------------------------------------------------


def test_a_due_schedule_fires_one_ordinary_job_and_moves_to_its_next_tick(
    echo: Agent, admin_membership: Membership, client: Any
) -> None:
    schedule = make(echo, admin_membership.user)
    make_due(schedule)

    assert fire_schedules() == 1

    job = Job.objects.get()
    assert (job.agent, job.created_by, job.status, job.schedule_id) == (
        echo,
        admin_membership.user,
        JobStatus.QUEUED,
        schedule.pk,
    )
    assert Message.objects.get(thread=job.thread, role="user").content == [{"type": "text", "text": "report please"}]
    schedule.refresh_from_db()
    assert schedule.last_job == job and schedule.last_error is None and schedule.last_run_at is not None
    assert schedule.next_run_at is not None and schedule.next_run_at > timezone.now()
    # An ordinary job: listed on /jobs like any other, and on the schedule's own list.
    listed = client.get(f"/api/v1/{admin_membership.tenant.slug}/jobs/").json()["items"]
    assert [item["id"] for item in listed] == [str(job.pk)]
    of_schedule = client.get(url(admin_membership, str(schedule.pk), "jobs")).json()["items"]
    assert [item["id"] for item in of_schedule] == [str(job.pk)]
    drain_sent_jobs()


def test_firing_again_before_the_next_tick_fires_nothing(echo: Agent, admin_membership: Membership) -> None:
    make_due(make(echo, admin_membership.user))
    assert schedules.schedules_fire_due() == 1
    assert schedules.schedules_fire_due() == 0
    assert Job.objects.count() == 1
    drain_sent_jobs()


def test_schedules_not_due_or_disabled_do_not_fire(echo: Agent, admin_membership: Membership) -> None:
    make(echo, admin_membership.user, name="later")
    make_due(make(echo, admin_membership.user, name="off", enabled=False))
    assert schedules.schedules_fire_due() == 0
    assert not Job.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_tick_fires_exactly_once_when_two_beats_fire_at_the_same_time() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("needs PostgreSQL: the in-memory SQLite test database refuses concurrent connections")
    owner = MembershipFactory.create(roles=["admin"])
    echo = AgentFactory.create(tenant=owner.tenant, slug="echo")
    due = [make(echo, owner.user, name=f"schedule {n}") for n in range(3)]
    for schedule in due:
        make_due(schedule)
    start = threading.Barrier(2)
    claimed: list[int] = []

    def beat() -> None:
        try:
            start.wait(timeout=5)
            claimed.append(schedules.schedules_fire_due())
        finally:
            connection.close()  # each thread had its own connection

    beats = [threading.Thread(target=beat) for _ in range(2)]
    for thread in beats:
        thread.start()
    for thread in beats:
        thread.join(timeout=30)

    assert sum(claimed) == 3
    for schedule in due:
        assert Job.objects.filter(schedule=schedule).count() == 1
    drain_sent_jobs()


def test_a_fixed_thread_schedule_posts_every_firing_to_the_same_thread(
    echo: Agent, admin_membership: Membership
) -> None:
    thread = ThreadFactory.create(tenant=admin_membership.tenant, created_by=admin_membership.user)
    schedule = make(echo, admin_membership.user, thread_policy=ThreadPolicy.FIXED, thread=thread)
    first = schedules.schedule_fire(schedule=schedule)
    second = schedules.schedule_fire(schedule=schedule)  # busy "enqueue": waits behind the first
    assert first is not None and second is not None and first != second
    assert first.thread == second.thread == thread
    drain_sent_jobs()


def test_a_firing_by_a_user_who_lost_access_fails_visibly(echo: Agent, admin_membership: Membership) -> None:
    schedule = make(echo, admin_membership.user)
    admin_membership.delete()
    make_due(schedule)

    assert schedules.schedules_fire_due() == 1

    assert not Job.objects.exists()
    schedule.refresh_from_db()
    assert schedule.last_job is None and schedule.last_run_at is not None
    assert schedule.last_error is not None and schedule.last_error["status"] == 404, schedule.last_error
    assert schedule.next_run_at is not None and schedule.next_run_at > timezone.now()  # it will try again


def test_a_firing_of_a_disabled_agent_is_recorded_as_failed(echo: Agent, admin_membership: Membership) -> None:
    schedule = make(echo, admin_membership.user)
    Agent.objects.filter(pk=echo.pk).update(enabled=False)
    assert schedules.schedule_fire(schedule=schedule) is None
    schedule.refresh_from_db()
    assert schedule.last_error is not None and schedule.last_error["status"] == 409
    assert "disabled" in schedule.last_error["detail"]


# --- API ------------------------------------------------------------------------------------------------------------


def test_an_admin_creates_reads_changes_and_deletes_a_schedule(
    client: Any, admin_membership: Membership, echo: Agent
) -> None:
    created = client.post(
        url(admin_membership),
        {"name": "morning", "agent": "echo", "cron": "0 7 * * 1-5", "timezone": "Europe/Berlin", "input": "hi"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["agent"], body["cron"], body["timezone"], body["created_by"], body["enabled"]) == (
        "echo",
        "0 7 * * 1-5",
        "Europe/Berlin",
        admin_membership.user.username,
        True,
    )
    assert body["next_run_at"] is not None
    detail = url(admin_membership, body["id"])
    assert client.get(detail).json()["name"] == "morning"
    paused = client.patch(detail, {"enabled": False}, format="json")
    assert paused.status_code == 200, paused.content
    assert (paused.json()["enabled"], paused.json()["next_run_at"]) == (False, None)
    assert (paused.json()["cron"], paused.json()["timezone"]) == ("0 7 * * 1-5", "Europe/Berlin")  # kept
    assert client.get(url(admin_membership)).json()["total"] == 1
    assert client.delete(detail).status_code == 204
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [({"cron": "every day at noon"}, "cron"), ({"timezone": "Mars/Olympus"}, "timezone"), ({"input": 42}, "input")],
)
def test_bad_schedules_are_refused_with_a_problem(
    client: Any, admin_membership: Membership, echo: Agent, change: dict[str, Any], field: str
) -> None:
    response = client.post(
        url(admin_membership),
        {"name": "n", "agent": "echo", "cron": "0 * * * *", "input": "hi", **change},
        format="json",
    )
    assert_invalid(response, field)
    assert not Schedule.objects.exists()


def test_a_schedule_of_a_disabled_agent_is_refused(client: Any, admin_membership: Membership) -> None:
    AgentFactory.create(tenant=admin_membership.tenant, slug="off", enabled=False)
    response = client.post(
        url(admin_membership), {"name": "n", "agent": "off", "cron": "0 * * * *", "input": "hi"}, format="json"
    )
    assert_invalid(response, "agent")


def test_run_now_submits_a_job_without_moving_the_next_tick(
    client: Any, admin_membership: Membership, echo: Agent
) -> None:
    schedule = make(echo, admin_membership.user)
    response = client.post(url(admin_membership, str(schedule.pk), "run"))
    assert response.status_code == 200, response.content
    job = Job.objects.get(schedule=schedule)
    assert response.json()["last_job"] == str(job.pk)
    assert Schedule.objects.get(pk=schedule.pk).next_run_at == schedule.next_run_at
    drain_sent_jobs()


def test_members_see_schedules_but_only_admins_change_them(
    client_as: ClientAs, admin_membership: Membership, echo: Agent
) -> None:
    schedule = make(echo, admin_membership.user)
    member = MembershipFactory.create(tenant=admin_membership.tenant, roles=["member"])
    as_member = client_as(member)
    assert as_member.get(url(admin_membership)).json()["total"] == 1
    assert_problem(as_member.patch(url(admin_membership, str(schedule.pk)), {"enabled": False}, format="json"), 403)
    assert_problem(as_member.post(url(admin_membership, str(schedule.pk), "run")), 403)
    agent_user = MembershipFactory.create(tenant=admin_membership.tenant, roles=["agent-user"])
    assert_problem(client_as(agent_user).get(url(admin_membership)), 404)


def test_schedules_of_another_tenant_are_invisible(
    client_as: ClientAs, admin_membership: Membership, echo: Agent
) -> None:
    schedule = make(echo, admin_membership.user)
    stranger = MembershipFactory.create(roles=["admin"])
    as_stranger = client_as(stranger)
    assert as_stranger.get(url(stranger)).json()["total"] == 0
    for path in (url(stranger, str(schedule.pk)), url(stranger, str(schedule.pk), "jobs")):
        assert_problem(as_stranger.get(path), 404)
    assert_problem(as_stranger.post(url(stranger, str(schedule.pk), "run")), 404)
    assert_problem(as_stranger.delete(url(stranger, str(schedule.pk))), 404)
    # Nor can a schedule be made for another tenant's agent.
    response = as_stranger.post(
        url(stranger), {"name": "n", "agent": "echo", "cron": "0 * * * *", "input": "hi"}, format="json"
    )
    assert_problem(response, 404)
    assert Schedule.objects.count() == 1
    assert not Job.objects.exists()


# --- Admin --------------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_site(db: None) -> Client:
    client = Client()
    client.force_login(UserFactory.create(username="operator", is_staff=True, is_superuser=True))
    return client


def test_the_admin_creates_a_schedule_through_the_service_and_refuses_a_bad_cron(
    admin_site: Client, echo: Agent, admin_membership: Membership
) -> None:
    form = {
        "name": "nightly",
        "agent": str(echo.pk),
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "input": '"night report"',
        "thread_policy": "new",
        "thread": "",
        "busy": "enqueue",
        "enabled": "on",
        "created_by": str(admin_membership.user.pk),
    }
    refused = admin_site.post(reverse("admin:jobs_schedule_add"), {**form, "cron": "at night"})
    assert refused.status_code == 200
    assert "cron" in refused.context["adminform"].form.errors
    assert not Schedule.objects.exists()

    created = admin_site.post(reverse("admin:jobs_schedule_add"), form)
    assert created.status_code == 302, created.content
    schedule = Schedule.objects.get()
    assert (schedule.input, schedule.timezone, schedule.tenant) == ("night report", "Europe/Paris", echo.tenant)
    assert schedule.next_run_at is not None


def test_the_admins_run_now_action_fires_and_reports_failures(
    admin_site: Client, echo: Agent, admin_membership: Membership
) -> None:
    works = make(echo, admin_membership.user, name="works")
    stranger = MembershipFactory.create(roles=["admin"]).user
    fails = make(echo, admin_membership.user, name="fails")
    Schedule.objects.filter(pk=fails.pk).update(created_by=stranger)  # not a member of the tenant

    response = admin_site.post(
        reverse("admin:jobs_schedule_changelist"),
        {"action": "run_now", "_selected_action": [str(works.pk), str(fails.pk)]},
        follow=True,
    )

    reported = " ".join(str(message) for message in response.context["messages"])
    assert "Submitted 1 job(s)." in reported
    assert "Not fired: fails:" in reported
    assert Job.objects.get().schedule_id == works.pk
    drain_sent_jobs()
