"""How many statements the hot path costs: creating a thread, posting a message, and running its job.

The counts are pinned per database (SQLite needs no row locks, PostgreSQL does), so a change that adds a round
trip to the serving path fails here and has to say why. Transaction control (BEGIN, COMMIT, savepoints) is left
out of the count: only SQLite reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from agents.models import Agent
from aihub.access.models import Membership
from jobs import runner, services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from threads import services as thread_services
from threads.events import NewEvent

pytestmark = pytest.mark.django_db

FIFTY_WORDS = " ".join(f"word{n}" for n in range(50))
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL statements run inside the block (transaction control left out)."""
    seen: list[str] = []
    with CaptureQueriesContext(connection) as captured:
        yield seen
    seen.extend(q["sql"] for q in captured.captured_queries if not q["sql"].startswith(_TRANSACTION_CONTROL))


def expect(run: list[str], *, sqlite: int, postgresql: int) -> None:
    expected = {"sqlite": sqlite, "postgresql": postgresql}[connection.vendor]
    listing = "\n".join(f"  {sql[:600]}" for sql in run)
    assert len(run) == expected, f"{len(run)} statements, expected {expected}:\n{listing}"


@pytest.fixture
def client(membership: Membership, client_as: Callable[..., APIClient]) -> APIClient:
    return client_as(membership)


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


def warm(client: APIClient, membership: Membership, echo: Agent) -> None:
    """One request first: the token and the member's roles are then remembered, as on a running server."""
    assert client.get(f"/api/v1/{membership.tenant.slug}/threads/").status_code == 200


def test_creating_a_thread_costs_a_fixed_number_of_statements(
    client: APIClient, membership: Membership, echo: Agent
) -> None:
    warm(client, membership, echo)
    with statements() as run:
        response = client.post(f"/api/v1/{membership.tenant.slug}/threads/", {"title": "Hi"}, format="json")
    assert response.status_code == 201, response.content
    # The thread and its creator's membership.
    expect(run, sqlite=2, postgresql=2)


def test_posting_a_message_costs_a_fixed_number_of_statements(
    client: APIClient, membership: Membership, echo: Agent
) -> None:
    warm(client, membership, echo)
    thread = thread_services.thread_create(tenant=membership.tenant, created_by=membership.user)
    with statements() as run:
        response = client.post(
            f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/messages/",
            {"content": FIFTY_WORDS, "agent": "echo"},
            format="json",
        )
    assert response.status_code == 202, response.content
    # The thread (visibility), the agent, the agent's membership (read, add), the active jobs, the job, the usage
    # limits, the message, and message.created with job.queued in one write (2). PostgreSQL also takes the
    # thread's row lock.
    expect(run, sqlite=10, postgresql=11)


def test_running_an_instant_job_costs_a_fixed_number_of_statements(membership: Membership, echo: Agent) -> None:
    job, _ = services.job_submit(agent=echo, user=membership.user, content=FIFTY_WORDS)
    with statements() as run:
        claimed = services.job_claim(job_id=job.pk, worker="w")
        assert claimed is not None
        runner.execute(claimed)
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
    # Claim: the job, one conditional UPDATE, job.started (2). Run: the agent version, the history, then per
    # batch of events (llm.started; the first chunk, at once; the other 49 with llm.completed) the numbers (the
    # thread's lock), the claim's control state and one INSERT. Finish: the control state, the price, the job,
    # the usage reservations, the reply and its event with the final event (3), the turn's checkpoint (one
    # INSERT ... SELECT). PostgreSQL also takes the thread's row lock in claim and finish.
    expect(run, sqlite=23, postgresql=25)


def test_reading_a_running_jobs_state_costs_a_fixed_number_of_statements(
    client: APIClient, membership: Membership, echo: Agent
) -> None:
    warm(client, membership, echo)
    job, _ = services.job_submit(agent=echo, user=membership.user, content=FIFTY_WORDS)
    claimed = services.job_claim(job_id=job.pk, worker="w")
    assert claimed is not None
    words = FIFTY_WORDS.split(" ")
    chunks = [
        NewEvent("llm.chunk", {"delta": word if n == 0 else f" {word}"}, job_id=job.pk) for n, word in enumerate(words)
    ]
    services.job_events_append(job=claimed, events=[NewEvent("llm.started", {}, job_id=job.pk), *chunks])
    with statements() as run:
        response = client.get(f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/state")
    assert response.status_code == 200, response.content
    assert response.json()["partial_output"] == FIFTY_WORDS
    # The job (visibility), its last event, its latest step, its latest progress, and the chunks since its latest
    # llm.started (one statement, the start a subquery): however many chunks it streamed.
    expect(run, sqlite=5, postgresql=5)


def test_reading_a_jobs_report_costs_a_fixed_number_of_statements(
    client: APIClient, membership: Membership, echo: Agent
) -> None:
    warm(client, membership, echo)
    job, _ = services.job_submit(agent=echo, user=membership.user, content=FIFTY_WORDS)
    claimed = services.job_claim(job_id=job.pk, worker="w")
    assert claimed is not None
    runner.execute(claimed)
    with statements() as run:
        response = client.get(f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/report")
    assert response.status_code == 200, response.content
    # The job (visibility) and its artifacts.
    expect(run, sqlite=2, postgresql=2)
