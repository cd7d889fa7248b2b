"""Messages with attachments (the caller's files by id) and file_urls (fetched server-side from an allowlist),
on the three routes that start a job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from agents.models import Agent
from aihub.access.models import Membership
from jobs.models import Job
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.file_server import FileServer
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import assistant_messages, run_now
from tests.sample_files import make_pdf, png
from tests.threads.factories import FileFactory, ThreadFactory
from threads.models import File, Message, Thread

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored(media_root: Path) -> list[Path]:
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


@pytest.fixture
def client(client_as: ClientAs, membership: Membership) -> APIClient:
    return client_as(membership)


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


@pytest.fixture
def notes(membership: Membership) -> File:
    return FileFactory.create(
        tenant=membership.tenant, uploaded_by=membership.user, name="notes.txt", data=b"Ship on Friday."
    )


@pytest.fixture
def cat(membership: Membership) -> File:
    return FileFactory.create(tenant=membership.tenant, uploaded_by=membership.user, name="cat.png", data=png())


@pytest.fixture
def allow_file_server(settings: Any, file_server: FileServer) -> FileServer:
    """The loopback server's /public/ folder on the allowlist, and private addresses allowed (it is loopback)."""
    settings.AIHUB = {"FILE_URL_ALLOWLIST": [file_server.url("/public/")], "OUTBOUND_ALLOW_PRIVATE_NETWORKS": True}
    return file_server


def submit(client: APIClient, membership: Membership, **body: Any) -> Any:
    body = {"agent": "echo", "input": "What do you make of these?", **body}
    return client.post(f"/api/v1/{membership.tenant.slug}/jobs/", body, format="json")


def nothing_written(media_root: Path) -> None:
    assert (Job.objects.count(), Message.objects.count(), File.objects.filter(source_url__gt="").count()) == (0, 0, 0)
    assert all(p.name != "content" for p in stored(media_root))


# --- attachments ------------------------------------------------------------------------------------------------


def test_attached_files_become_image_and_file_blocks_of_the_message(
    client: APIClient, membership: Membership, echo: Agent, notes: File, cat: File
) -> None:
    response = submit(client, membership, attachments=[{"file": str(notes.pk)}, {"file": str(cat.pk)}])

    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    expected = [
        {"type": "text", "text": "What do you make of these?"},
        {"type": "file", "file_id": str(notes.pk), "name": "notes.txt", "media_type": "text/plain"},
        {"type": "image", "file_id": str(cat.pk), "name": "cat.png", "media_type": "image/png", "detail": "auto"},
    ]
    assert job.input["content"] == expected
    assert Message.objects.get(pk=job.input["message"]).content == expected


@pytest.mark.parametrize("route", ["jobs", "agents", "threads"])
def test_every_route_that_starts_a_job_takes_attachments(
    client: APIClient, membership: Membership, echo: Agent, notes: File, route: str
) -> None:
    thread = ThreadFactory.create(tenant=membership.tenant, created_by=membership.user, agent_ids=[echo.pk])
    body: dict[str, Any] = {"content": "See attached", "attachments": [{"file": str(notes.pk)}]}
    base = f"/api/v1/{membership.tenant.slug}"
    url = {
        "jobs": f"{base}/jobs/",
        "agents": f"{base}/agents/echo/messages",
        "threads": f"{base}/threads/{thread.pk}/messages/",
    }[route]
    if route == "jobs":
        body = {"agent": "echo", "input": body.pop("content"), **body}

    response = client.post(url, body, format="json")

    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert job.input["content"][-1]["file_id"] == str(notes.pk)


def test_a_message_may_be_only_attachments(client: APIClient, membership: Membership, echo: Agent, cat: File) -> None:
    response = submit(client, membership, input="", attachments=[{"file": str(cat.pk)}])
    assert response.status_code == 202, response.content
    assert [block["type"] for block in Job.objects.get().input["content"]] == ["image"]
    assert_invalid(submit(client, membership, input=""), "input")


def test_an_unknown_file_is_a_400_naming_it_and_nothing_is_written(
    client: APIClient, membership: Membership, echo: Agent, notes: File, media_root: Path
) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    body = assert_invalid(
        submit(client, membership, attachments=[{"file": str(notes.pk)}, {"file": unknown}]), "attachments[1].file"
    )
    assert unknown in body["errors"][0]["message"]
    nothing_written(media_root)


def test_a_colleagues_file_and_another_tenants_file_cannot_be_attached(
    client: APIClient, membership: Membership, echo: Agent
) -> None:
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    theirs = FileFactory.create(tenant=membership.tenant, uploaded_by=colleague.user)
    other_tenant = MembershipFactory.create(user=membership.user, roles=["member"])
    mine_elsewhere = FileFactory.create(tenant=other_tenant.tenant, uploaded_by=membership.user)

    for file in (theirs, mine_elsewhere):
        assert_invalid(submit(client, membership, attachments=[{"file": str(file.pk)}]), "attachments[0].file")
    assert Job.objects.count() == 0


def test_a_content_block_cannot_smuggle_in_someone_elses_file(
    client: APIClient, membership: Membership, echo: Agent
) -> None:
    theirs = FileFactory.create(tenant=membership.tenant)
    blocks = [{"type": "text", "text": "hi"}, {"type": "image", "file_id": str(theirs.pk)}]
    assert_invalid(submit(client, membership, input=blocks), "content")
    assert Job.objects.count() == 0


def test_too_many_attachments_are_refused(
    client: APIClient, membership: Membership, echo: Agent, notes: File, settings: Any
) -> None:
    settings.AIHUB = {"ATTACHMENTS_MAX": 2}
    many = [{"file": str(notes.pk)}] * 2
    assert_invalid(submit(client, membership, attachments=many, file_urls=["https://x.example/a"]), "attachments")


# --- file_urls --------------------------------------------------------------------------------------------------


def test_allowed_file_urls_are_fetched_into_the_callers_files_before_the_job(
    client: APIClient, membership: Membership, echo: Agent, allow_file_server: FileServer
) -> None:
    url = allow_file_server.put("/public/invoice.pdf", make_pdf("Invoice 1042"), content_type="application/pdf")

    response = submit(client, membership, file_urls=[url])

    assert response.status_code == 202, response.content
    file = File.objects.get()
    assert (file.name, file.media_type, file.text, file.source_url) == (
        "invoice.pdf",
        "application/pdf",
        "Invoice 1042",
        url,
    )
    assert (file.tenant, file.uploaded_by) == (membership.tenant, membership.user)
    block = Job.objects.get().input["content"][-1]
    assert block == {"type": "file", "file_id": str(file.pk), "name": "invoice.pdf", "media_type": "application/pdf"}


def test_a_url_off_the_allowlist_is_a_400_naming_it_and_is_never_requested(
    client: APIClient, membership: Membership, echo: Agent, allow_file_server: FileServer, media_root: Path
) -> None:
    good = allow_file_server.put("/public/a.txt", b"fine")
    bad = allow_file_server.put("/private/b.txt", b"secret")

    body = assert_invalid(submit(client, membership, file_urls=[good, bad]), "file_urls[1]")

    assert bad in body["errors"][0]["message"]
    assert "allowlist" in body["errors"][0]["message"]
    assert [r.path for r in allow_file_server.requests] == ["/public/a.txt"]
    nothing_written(media_root)


def test_a_private_address_is_refused_unless_the_setting_allows_it(
    client: APIClient, membership: Membership, echo: Agent, file_server: FileServer, settings: Any, media_root: Path
) -> None:
    url = file_server.put("/public/a.txt", b"internal")
    settings.AIHUB = {"FILE_URL_ALLOWLIST": [file_server.url("/public/")]}  # allowlisted, but loopback

    body = assert_invalid(submit(client, membership, file_urls=[url]), "file_urls[0]")

    assert "non-public address 127.0.0.1" in body["errors"][0]["message"]
    assert file_server.requests == []
    nothing_written(media_root)


def test_a_url_larger_than_the_file_limit_is_refused(
    client: APIClient,
    membership: Membership,
    echo: Agent,
    allow_file_server: FileServer,
    settings: Any,
    media_root: Path,
) -> None:
    settings.AIHUB = {**settings.AIHUB, "FILE_MAX_BYTES": 100}
    url = allow_file_server.put("/public/big.txt", b"x" * 1000)

    body = assert_invalid(submit(client, membership, file_urls=[url]), "file_urls[0]")

    assert "larger than 100 bytes" in body["errors"][0]["message"]
    nothing_written(media_root)


def test_a_fetched_file_of_a_refused_type_is_a_415_and_leaves_nothing(
    client: APIClient, membership: Membership, echo: Agent, allow_file_server: FileServer, media_root: Path
) -> None:
    good = allow_file_server.put("/public/a.txt", b"fine")
    binary = allow_file_server.put("/public/tool.exe", b"MZ\x90\x00\x03\x00")

    assert_problem(submit(client, membership, file_urls=[good, binary]), 415)

    nothing_written(media_root)
    assert File.objects.count() == 0
    assert stored(media_root) == []


def test_a_busy_thread_refusing_the_message_keeps_no_fetched_file(
    client: APIClient, membership: Membership, echo: Agent, allow_file_server: FileServer, media_root: Path
) -> None:
    url = allow_file_server.put("/public/a.txt", b"fine")
    first = submit(client, membership).json()

    response = submit(client, membership, thread=first["thread"], file_urls=[url])

    assert_problem(response, 409)
    assert (Job.objects.count(), File.objects.count(), stored(media_root)) == (1, 0, [])


def test_a_retried_submission_answers_the_first_job_and_keeps_one_copy(
    client: APIClient, membership: Membership, echo: Agent, allow_file_server: FileServer, media_root: Path
) -> None:
    url = allow_file_server.put("/public/a.txt", b"fine")
    body = {"agent": "echo", "input": "read this", "file_urls": [url]}
    jobs_url = f"/api/v1/{membership.tenant.slug}/jobs/"

    first = client.post(jobs_url, body, format="json", HTTP_IDEMPOTENCY_KEY="order-1042")
    retry = client.post(jobs_url, body, format="json", HTTP_IDEMPOTENCY_KEY="order-1042")

    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["id"] == first.json()["id"]
    assert File.objects.count() == 1
    assert len(stored(media_root)) == 1


# --- What the model is given ------------------------------------------------------------------------------------


def test_the_offline_model_says_what_was_attached(
    client: APIClient, membership: Membership, notes: File, cat: File
) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="assistant", class_name="chat", config={"vision": True})
    response = client.post(
        f"/api/v1/{membership.tenant.slug}/agents/assistant/messages",
        {"content": "What are these?", "attachments": [{"file": str(notes.pk)}, {"file": str(cat.pk)}]},
        format="json",
    )
    job = run_now(Job.objects.get(pk=response.json()["id"]))

    [answer] = assistant_messages(job)
    said = "You said: What are these?"
    attached = "Attached: notes.txt (text/plain, 3 words); cat.png (an image I can see)."
    assert answer.content == [{"type": "text", "text": f"{said} {attached}"}]


def test_a_thread_with_attachments_reads_like_any_other(
    client: APIClient, membership: Membership, echo: Agent, notes: File
) -> None:
    response = submit(client, membership, attachments=[{"file": str(notes.pk)}])
    thread = Thread.objects.get(pk=response.json()["thread"])
    messages = client.get(f"/api/v1/{membership.tenant.slug}/threads/{thread.pk}/messages/").json()["items"]
    assert messages[0]["content"][-1]["name"] == "notes.txt"
