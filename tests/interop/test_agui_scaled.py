"""The AG-UI door scaled out for real: daphne on PostgreSQL and Redis, the job run by a ``celery worker``.

A frontend tool's interrupt answered in a second run, and a reconnect with Last-Event-ID, on the services run's
database and channel layer (the embedded run covers the rest, in tests/interop/test_agui.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ag_ui.core import EventType, RunFinishedEvent, ToolMessage

from aihub.access.models import Membership
from tests.agents.factories import AgentFactory
from tests.factories import IssuedApiToken
from tests.interop.test_agui import assert_well_formed, post_run, run_input, text_of_run
from tests.servers import base_env, start_daphne, stop_server
from tests.workers import Worker, shared_database_url

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

TOOL = {
    "name": "pick_color",
    "description": "Let the user pick a color.",
    "parameters": {"type": "object", "properties": {"hint": {"type": "string"}}},
}


@pytest.fixture
def server(
    start_worker: Callable[..., Worker],
    tmp_path_factory: pytest.TempPathFactory,
    settings: Any,
    membership: Membership,
    token_for: Callable[..., IssuedApiToken],
) -> Iterator[dict[str, str]]:
    env = base_env(tmp_path_factory) | {
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": str(settings.REDIS_URL or settings.CELERY_BROKER_URL),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "CELERY_EMBEDDED_WORKER": "false",
    }
    process, base = start_daphne(env)
    start_worker()
    AgentFactory.create(tenant=membership.tenant, slug="helper", class_name="tools", tools=["calculator"])
    AgentFactory.create(tenant=membership.tenant, slug="echo")
    yield {"base": base, "token": token_for(membership).raw, "tenant": membership.tenant.slug}
    stop_server(process)


def test_a_frontend_tool_round_trip_and_a_reconnect_work_scaled_out(server: dict[str, str]) -> None:
    first = run_input('use pick_color {"hint": "warm"}', thread=str(uuid.uuid4()), tools=[TOOL])
    events, _ = post_run(server, "helper", first)

    assert_well_formed(events)
    finished = events[-1]
    assert isinstance(finished, RunFinishedEvent) and finished.outcome is not None
    assert finished.outcome.type == "interrupt"
    call_id = finished.outcome.interrupts[0].tool_call_id
    answer = ToolMessage(id="t1", tool_call_id=str(call_id), content="orange")
    second = run_input("", thread=first["threadId"], messages=[*first["messages"], answer], tools=[TOOL])
    events, frames = post_run(server, "helper", second)

    assert_well_formed(events)
    assert text_of_run(events) == "The result is orange."
    cut = next(frame["id"] for frame in frames if "id" in frame)
    delivered = next(i for i, frame in enumerate(frames) if frame.get("id") == cut) + 1
    resumed, _ = post_run(server, "helper", second, headers={"Last-Event-ID": cut})
    assert [e.model_dump() for e in events[:delivered] + resumed] == [e.model_dump() for e in events]
    again, _ = post_run(server, "helper", second)  # the answered run sent again: the same run, not a new answer
    assert [e.type for e in again][-1] == EventType.RUN_FINISHED
    assert text_of_run(again) == "The result is orange."
