"""Jobs as AI-Q exposes them: ``expiry_seconds`` on submission, ``GET jobs/{id}/state`` (where a job stands
now) and ``GET jobs/{id}/report`` (an ended job's final report)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from agents import registry
from agents.models import Agent
from agents.registry import AgentClass, AgentConfig
from agents.runtime import AgentOutput, Emit, Reply
from agents.runtime import Artifact as ArtifactOutput
from aihub.access.models import Membership
from jobs import services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import run_now
from threads.events import NewEvent
from threads.models import Event, Message

pytestmark = pytest.mark.django_db

CITATION = {
    "type": "citation",
    "document_id": "9a8b7c6d-6666-4e5f-8a9b-0c1d2e3f4a5b",
    "chunk_id": "1b2c3d4e-7777-4f5a-9b0c-1d2e3f4a5b6c",
    "text": "Refunds are accepted within 30 days.",
    "score": 0.82,
    "title": "Refund policy",
}


def job_url(membership: Membership, job: Job | str, *rest: str) -> str:
    return "/".join([f"/api/v1/{membership.tenant.slug}/jobs/{job.pk if isinstance(job, Job) else job}", *rest])


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


@pytest.fixture
def client(client_as: ClientAs, membership: Membership) -> Any:
    return client_as(membership)


class ResearchAgent(AgentClass):
    """Searches (with progress), publishes its sources, then answers with a citation."""

    name = "test-researcher"
    description = "Reports progress, publishes sources and cites them (tests only)."
    Config = AgentConfig

    def execute(self) -> Iterator[AgentOutput]:
        yield Emit("tool.started", {"name": "search", "progress": {"done": 1, "total": 2}})
        yield Emit("tool.completed", {"name": "search", "progress": {"done": 2, "total": 2}})
        yield ArtifactOutput("sources", "citation", {"citations": [{"title": "Refund policy"}]})
        yield Emit("llm.started", {"model": "offline"})
        yield Emit("llm.chunk", {"delta": "Within 30 days [1]."})
        yield Reply([{"type": "text", "text": "Within 30 days [1]."}, CITATION])


@pytest.fixture
def researcher(membership: Membership, monkeypatch: pytest.MonkeyPatch) -> Agent:
    # Registered for this test only: the class list other tests see stays the built-ins.
    monkeypatch.setitem(registry._BUILT_INS, ResearchAgent.name, ResearchAgent)
    return AgentFactory.create(tenant=membership.tenant, slug="researcher", class_name=ResearchAgent.name)


def submitted(agent: Agent, membership: Membership, content: str = "hello world") -> Job:
    job, _ = services.job_submit(agent=agent, user=membership.user, content=content)
    return job


def running(job: Job, *events: tuple[str, dict[str, Any]]) -> Job:
    """Claim the job and append these events while it runs, as a worker mid-run does."""
    claimed = services.job_claim(job_id=job.pk, worker="w1")
    assert claimed is not None
    control = services.job_events_append(
        job=claimed,
        events=[NewEvent(type, data, job_id=claimed.pk, agent_id=claimed.agent_id) for type, data in events],
    )
    assert control is not None, "the claim was lost"
    return claimed


def last_sequence(job: Job) -> int:
    return Event.objects.filter(job_id=job.pk).order_by("-sequence").values_list("sequence", flat=True)[0]


# --- expiry_seconds -----------------------------------------------------------------------------------------


def test_expiry_seconds_sets_the_deadline_the_job_shows(client: Any, membership: Membership, echo: Agent) -> None:
    response = client.post(
        f"/api/v1/{membership.tenant.slug}/jobs/",
        {"agent": "echo", "input": "hi", "expiry_seconds": 3600},
        format="json",
    )

    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.expires_at is not None
    assert timedelta(seconds=3590) < job.expires_at - timezone.now() <= timedelta(seconds=3600)
    shown = client.get(f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/").json()["expires_at"]
    assert shown == job.expires_at.isoformat().replace("+00:00", "Z")


def test_expiry_seconds_is_accepted_on_a_thread_message_too(client: Any, membership: Membership, echo: Agent) -> None:
    thread = client.post(f"/api/v1/{membership.tenant.slug}/threads/", {"title": "t"}, format="json").json()

    response = client.post(
        f"/api/v1/{membership.tenant.slug}/threads/{thread['id']}/messages/",
        {"content": "hi", "agent": "echo", "expiry_seconds": 600},
        format="json",
    )

    assert response.status_code == 202, response.content
    job = Job.objects.get(thread_id=thread["id"])
    assert job.expires_at is not None
    assert timedelta(seconds=590) < job.expires_at - timezone.now() <= timedelta(seconds=600)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"expiry_seconds": 599}, ["expiry_seconds"]),
        ({"expiry_seconds": 604_801}, ["expiry_seconds"]),
        ({"expiry_seconds": 600, "expires_in_seconds": 600}, ["expiry_seconds"]),
        ({"expiry_seconds": 600, "expires_at": "2999-01-01T00:00:00Z"}, ["expires_at"]),
    ],
)
def test_expiry_seconds_out_of_bounds_or_beside_another_expiry_is_refused(
    client: Any, membership: Membership, echo: Agent, body: dict[str, Any], fields: list[str]
) -> None:
    response = client.post(
        f"/api/v1/{membership.tenant.slug}/jobs/", {"agent": "echo", "input": "hi", **body}, format="json"
    )

    assert_invalid(response, *fields)
    assert not Job.objects.exists()


# --- The state ----------------------------------------------------------------------------------------------


def test_a_queued_job_has_no_step_output_or_progress_yet(client: Any, membership: Membership, echo: Agent) -> None:
    job = submitted(echo, membership)

    response = client.get(job_url(membership, job, "state"))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "id": str(job.pk),
        "thread": str(job.thread_id),
        "status": "queued",
        "step": "job.queued",
        "progress": None,
        "last_event_id": last_sequence(job),
        "partial_output": "",
        "pending_action": None,
    }


def test_a_running_job_shows_the_answer_being_written_and_its_latest_step(
    client: Any, membership: Membership, echo: Agent
) -> None:
    job = running(
        submitted(echo, membership),
        ("llm.started", {"model": "m"}),
        ("llm.chunk", {"delta": "A draft"}),
        ("llm.completed", {"model": "m"}),
        ("tool.started", {"name": "search"}),
        ("tool.completed", {"name": "search"}),
        ("llm.started", {"model": "m"}),
        ("llm.chunk", {"delta": "Refunds are"}),
        ("llm.chunk", {"delta": " accepted"}),
    )

    body = client.get(job_url(membership, job, "state")).json()

    assert body["status"] == "running"
    # The step is the latest phase, not the chunks that came after it; the output is the reply being written
    # since that model call started, not the earlier call's draft.
    assert body["step"] == "llm.started"
    assert body["partial_output"] == "Refunds are accepted"
    assert body["last_event_id"] == last_sequence(job)
    assert body["progress"] is None


def test_the_progress_is_the_latest_an_event_carried(client: Any, membership: Membership, echo: Agent) -> None:
    job = running(
        submitted(echo, membership),
        ("tool.started", {"name": "crawl", "progress": 0.25}),
        ("tool.completed", {"name": "crawl", "progress": 0.5}),
        ("llm.started", {"model": "m"}),
    )

    body = client.get(job_url(membership, job, "state")).json()

    assert (body["progress"], body["step"]) == (0.5, "llm.started")


def test_a_finished_job_shows_its_final_output_and_last_event(client: Any, membership: Membership, echo: Agent) -> None:
    job = run_now(submitted(echo, membership, "hello there world"))

    body = client.get(job_url(membership, job, "state")).json()

    assert body["status"] == "succeeded"
    assert body["step"] == "job.succeeded"
    assert body["partial_output"] == "hello there world"
    assert body["last_event_id"] == last_sequence(job)
    assert Event.objects.get(job_id=job.pk, sequence=body["last_event_id"]).type == "job.succeeded"


def test_a_job_waiting_for_a_person_shows_what_it_waits_for(client: Any, membership: Membership, echo: Agent) -> None:
    job = running(submitted(echo, membership))
    services.job_await(job=job, request={"type": "input", "prompt": "Which order?"}, state={"state": {}}, usage={})

    body = client.get(job_url(membership, job, "state")).json()

    assert (body["status"], body["step"]) == ("requires_action", "job.requires_action")
    assert body["pending_action"]["prompt"] == "Which order?"


# --- The report ---------------------------------------------------------------------------------------------


def test_an_ended_job_reports_its_output_citations_artifacts_usage_and_timings(
    client: Any, membership: Membership, researcher: Agent
) -> None:
    job = run_now(submitted(researcher, membership, "How long do refunds take?"))
    assert job.status == JobStatus.SUCCEEDED

    response = client.get(job_url(membership, job, "report"))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["output"] == [{"type": "text", "text": "Within 30 days [1]."}, CITATION]
    assert body["output_text"] == "Within 30 days [1]."
    assert body["output_message"] == str(Message.objects.get(job_id=job.pk, role="assistant").pk)
    assert body["citations"] == [CITATION]
    assert [(a["name"], a["kind"], a["data"]) for a in body["artifacts"]] == [
        ("sources", "citation", {"citations": [{"title": "Refund policy"}]})
    ]
    assert body["usage"] == job.usage
    assert (body["cost"], body["currency"]) == (job.usage["cost"], job.usage["currency"])
    assert body["error"] is None
    timings = body["timings"]
    assert timings["created_at"] <= timings["started_at"] <= timings["finished_at"]
    assert job.started_at is not None and job.finished_at is not None
    assert timings["queued_seconds"] == pytest.approx((job.started_at - job.created_at).total_seconds(), abs=0.001)
    assert timings["run_seconds"] == pytest.approx((job.finished_at - job.started_at).total_seconds(), abs=0.001)


def test_an_echo_job_reports_its_tokens(client: Any, membership: Membership, echo: Agent) -> None:
    job = run_now(submitted(echo, membership, "hello world"))

    body = client.get(job_url(membership, job, "report")).json()

    assert body["output_text"] == "hello world"
    assert (body["usage"]["input_tokens"], body["usage"]["output_tokens"]) == (2, 2)
    assert (body["citations"], body["artifacts"]) == ([], [])


def test_a_job_that_never_started_reports_its_end_without_run_timings(
    client: Any, membership: Membership, echo: Agent
) -> None:
    job = submitted(echo, membership)
    services.job_cancel(job=job)

    body = client.get(job_url(membership, job, "report")).json()

    assert body["status"] == "cancelled"
    assert (body["output"], body["output_text"], body["output_message"]) == ([], "", None)
    assert body["timings"]["started_at"] is None
    assert (body["timings"]["queued_seconds"], body["timings"]["run_seconds"]) == (None, None)


def test_a_failed_job_reports_its_problem(client: Any, membership: Membership, echo: Agent) -> None:
    job = running(submitted(echo, membership))
    Job.objects.filter(pk=job.pk).update(max_attempts=1, heartbeat_at=timezone.now() - timedelta(days=1))
    services.janitor_run()

    body = client.get(job_url(membership, job, "report")).json()

    assert body["status"] == "failed"
    assert body["error"]["type"] == "urn:aihub:problem:worker-lost"


def test_a_job_still_under_way_has_no_report_yet(client: Any, membership: Membership, echo: Agent) -> None:
    job = running(submitted(echo, membership))

    body = assert_problem(client.get(job_url(membership, job, "report")), 409)

    assert "running" in body["detail"]


# --- Who may see them -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["state", "report"])
def test_another_members_job_is_not_found_in_the_words_of_the_job_route(
    client: Any, client_as: ClientAs, membership: Membership, echo: Agent, route: str
) -> None:
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    theirs = run_now(submitted(echo, colleague))

    detail = assert_problem(client.get(f"{job_url(membership, theirs)}/"), 404)["detail"]

    assert assert_problem(client.get(job_url(membership, theirs, route)), 404)["detail"] == detail
    assert client_as(colleague).get(job_url(membership, theirs, route)).status_code == 200


@pytest.mark.parametrize("route", ["state", "report"])
def test_an_admin_sees_every_jobs_state_and_report(
    client_as: ClientAs, membership: Membership, echo: Agent, route: str
) -> None:
    admin = MembershipFactory.create(tenant=membership.tenant, roles=["admin"])
    job = run_now(submitted(echo, membership))

    assert client_as(admin).get(job_url(membership, job, route)).status_code == 200


@pytest.mark.parametrize("route", ["state", "report"])
def test_a_job_of_another_tenant_or_none_at_all_is_not_found(client: Any, membership: Membership, route: str) -> None:
    elsewhere = MembershipFactory.create(user=membership.user, roles=["admin"])
    job = run_now(submitted(AgentFactory.create(tenant=elsewhere.tenant), membership))

    foreign = assert_problem(client.get(job_url(membership, job, route)), 404)
    unknown = assert_problem(client.get(job_url(membership, "00000000-0000-4000-8000-000000000000", route)), 404)

    assert foreign["detail"] == f"No job '{job.pk}'."
    assert unknown["detail"] == "No job '00000000-0000-4000-8000-000000000000'."


@pytest.mark.parametrize("route", ["state", "report"])
def test_state_and_report_need_credentials(api_client: Any, membership: Membership, route: str) -> None:
    assert_problem(api_client.get(job_url(membership, "00000000-0000-4000-8000-000000000000", route)), 401)


# --- The schema -----------------------------------------------------------------------------------------------


def test_state_report_and_expiry_seconds_are_documented_with_examples(api_client: Any) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]

    for route in ("state", "report"):
        operation = paths[f"/api/v1/{{tenant}}/jobs/{{id}}/{route}"]["get"]
        assert operation["responses"]["200"]["content"]["application/json"]["examples"], route
        assert "404" in operation["responses"], route
    assert "409" in paths["/api/v1/{tenant}/jobs/{id}/report"]["get"]["responses"]
    expiry = schema["components"]["schemas"]["JobSubmitRequest"]["properties"]["expiry_seconds"]
    assert (expiry["minimum"], expiry["maximum"]) == (600, 604_800)


# --- Purging results past the expiry and the retention period --------------------------------------------------


@pytest.fixture
def _media_root(settings: Any, tmp_path: Path) -> Path:
    # The purge deletes stored files: each test stores them in a folder of its own.
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def with_expiry(job: Job, seconds_ago: float) -> Job:
    Job.objects.filter(pk=job.pk).update(expires_at=timezone.now() - timedelta(seconds=seconds_ago))
    return Job.objects.get(pk=job.pk)


def test_the_janitor_purges_an_ended_jobs_results_once_its_expiry_and_the_retention_passed(
    client: Any,
    membership: Membership,
    researcher: Agent,
    settings: Any,
    _media_root: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.JOBS_RESULT_RETENTION_SECONDS = 3600
    job = run_now(submitted(researcher, membership))
    services.artifact_publish(job=job, name="notes.txt", kind="file", content=b"notes", media_type="text/plain")
    assert [p for p in _media_root.rglob("*") if p.is_file()]
    with_expiry(job, 3500)

    with django_capture_on_commit_callbacks(execute=True):
        assert services.janitor_run()["purged"] == 0
    with_expiry(job, 3700)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.janitor_run()["purged"] == 1

    detail = client.get(f"{job_url(membership, job)}/").json()
    report = client.get(job_url(membership, job, "report")).json()
    assert detail["results_purged_at"] is not None
    assert detail["output"] == {}
    assert (report["output"], report["citations"], report["artifacts"]) == ([], [], [])
    assert report["results_purged_at"] == detail["results_purged_at"]
    assert report["usage"] == job.usage  # kept for accounting
    assert not [p for p in _media_root.rglob("*") if p.is_file()]
    # The reply stays on the thread: it is the conversation, not the job's result.
    assert Message.objects.filter(job_id=job.pk, role="assistant").exists()
    assert services.janitor_run()["purged"] == 0


def test_without_a_retention_period_or_an_expiry_results_are_kept(
    membership: Membership, echo: Agent, settings: Any
) -> None:
    kept_forever = with_expiry(run_now(submitted(echo, membership)), 10**6)
    settings.JOBS_RESULT_RETENTION_SECONDS = 0
    assert services.janitor_run()["purged"] == 0

    settings.JOBS_RESULT_RETENTION_SECONDS = 60
    never_expires = run_now(submitted(echo, membership))
    still_waiting = with_expiry(submitted(echo, membership), 10**6)
    # The waiting job is expired first, in the same run, and then is past its retention like any ended job.
    assert services.janitor_run()["purged"] == 2

    assert Job.objects.get(pk=never_expires.pk).results_purged_at is None
    assert Job.objects.get(pk=never_expires.pk).output["content"]
    assert Job.objects.get(pk=kept_forever.pk).results_purged_at is not None
    assert Job.objects.get(pk=still_waiting.pk).status == JobStatus.EXPIRED
    assert Job.objects.get(pk=still_waiting.pk).results_purged_at is not None
