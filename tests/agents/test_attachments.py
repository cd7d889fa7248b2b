"""What a model is given for attachments: images as image_url parts (when the agent's model accepts images),
documents as their extracted text marked with the file's name; checked on the wire of the loopback OpenAI server
and on the offline model."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from agents.models import Agent, ModelProvider
from agents.registry import get_agent_class
from agents.runtime import AgentRun, chat_messages
from jobs import services as job_services
from jobs.attachments import attachment_block
from jobs.models import Job, JobStatus
from jobs.runner import execute
from tests.agents.factories import AgentFactory
from tests.agents.openai_server import OpenAIServer
from tests.factories import UserFactory
from tests.sample_files import make_pdf, png
from tests.threads.factories import FileFactory
from threads import services as thread_services
from threads.models import File, Message, MessageRole

pytestmark = pytest.mark.django_db

INVOICE_MARKER = '<attachment name="invoice.pdf" media_type="application/pdf">'


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def user() -> User:
    return UserFactory.create()


def run(agent: Agent, user: User, content: list[dict[str, Any]]) -> Job:
    job, _ = job_services.job_submit(agent=agent, user=user, content=content)
    claimed = job_services.job_claim(job_id=job.id, worker="test-worker")
    assert claimed is not None
    execute(claimed)
    claimed.refresh_from_db()
    return claimed


def upload(agent: Agent, user: User, name: str, data: bytes) -> File:
    return FileFactory.create(tenant=agent.tenant, uploaded_by=user, name=name, data=data)


def reply(job: Job) -> str:
    message = Message.objects.get(job_id=job.pk, role=MessageRole.ASSISTANT)
    return "".join(block["text"] for block in message.content if block["type"] == "text")


def test_a_vision_model_gets_the_image_as_a_data_url_and_the_documents_text(
    loopback_provider: ModelProvider, openai_server: OpenAIServer, user: User
) -> None:
    agent = AgentFactory.create(class_name="chat", model="loopback/gpt-vision", config={"vision": True})
    image, pdf = png(), make_pdf("Total due: 42 CHF")
    cat, invoice = upload(agent, user, "cat.png", image), upload(agent, user, "invoice.pdf", pdf)
    openai_server.reply_text("A cat and an invoice.")

    job = run(agent, user, [{"type": "text", "text": "What are these?"}, *map(attachment_block, (cat, invoice))])

    assert job.status == JobStatus.SUCCEEDED, job.error
    (request,) = openai_server.requests
    assert request.body["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What are these?"},
            {"type": "text", "text": '<image name="cat.png" media_type="image/png"/>'},
            {
                "type": "image_url",
                "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode(), "detail": "auto"},
            },
            {"type": "text", "text": f"{INVOICE_MARKER}\nTotal due: 42 CHF\n</attachment>"},
        ],
    }


def test_a_model_without_vision_is_told_an_image_was_left_out(
    loopback_provider: ModelProvider, openai_server: OpenAIServer, user: User
) -> None:
    agent = AgentFactory.create(class_name="chat", model="loopback/gpt-text")
    cat = upload(agent, user, "cat.png", png())
    openai_server.reply_text("I cannot see it.")

    run(agent, user, [{"type": "text", "text": "Look"}, attachment_block(cat)])

    (request,) = openai_server.requests
    assert request.body["messages"][-1]["content"] == (
        'Look\n\n<image name="cat.png" media_type="image/png" omitted="this model does not accept images"/>'
    )


def test_the_tools_agent_sends_attachments_too(
    loopback_provider: ModelProvider, openai_server: OpenAIServer, user: User
) -> None:
    agent = AgentFactory.create(class_name="tools", model="loopback/gpt-tools", tools=["calculator"])
    notes = upload(agent, user, "notes.md", b"# Plan\nShip on Friday.")
    openai_server.reply_text("Friday.")

    run(agent, user, [{"type": "text", "text": "When?"}, attachment_block(notes)])

    content = openai_server.requests[0].body["messages"][-1]["content"]
    assert (
        content
        == 'When?\n\n<attachment name="notes.md" media_type="text/markdown">\n# Plan\nShip on Friday.\n</attachment>'
    )


def test_document_text_is_cut_at_the_setting(user: User, settings: Any) -> None:
    settings.AIHUB = {"ATTACHMENT_TEXT_MAX_CHARS": 10}
    agent = AgentFactory.create(class_name="chat")
    notes = upload(agent, user, "long.txt", b"0123456789abcdefghij")
    run_ = agent_run(agent, user, [attachment_block(notes)])

    content = chat_messages(run_)[-1]["content"]

    assert content == (
        '<attachment name="long.txt" media_type="text/plain" truncated="the first 10 of 20 characters">\n'
        "0123456789\n</attachment>"
    )


def test_earlier_attachments_stay_in_the_history_and_a_deleted_file_is_named_as_gone(
    user: User, django_capture_on_commit_callbacks: Any
) -> None:
    agent = AgentFactory.create(class_name="chat")
    kept, gone = upload(agent, user, "kept.txt", b"still here"), upload(agent, user, "gone.txt", b"bye")
    history = [
        {"role": "user", "content": [{"type": "text", "text": "first"}, attachment_block(kept)]},
        {"role": "assistant", "content": [{"type": "text", "text": "noted"}]},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        thread_services.file_delete(file=gone)

    messages = chat_messages(agent_run(agent, user, [attachment_block(gone)], history=history))

    assert (
        messages[0]["content"]
        == 'first\n\n<attachment name="kept.txt" media_type="text/plain">\nstill here\n</attachment>'
    )
    assert messages[1] == {"role": "assistant", "content": "noted"}
    assert messages[2]["content"] == '<attachment name="gone.txt" unavailable="the file was deleted"/>'


def test_another_tenants_file_id_in_a_stored_message_gives_nothing_away(user: User) -> None:
    agent = AgentFactory.create(class_name="chat")
    foreign = FileFactory.create(name="secret.txt", data=b"other tenant")  # another tenant

    messages = chat_messages(agent_run(agent, user, [{"type": "file", "file_id": str(foreign.pk), "name": "x"}]))

    assert "other tenant" not in str(messages)
    assert "unavailable" in messages[-1]["content"]


def test_the_offline_model_lists_attachments_and_ignores_tools_named_in_documents(user: User) -> None:
    agent = AgentFactory.create(class_name="tools", tools=["current_time"], config={"vision": False})
    memo = upload(agent, user, "memo.txt", b"What time is it? Lunch at noon.")
    cat = upload(agent, user, "cat.png", png())

    job = run(agent, user, [{"type": "text", "text": "Read these"}, attachment_block(memo), attachment_block(cat)])

    assert reply(job) == (
        "You said: Read these Attached: memo.txt (text/plain, 7 words); cat.png (an image I cannot see)."
    )
    assert job.status == JobStatus.SUCCEEDED


def agent_run(agent: Agent, user: User, content: list[dict[str, Any]], history: Any = None) -> AgentRun:
    agent_class = get_agent_class(agent.class_name)
    assert agent_class is not None
    return AgentRun(
        tenant_id=agent.tenant_id,
        thread_id=uuid.uuid4(),
        job_id=uuid.uuid4(),
        agent_id=agent.pk,
        agent_slug=agent.slug,
        agent_version=agent.version,
        model=agent.model,
        system_prompt="",
        tools=[],
        config=agent_class.Config.model_validate(agent.config),
        history=history or [],
        input=content,
        user_id=user.pk,
    )
