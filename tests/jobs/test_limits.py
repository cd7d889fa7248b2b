"""Usage limits per role: patterns, windows, admission with reservations, settlement, the 429 and the warning
header, the admin's flag for patterns that match nothing, and parallel submissions racing for the last tokens."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.urls import reverse

from agents import catalogue
from agents.models import Agent, CatalogueModel
from aihub.access.models import Membership, Role
from jobs import services, usage
from jobs.models import Job, JobStatus, UsageCounter, UsageLimit, UsageReservation
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory, UserFactory
from tests.helpers import ClientAs, assert_problem
from tests.jobs.helpers import drain_sent_jobs, run_now
from tests.threads.test_consumers import APPLICATION, ORIGIN
from threads.models import Message, Thread

pytestmark = pytest.mark.django_db

TEXT = "hello there world"
# What a job with TEXT reserves on a tokens limit: its input estimated at 4 characters a token, plus the
# output tokens every job reserves (JOBS_USAGE_RESERVE_TOKENS).
RESERVED = len(TEXT) // 4 + 1 + 1000


def role_of(membership: Membership, name: str = "member") -> Role:
    return Role.objects.get(tenant=membership.tenant, name=name)


def limit_on(membership: Membership, amount: str | int, *, role: str = "member", **fields: Any) -> UsageLimit:
    return usage.usage_limit_create(
        role=role_of(membership, role), name=fields.pop("name", "daily-tokens"), amount=Decimal(amount), **fields
    )


def submit(agent: Agent, user: User, text: str = TEXT) -> Job:
    return services.job_submit(agent=agent, user=user, content=text)[0]


def counter_of(limit: UsageLimit) -> UsageCounter:
    return UsageCounter.objects.get(limit=limit)


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


# --- Patterns and windows --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        (">", "support-bot", True),
        (">", "openai/gpt-4.1", True),
        ("support-bot", "support-bot", True),
        ("support-bot", "support", False),
        ("*", "support-bot", True),
        ("*", "openai/gpt-4.1", False),
        ("openai/*", "openai/gpt-4.1", True),
        ("openai/*", "vllm/gpt-4.1", False),
        ("openai/>", "openai/org/model", True),
        ("*/gpt-4.1", "azure/gpt-4.1", True),
        ("openai/gpt-4.1", "openai/gpt-4.1-mini", False),
    ],
)
def test_patterns_match_like_permission_rules_over_slash_segments(pattern: str, name: str, matches: bool) -> None:
    assert usage.pattern_matches(pattern, name) is matches


@pytest.mark.parametrize("pattern", ["", "a/>/b", "a//b", " a"])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        usage.validate_pattern(pattern)


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("1h", datetime(2026, 12, 31, 23, 0, tzinfo=UTC), datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("1d", datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("7d", datetime(2026, 12, 28, tzinfo=UTC), datetime(2027, 1, 4, tzinfo=UTC)),  # Monday to Monday
        ("1mo", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_periods_are_calendar_windows_in_utc(period: str, start: datetime, end: datetime) -> None:
    assert usage.window(period, datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC)) == (start, end)


def test_a_limit_needs_a_positive_amount_and_a_valid_pattern(membership: Membership) -> None:
    with pytest.raises(ValidationError) as refused:
        limit_on(membership, 0, pattern="a/>/b")

    assert set(refused.value.message_dict) == {"amount", "pattern"}


# --- Admission and settlement ----------------------------------------------------------------------------------


def test_an_admitted_job_reserves_its_estimate_and_settles_what_it_used(membership: Membership, echo: Agent) -> None:
    limit = limit_on(membership, 10_000)

    job = submit(echo, membership.user)
    assert (counter_of(limit).reserved, counter_of(limit).used) == (RESERVED, 0)

    run_now(job)

    assert (counter_of(limit).reserved, counter_of(limit).used) == (0, 6)  # 3 words in, 3 out
    assert not UsageReservation.objects.exists()


def test_a_job_over_the_limit_is_refused_and_writes_nothing(membership: Membership, echo: Agent) -> None:
    limit_on(membership, 5)
    run_now(submit(echo, membership.user))  # admitted with 5 left; used 6
    before = (Job.objects.count(), Thread.objects.count(), Message.objects.count())

    with pytest.raises(usage.UsageLimitExceeded) as refused:
        submit(echo, membership.user)

    assert (Job.objects.count(), Thread.objects.count(), Message.objects.count()) == before
    assert refused.value.problem_extra["limit"]["used"] == 6
    assert "daily-tokens" in str(refused.value.detail)


def test_running_jobs_hold_their_reservations_so_the_next_one_sees_them(membership: Membership, echo: Agent) -> None:
    limit = limit_on(membership, RESERVED + 100)

    submit(echo, membership.user)
    submit(echo, membership.user)  # only 100 were left: it reserves those
    assert counter_of(limit).reserved == RESERVED + 100

    with pytest.raises(usage.UsageLimitExceeded):
        submit(echo, membership.user)


def test_a_cancelled_job_gives_its_reservation_back(membership: Membership, echo: Agent) -> None:
    limit = limit_on(membership, RESERVED)
    first = submit(echo, membership.user)
    with pytest.raises(usage.UsageLimitExceeded):
        submit(echo, membership.user)

    services.job_cancel(job=first)

    assert (counter_of(limit).reserved, counter_of(limit).used) == (0, 0)
    assert submit(echo, membership.user).status == JobStatus.QUEUED


def test_only_the_members_roles_and_enabled_matching_limits_apply(membership: Membership, echo: Agent) -> None:
    limit_on(membership, 1, role="admin", name="admins-only")
    limit_on(membership, 1, name="off", enabled=False)
    limit_on(membership, 1, name="other-agent", pattern="helper")
    limit_on(membership, 1, name="other-models", target="models", pattern="elsewhere/>")

    assert submit(echo, membership.user).status == JobStatus.QUEUED
    assert not UsageCounter.objects.exists()


def test_a_model_limit_applies_to_agents_on_that_model(membership: Membership, echo: Agent) -> None:
    limit_on(membership, 1, name="offline-models", target="models", pattern="offline/*")
    submit(echo, membership.user)

    with pytest.raises(usage.UsageLimitExceeded):
        submit(echo, membership.user)


def test_a_cost_limit_counts_the_catalogues_prices(membership: Membership, echo: Agent) -> None:
    catalogue.catalogue_ensure_builtins()
    catalogue.catalogue_model_update(
        model=CatalogueModel.objects.get(model_id="offline/aihub-offline-1"),
        input_price_per_million=Decimal(1_000_000),
        output_price_per_million=Decimal(1_000_000),
    )  # one per token
    limit = limit_on(membership, 7, name="budget", unit="cost")

    run_now(submit(echo, membership.user))

    assert counter_of(limit).used == 6
    run_now(submit(echo, membership.user))  # 1 was left: admitted, and overshoots
    with pytest.raises(usage.UsageLimitExceeded) as refused:
        submit(echo, membership.user)
    assert refused.value.problem_extra["limit"]["unit"] == "cost"
    assert counter_of(limit).used == 12


def test_a_limit_added_mid_window_counts_the_windows_earlier_jobs(membership: Membership, echo: Agent) -> None:
    run_now(submit(echo, membership.user))
    run_now(submit(echo, membership.user))

    limit_on(membership, 12)

    with pytest.raises(usage.UsageLimitExceeded):
        submit(echo, membership.user)


# --- The API ---------------------------------------------------------------------------------------------------


def post_message(client: Any, membership: Membership) -> Any:
    return client.post(f"/api/v1/{membership.tenant.slug}/agents/echo/messages", {"content": TEXT}, format="json")


def test_a_refused_job_is_a_429_problem_naming_the_limit_and_its_reset(
    client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    limit_on(membership, 5)
    run_now(submit(echo, membership.user))

    response = post_message(client_as(membership), membership)

    body = assert_problem(response, 429)
    assert body["type"] == "urn:aihub:problem:usage-limit-exceeded"
    assert body["limit"]["name"] == "daily-tokens"
    assert body["limit"]["role"] == "member"
    assert (body["limit"]["amount"], body["limit"]["used"], body["limit"]["period"]) == (5, 6, "1d")
    assert body["limit"]["resets_at"] in body["detail"]
    assert 0 < int(response["Retry-After"]) <= 24 * 3600


def test_a_response_near_a_limit_carries_a_warning(client_as: ClientAs, membership: Membership, echo: Agent) -> None:
    limit_on(membership, int(RESERVED / 0.85))
    client = client_as(membership)

    near = post_message(client, membership)

    assert near.status_code == 202
    warning = near["X-Usage-Warning"]
    assert warning.startswith("daily-tokens; role=member; used=0.85; resets=")


def test_a_waited_for_answer_near_a_limit_carries_the_warning_too(
    client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    limit_on(membership, int(RESERVED / 0.9))

    response = client_as(membership).post(
        f"/api/v1/{membership.tenant.slug}/agents/echo/messages?wait=true&timeout=0", {"content": TEXT}, format="json"
    )

    assert response["X-Usage-Warning"].startswith("daily-tokens; role=member; used=0.90;")


def test_a_response_far_from_any_limit_has_no_warning(client_as: ClientAs, membership: Membership, echo: Agent) -> None:
    limit_on(membership, 1_000_000)

    response = post_message(client_as(membership), membership)

    assert response.status_code == 202
    assert "X-Usage-Warning" not in response


def test_the_usage_report_shows_the_callers_limits(client_as: ClientAs, membership: Membership, echo: Agent) -> None:
    limit_on(membership, 10_000)
    run_now(submit(echo, membership.user))
    submit(echo, membership.user)

    body = client_as(membership).get(f"/api/v1/{membership.tenant.slug}/usage").json()

    assert [(lim["name"], lim["used"], lim["reserved"]) for lim in body["limits"]] == [("daily-tokens", 6, RESERVED)]


def test_a_limit_in_another_tenant_does_not_apply(client_as: ClientAs, membership: Membership, echo: Agent) -> None:
    other = MembershipFactory.create(user=membership.user, roles=["member"])
    limit_on(other, 1)

    assert post_message(client_as(membership), membership).status_code == 202


@pytest.mark.django_db(transaction=True)
def test_a_websocket_message_over_the_limit_gets_the_429_problem_as_an_error_frame(
    membership: Membership, echo: Agent, token_for: Any
) -> None:
    limit_on(membership, 5)
    run_now(submit(echo, membership.user))
    thread = Thread.objects.get()
    path = f"/ws/v1/{membership.tenant.slug}/threads/{thread.pk}/?token={token_for(membership).raw}"

    async def scenario() -> dict[str, Any]:
        ws = WebsocketCommunicator(APPLICATION, path, headers=[ORIGIN])
        connected, _ = await ws.connect()
        assert connected
        await ws.send_json_to({"type": "message.create", "content": TEXT, "busy": "enqueue"})
        while (frame := await ws.receive_json_from(timeout=5))["type"] != "error":
            pass
        await ws.disconnect()
        return dict(frame)

    frame = asyncio.run(asyncio.wait_for(scenario(), timeout=20))

    assert frame["error"]["status"] == 429
    assert frame["error"]["type"] == "urn:aihub:problem:usage-limit-exceeded"
    assert frame["error"]["limit"]["name"] == "daily-tokens"
    assert Job.objects.filter(thread=thread).count() == 1


# --- Admin -----------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_site() -> Client:
    client = Client()
    client.force_login(UserFactory.create(username="operator", is_staff=True, is_superuser=True))
    return client


def test_the_admin_flags_a_limit_whose_pattern_matches_nothing(
    admin_site: Client, membership: Membership, echo: Agent
) -> None:
    limit_on(membership, 100, name="typo", pattern="ecko")
    limit_on(membership, 100, name="fine", pattern="echo")

    page = admin_site.get(reverse("admin:jobs_usagelimit_changelist")).content.decode()

    assert page.count("matches nothing") == 1


def test_operators_add_limits_in_the_admin_and_hear_about_a_pattern_that_matches_nothing(
    admin_site: Client, membership: Membership, echo: Agent
) -> None:
    form = {
        "role": str(role_of(membership).pk),
        "name": "hourly",
        "target": "models",
        "pattern": "nowhere/*",
        "unit": "tokens",
        "amount": "5000",
        "period": "1h",
        "enabled": "on",
    }

    response = admin_site.post(reverse("admin:jobs_usagelimit_add"), form, follow=True)
    refused = admin_site.post(reverse("admin:jobs_usagelimit_add"), {**form, "name": "bad", "pattern": "a/>/b"})

    assert response.status_code == 200
    assert UsageLimit.objects.get(name="hourly").period == "1h"
    assert "matches no models" in " ".join(str(m) for m in response.context["messages"])
    assert refused.status_code == 200 and "may only be the last segment" in refused.content.decode()
    assert not UsageLimit.objects.filter(name="bad").exists()


# --- Concurrency -----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("left", [RESERVED * 10, 10])
def test_parallel_submissions_cannot_both_take_the_last_of_a_limit(left: int) -> None:
    if connection.vendor == "sqlite":
        pytest.skip("needs PostgreSQL: the in-memory SQLite test database refuses concurrent connections")
    membership = MembershipFactory.create(roles=["member"])
    echo = AgentFactory.create(tenant=membership.tenant, slug="echo")
    # Used up but for ``left`` tokens: the first admitted job reserves what is left, at most RESERVED.
    limit = limit_on(membership, 1_000_000)
    UsageCounter.objects.create(
        limit=limit, user=membership.user, window_start=usage.window("1d", datetime.now(UTC))[0], used=1_000_000 - left
    )
    racers = 6
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def send() -> None:
        try:
            start.wait(timeout=10)
            # Each on a new thread of its own: no thread lock serialises them, only the counter's.
            services.job_submit(agent=echo, user=membership.user, content=TEXT)
            outcomes.append("admitted")
        except usage.UsageLimitExceeded:
            outcomes.append("refused")
        finally:
            connection.close()  # each thread had its own connection

    senders = [threading.Thread(target=send) for _ in range(racers)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=60)

    admitted = -(-left // RESERVED)  # as many as the tokens left cover, the last taking the rest
    assert sorted(outcomes) == ["admitted"] * min(admitted, racers) + ["refused"] * (racers - min(admitted, racers))
    counter = counter_of(limit)
    assert counter.reserved == min(left, RESERVED * racers)
    assert counter.reserved == sum(r.amount for r in UsageReservation.objects.all())
    assert Job.objects.count() == min(admitted, racers)
    drain_sent_jobs()
