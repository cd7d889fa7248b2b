"""Artifacts: a job publishes files, citations and task lists; they are updated by name, announced as
``artifact.updated`` events, listed per job and downloaded with the job's visibility."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage

from agents import registry
from agents.models import Agent
from agents.registry import AgentClass, AgentConfig
from agents.runtime import AgentOutput, Reply
from agents.runtime import Artifact as ArtifactOutput
from aihub.access import services as access_services
from aihub.access.models import Membership
from jobs import services
from jobs.models import Artifact, Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_problem
from tests.jobs.helpers import assert_gap_free, event_types, run_now
from threads import services as thread_services
from threads.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media_root(settings: Any, tmp_path: Path) -> Path:
    # Each test stores its files in a folder of its own, so no file outlives it or meets another test's.
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


@pytest.fixture
def job(echo: Agent, membership: Membership) -> Job:
    submitted, _ = services.job_submit(agent=echo, user=membership.user, content="Write it down.")
    return submitted


@pytest.fixture
def note_taker(membership: Membership) -> Agent:
    """A tools agent on the offline model that may publish notes."""
    return AgentFactory.create(tenant=membership.tenant, slug="notes", class_name="tools", tools=["publish_note"])


def artifact_events(job: Job) -> list[dict[str, Any]]:
    return [e.data for e in Event.objects.filter(job_id=job.pk, type="artifact.updated").order_by("sequence")]


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def artifacts_url(membership: Membership, job: Job, *rest: str) -> str:
    return "/".join([f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/artifacts", *rest])


# --- The service ----------------------------------------------------------------------------------------------


def test_publishing_a_file_stores_it_under_the_job_and_announces_it(job: Job, _media_root: Path) -> None:
    artifact = services.artifact_publish(
        job=job, name="summary.txt", kind="file", data={"pages": 1}, content=b"Hello", media_type="text/plain"
    )

    assert artifact is not None
    assert artifact.tenant_id == job.tenant_id
    assert artifact.file.name.startswith(f"artifacts/{job.pk}/")
    assert (_media_root / artifact.file.name).read_bytes() == b"Hello"
    assert (artifact.size, artifact.media_type) == (5, "text/plain")
    [event] = artifact_events(job)
    assert event == {
        "id": str(artifact.pk),
        "name": "summary.txt",
        "kind": "file",
        "data": {"pages": 1},
        "media_type": "text/plain",
        "size": 5,
        "url": f"/api/v1/{job.tenant.slug}/jobs/{job.pk}/artifacts/{artifact.pk}/content",
    }
    assert_gap_free(job.thread)


def test_publishing_the_same_name_again_updates_the_artifact_and_drops_its_old_file(
    job: Job, _media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    first = services.artifact_publish(job=job, name="report", kind="file", content=b"draft")
    assert first is not None
    old_file = first.file.name

    with django_capture_on_commit_callbacks(execute=True):
        second = services.artifact_publish(job=job, name="report", kind="file", content=b"final version")

    assert second is not None
    assert second.pk == first.pk
    assert Artifact.objects.filter(job=job).count() == 1
    assert second.size == len(b"final version")
    assert not default_storage.exists(old_file)
    assert stored_files(_media_root) == [_media_root / second.file.name]
    assert [e["size"] for e in artifact_events(job)] == [5, 13]


def test_an_update_without_content_leaves_an_artifact_without_a_file(
    job: Job, django_capture_on_commit_callbacks: Any, _media_root: Path
) -> None:
    services.artifact_publish(job=job, name="plan", kind="file", content=b"1. think")

    with django_capture_on_commit_callbacks(execute=True):
        plan = services.artifact_publish(job=job, name="plan", kind="task_list", data={"tasks": ["think"]})

    assert plan is not None
    assert (plan.kind, plan.size, bool(plan.file)) == ("task_list", 0, False)
    assert artifact_events(job)[-1]["url"] is None
    assert stored_files(_media_root) == []


def test_an_artifact_larger_than_the_limit_is_refused_and_nothing_is_written(
    job: Job, settings: Any, _media_root: Path
) -> None:
    settings.JOBS_ARTIFACT_MAX_BYTES = 10
    events_before = Event.objects.count()

    with pytest.raises(ValidationError) as refused:
        services.artifact_publish(job=job, name="big", kind="file", content=b"x" * 11)
    with pytest.raises(ValidationError) as refused_data:
        services.artifact_publish(job=job, name="big", kind="other", data={"text": "x" * 20})

    assert set(refused.value.message_dict) == {"content"}
    assert set(refused_data.value.message_dict) == {"data"}
    assert not Artifact.objects.exists()
    assert Event.objects.count() == events_before
    assert stored_files(_media_root) == []


def test_a_malformed_artifact_is_refused_naming_each_field(job: Job) -> None:
    with pytest.raises(ValidationError) as refused:
        services.artifact_publish(
            job=job, name="line\nbreak", kind="poem", content=b"x", media_type="text/html\r\nX-Evil: 1"
        )

    assert set(refused.value.message_dict) == {"name", "kind", "media_type"}


# --- Through a job ----------------------------------------------------------------------------------------------


class PublishingAgent(AgentClass):
    """Publishes a task list, updates it, tries something too large, then answers."""

    name = "test-publisher"
    description = "Publishes artifacts (tests only)."
    Config = AgentConfig

    def execute(self) -> Iterator[AgentOutput]:
        yield ArtifactOutput("plan", "task_list", {"tasks": [{"title": "read", "done": False}]})
        yield ArtifactOutput("plan", "task_list", {"tasks": [{"title": "read", "done": True}]})
        yield ArtifactOutput("huge", "file", content=b"x" * 100)
        yield ArtifactOutput("sources", "citation", {"citations": [{"title": "Policy", "url": "https://example.com"}]})
        yield Reply([{"type": "text", "text": "Done."}])


@pytest.fixture
def publisher(membership: Membership, monkeypatch: pytest.MonkeyPatch) -> Agent:
    # Registered for this test only: the class list other tests see stays the built-ins.
    monkeypatch.setitem(registry._BUILT_INS, PublishingAgent.name, PublishingAgent)
    return AgentFactory.create(tenant=membership.tenant, slug="publisher", class_name=PublishingAgent.name)


def test_a_job_publishes_and_updates_artifacts_in_order_and_a_refusal_does_not_stop_it(
    publisher: Agent, membership: Membership, settings: Any
) -> None:
    settings.JOBS_ARTIFACT_MAX_BYTES = 90
    submitted, _ = services.job_submit(agent=publisher, user=membership.user, content="Plan it.")

    job = run_now(submitted)

    assert job.status == JobStatus.SUCCEEDED
    types = event_types(job.thread, job_id=job.pk)
    assert types == [
        "job.queued",
        "job.started",
        "artifact.updated",
        "artifact.updated",
        "agent.error",
        "artifact.updated",
        "message.created",
        "job.succeeded",
    ]
    plan_events = [e for e in artifact_events(job) if e["name"] == "plan"]
    assert [e["data"]["tasks"][0]["done"] for e in plan_events] == [False, True]
    [refusal] = Event.objects.filter(job_id=job.pk, type="agent.error")
    assert refusal.data["type"] == "artifact-refused"
    assert refusal.data["name"] == "huge"
    assert "100 bytes" in refusal.data["detail"]
    assert sorted(job.artifacts.values_list("name", flat=True)) == ["plan", "sources"]
    assert_gap_free(job.thread)


def test_a_tools_agent_publishes_a_note_through_its_tool_end_to_end(
    note_taker: Agent, membership: Membership, client_as: ClientAs
) -> None:
    submitted, _ = services.job_submit(
        agent=note_taker, user=membership.user, content="note: Groceries | milk, eggs, bread"
    )

    job = run_now(submitted)

    assert job.status == JobStatus.SUCCEEDED
    types = event_types(job.thread, job_id=job.pk)
    # The artifact is published while the tool runs: between its start and its result.
    assert types.index("tool.started") < types.index("artifact.updated") < types.index("tool.completed")
    [completed] = Event.objects.filter(job_id=job.pk, type="tool.completed")
    assert completed.data["is_error"] is False
    [note] = job.artifacts.all()
    assert (note.name, note.kind, note.media_type) == ("Groceries", "file", "text/plain; charset=utf-8")
    assert completed.data["output"] == {"artifact": str(note.pk), "name": "Groceries", "size": note.size}

    download = client_as(membership).get(artifacts_url(membership, job, str(note.pk), "content"))

    assert download.status_code == 200
    assert download.getvalue() == b"milk, eggs, bread"
    assert download["Content-Type"] == "text/plain; charset=utf-8"
    assert download["Content-Disposition"] == 'attachment; filename="Groceries"'


def test_a_note_too_large_is_a_tool_error_the_model_reads(
    note_taker: Agent, membership: Membership, settings: Any
) -> None:
    settings.JOBS_ARTIFACT_MAX_BYTES = 5
    submitted, _ = services.job_submit(agent=note_taker, user=membership.user, content="note: Essay | far too long")

    job = run_now(submitted)

    assert job.status == JobStatus.SUCCEEDED
    [completed] = Event.objects.filter(job_id=job.pk, type="tool.completed")
    assert completed.data["is_error"] is True
    assert "refused" in completed.data["output"]
    assert "artifact.updated" not in event_types(job.thread)
    assert not Artifact.objects.exists()


def test_publishing_a_note_outside_a_job_is_refused(
    note_taker: Agent, membership: Membership, client_as: ClientAs
) -> None:
    response = client_as(membership).post(
        f"/api/v1/{membership.tenant.slug}/agents/notes/tools/publish_note",
        {"arguments": {"title": "t", "text": "x"}},
        format="json",
    )

    assert_problem(response, 422)
    assert not Artifact.objects.exists()


# --- The API --------------------------------------------------------------------------------------------------


def test_a_member_lists_the_artifacts_of_their_job(job: Job, membership: Membership, client_as: ClientAs) -> None:
    services.artifact_publish(job=job, name="a.txt", kind="file", content=b"A", media_type="text/plain")
    services.artifact_publish(job=job, name="tasks", kind="task_list", data={"tasks": []})

    response = client_as(membership).get(artifacts_url(membership, job))

    assert response.status_code == 200, response.content
    body = response.json()
    assert body.keys() == {"items", "total", "limit", "offset"}
    assert body["total"] == 2
    file_item, tasks_item = body["items"]
    assert file_item["name"] == "a.txt"
    assert file_item["job"] == str(job.pk)
    assert file_item["url"].endswith(f"/artifacts/{file_item['id']}/content")
    assert (tasks_item["kind"], tasks_item["url"], tasks_item["size"]) == ("task_list", None, 0)


def test_downloading_an_artifact_without_a_file_is_not_found(
    job: Job, membership: Membership, client_as: ClientAs
) -> None:
    tasks = services.artifact_publish(job=job, name="tasks", kind="task_list", data={"tasks": []})
    assert tasks is not None

    response = client_as(membership).get(artifacts_url(membership, job, str(tasks.pk), "content"))

    assert_problem(response, 404)


def test_a_download_names_the_file_safely(job: Job, membership: Membership, client_as: ClientAs) -> None:
    artifact = services.artifact_publish(job=job, name='../etc/"passwd"', kind="file", content=b"x")
    assert artifact is not None

    response = client_as(membership).get(artifacts_url(membership, job, str(artifact.pk), "content"))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="_etc_\\"passwd\\""'


def test_artifacts_of_another_tenant_are_not_found(job: Job, client_as: ClientAs) -> None:
    artifact = services.artifact_publish(job=job, name="a.txt", kind="file", content=b"A")
    assert artifact is not None
    stranger = MembershipFactory.create(roles=["member"])
    client = client_as(stranger)
    url = f"/api/v1/{stranger.tenant.slug}/jobs/{job.pk}/artifacts"

    assert_problem(client.get(url), 404)
    assert_problem(client.get(f"{url}/{artifact.pk}/content"), 404)


def test_a_member_without_a_jobs_rule_sees_no_artifacts(job: Job, membership: Membership, client_as: ClientAs) -> None:
    artifact = services.artifact_publish(job=job, name="a.txt", kind="file", content=b"A")
    assert artifact is not None
    access_services.role_create(
        tenant=membership.tenant, name="chat-only", rules=["aihub.user.agents.>", "aihub.user.threads.>"]
    )
    chatter = MembershipFactory.create(tenant=membership.tenant, roles=["chat-only"])
    thread_services.thread_member_add(thread=job.thread, user=chatter.user)
    client = client_as(chatter)

    assert_problem(client.get(artifacts_url(membership, job)), 404)
    assert_problem(client.get(artifacts_url(membership, job, str(artifact.pk), "content")), 404)


def test_an_artifact_of_another_job_is_not_found_under_this_one(
    job: Job, echo: Agent, membership: Membership, client_as: ClientAs
) -> None:
    other, _ = services.job_submit(agent=echo, user=membership.user, content="another")
    theirs = services.artifact_publish(job=other, name="a.txt", kind="file", content=b"A")
    assert theirs is not None

    response = client_as(membership).get(artifacts_url(membership, job, str(theirs.pk), "content"))

    assert_problem(response, 404)
