"""The OpenAI-compatible routes through Django's test client: OpenAI's error shape and codes, tenant isolation,
and what a chat completion stores (the real openai SDK against daphne is in test_openai_sdk.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Agent
from aihub.access import services as access_services
from aihub.access.models import Membership, Tenant
from aihub.interop.conversation import turn_submit
from aihub.interop.openai_api import completion_chunks
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory, TenantFactory, UserFactory
from tests.helpers import ClientAs, bearer
from tests.sample_files import make_pdf, png
from threads import services as thread_services
from threads.events import EventType, NewEvent
from threads.models import File, Message, Thread

MODELS = "/openai/v1/models"
CHAT = "/openai/v1/chat/completions"


def assert_openai_error(response: Any, status: int, *, code: str | None = None, param: str | None = None) -> str:
    """An error in OpenAI's shape with this status (and code and param); returns its message."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"], body
    assert body["error"]["code"] == code, body
    assert body["error"]["param"] == param, body
    return str(body["error"]["message"])


def chat(client: APIClient, **body: Any) -> Any:
    return client.post(CHAT, body, format="json")


def hello(model: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}], **extra}


@pytest.fixture
def tenant(membership: Membership) -> Tenant:
    return membership.tenant


@pytest.fixture
def echo(tenant: Tenant) -> Agent:
    return AgentFactory.create(tenant=tenant, slug="echo", description="Says it back.")


@pytest.fixture
def client(client_as: ClientAs, membership: Membership, echo: Agent) -> APIClient:
    return client_as(membership)


def nothing_was_stored() -> bool:
    return not Job.objects.exists() and not Thread.objects.exists() and not Message.objects.exists()


# --- Authentication -------------------------------------------------------------------------------------------


def test_without_a_token_the_answer_is_401_in_openais_shape(api_client: APIClient, echo: Agent) -> None:
    response = api_client.get(MODELS)
    assert_openai_error(response, 401, code="invalid_api_key")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_openai_error(api_client.post(CHAT, hello(), format="json"), 401, code="invalid_api_key")


def test_a_wrong_token_is_401(db: None) -> None:
    message = assert_openai_error(bearer("aih_000000000000_nope").get(MODELS), 401, code="invalid_api_key")
    assert "Incorrect API key" in message


# --- Models and tenants ---------------------------------------------------------------------------------------


def test_models_are_the_enabled_agents_of_the_callers_tenants(
    client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="retired", enabled=False)
    other = TenantFactory.create(slug="acme")
    MembershipFactory.create(user=membership.user, tenant=other)
    AgentFactory.create(tenant=other, slug="helper")
    AgentFactory.create(tenant=TenantFactory.create(slug="strangers"), slug="secret")

    body = client_as(membership).get(MODELS).json()

    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["echo", "acme/helper"]
    first = body["data"][0]
    assert first["object"] == "model"
    assert first["owned_by"] == membership.tenant.slug
    assert first["description"] == "Says it back."
    assert isinstance(first["created"], int)


def test_a_model_is_named_by_slug_in_the_default_tenant_or_by_tenant_and_slug(
    client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    client = client_as(membership)
    assert client.get(f"{MODELS}/echo").json()["id"] == "echo"
    assert client.get(f"{MODELS}/{membership.tenant.slug}/echo").json()["id"] == f"{membership.tenant.slug}/echo"


def test_another_tenants_agent_is_not_found_however_it_is_named(client: APIClient, tenant: Tenant) -> None:
    AgentFactory.create(tenant=TenantFactory.create(slug="strangers"), slug="secret")

    assert_openai_error(client.get(f"{MODELS}/strangers/secret"), 404, code="model_not_found")
    assert_openai_error(client.get(f"{MODELS}/secret"), 404, code="model_not_found")
    assert_openai_error(chat(client, **hello("strangers/secret")), 404, code="model_not_found", param="model")
    assert nothing_was_stored()


def test_a_token_restricted_to_one_tenant_sees_only_that_tenants_models(
    client_as: ClientAs, membership: Membership, echo: Agent
) -> None:
    other = TenantFactory.create(slug="acme")
    MembershipFactory.create(user=membership.user, tenant=other)
    AgentFactory.create(tenant=other, slug="helper")

    restricted = client_as(membership, tenant=membership.tenant)

    assert [model["id"] for model in restricted.get(MODELS).json()["data"]] == ["echo"]
    assert_openai_error(restricted.get(f"{MODELS}/acme/helper"), 404, code="model_not_found")


def test_an_agent_the_callers_roles_do_not_name_is_not_a_model(db: None) -> None:
    tenant = TenantFactory.create()
    AgentFactory.create(tenant=tenant, slug="public")
    AgentFactory.create(tenant=tenant, slug="private")
    access_services.role_create(tenant=tenant, name="public-only", rules=["aihub.user.agents.public"])
    member = MembershipFactory.create(tenant=tenant, roles=["public-only"])
    client = bearer(access_services.api_token_create(user=member.user, name="t")[1])

    assert [model["id"] for model in client.get(MODELS).json()["data"]] == ["public"]
    assert_openai_error(chat(client, **hello("private")), 404, code="model_not_found", param="model")


def test_a_disabled_agent_is_not_a_model(client: APIClient, echo: Agent) -> None:
    agent_services.agent_update(agent=echo, enabled=False)
    assert_openai_error(chat(client, **hello()), 404, code="model_not_found", param="model")
    assert nothing_was_stored()


# --- Requests OpenAI would reject -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, None, "missing_required_parameter"),
        ({"model": "echo"}, "messages", "missing_required_parameter"),
        ({"model": "echo", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "echo", "messages": []}, "messages", "empty_array"),
        ({"model": "echo", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"model": "echo", "messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
        ({"model": "echo", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
        ({"model": "echo", "messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        ({"model": "echo", "messages": [{"role": "user", "content": 42}]}, "messages[0].content", "invalid_type"),
        (
            {"model": "echo", "messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "echo", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"}]},
            "messages[1].role",
            "invalid_value",
        ),
        ({**hello(), "stream_options": {"include_usage": True}}, "stream_options", "invalid_value"),
        ({**hello(), "stream": "yes"}, "stream", "invalid_type"),
        ({**hello(), "n": 3}, "n", "unsupported_value"),
        ({**hello(), "metadata": {"thread": "not-a-uuid"}}, "metadata.thread", "invalid_value"),
    ],
)
def test_malformed_requests_are_400_naming_the_parameter(
    client: APIClient, body: dict[str, Any], param: str | None, code: str
) -> None:
    assert_openai_error(client.post(CHAT, body, format="json"), 400, code=code, param=param)
    assert nothing_was_stored()


def test_a_body_that_is_not_json_is_400(client: APIClient) -> None:
    response = client.post(CHAT, "{oops", content_type="application/json")
    assert "parse the JSON body" in assert_openai_error(response, 400)


def test_unknown_routes_and_methods_answer_in_openais_shape(client: APIClient) -> None:
    assert "Invalid URL" in assert_openai_error(client.post("/openai/v1/completions", {}), 404)
    assert_openai_error(client.get(CHAT), 405, code="method_not_allowed")


def test_a_thread_of_someone_else_cannot_be_continued(client: APIClient, tenant: Tenant, echo: Agent) -> None:
    # Same tenant, but a thread the caller takes no part in (members see their own threads).
    stranger = MembershipFactory.create(tenant=tenant, user=UserFactory.create())
    theirs = Thread.objects.create(tenant=tenant, created_by=stranger.user)

    response = chat(client, **hello(metadata={"thread": str(theirs.pk)}))

    assert_openai_error(response, 404, code="thread_not_found", param="metadata.thread")
    assert not Job.objects.exists()


# --- What a chat completion stores ----------------------------------------------------------------------------


def test_the_conversation_is_stored_as_a_thread_with_its_history_and_a_job(
    client: APIClient, echo: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No worker runs here: the request gives up at once, with the job left queued (the SDK tests run it for real).
    monkeypatch.setattr("aihub.interop.openai_api.JOB_WAIT_MAX_SECONDS", 0.0)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi, I am Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]},
    ]

    response = client.post(CHAT, {"model": "echo", "messages": messages}, format="json")

    assert_openai_error(response, 504, code="job_still_running")
    job = Job.objects.get()
    assert response["X-Aihub-Job"] == str(job.pk)
    assert response["X-Aihub-Thread"] == str(job.thread_id)
    assert job.agent == echo
    assert job.input["additional_instructions"] == "Be brief."
    stored = list(Message.objects.filter(thread=job.thread).order_by("created_at", "id").values_list("role", "content"))
    assert stored == [
        ("user", [{"type": "text", "text": "Hi, I am Ada."}]),
        ("assistant", [{"type": "text", "text": "Hello Ada."}]),
        ("user", [{"type": "text", "text": "What is my name?"}]),
    ]


def test_a_continued_thread_gets_only_the_new_message(
    client: APIClient, echo: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aihub.interop.openai_api.JOB_WAIT_MAX_SECONDS", 0.0)
    first = client.post(CHAT, hello(), format="json")
    thread = first["X-Aihub-Thread"]
    Job.objects.update(status="succeeded")  # the first turn is over

    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"},
    ]
    second = client.post(
        CHAT, {"model": "echo", "messages": messages}, format="json", headers={"X-Aihub-Thread": thread}
    )

    assert second["X-Aihub-Thread"] == thread
    assert list(Message.objects.filter(thread_id=thread).values_list("role", flat=True)) == ["user", "user"]
    assert Job.objects.count() == 2


def test_a_busy_thread_is_a_409_conflict(client: APIClient, echo: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aihub.interop.openai_api.JOB_WAIT_MAX_SECONDS", 0.0)
    thread = client.post(CHAT, hello(), format="json")["X-Aihub-Thread"]

    response = chat(client, **hello(metadata={"thread": thread}))

    assert_openai_error(response, 409, code="conflict")
    assert Job.objects.count() == 1


# The stream reads the log through database_sync_to_async, which closes a connection inside a test's transaction.
@pytest.mark.django_db(transaction=True)
def test_a_stream_of_a_job_that_waits_for_a_person_ends_with_an_error_frame(
    membership: Membership, echo: Agent
) -> None:
    job = turn_submit(agent=echo, user=membership.user, content="Refund order 42")
    # What the runner does when a tool needs approval: the job pauses and says so in the log.
    Job.objects.filter(pk=job.pk).update(status=JobStatus.REQUIRES_ACTION)
    thread_services.events_append(
        thread=job.thread, events=[NewEvent(EventType.JOB_REQUIRES_ACTION, {"id": str(job.pk)}, job_id=job.pk)]
    )

    async def frames() -> list[str]:
        return [frame async for frame in completion_chunks(job, "echo", include_usage=False)]

    sent = async_to_sync(frames)()

    assert json.loads(sent[0].removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    error = json.loads(sent[-2].removeprefix("data: "))["error"]
    assert error["code"] == "requires_action"
    assert f"jobs/{job.pk}/respond" in error["message"]
    assert sent[-1] == "data: [DONE]\n\n"


# --- Images sent inline -------------------------------------------------------------------------------------------


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def with_image(url: str, **extra: Any) -> dict[str, Any]:
    parts = [{"type": "text", "text": "What is in it?"}, {"type": "image_url", "image_url": {"url": url, **extra}}]
    return {"model": "echo", "messages": [{"role": "user", "content": parts}]}


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def stored_bytes(media_root: Path) -> list[bytes]:
    return [p.read_bytes() for p in media_root.rglob("*") if p.is_file()]


def test_an_inline_image_becomes_the_callers_file_and_the_message_refers_to_it(
    client: APIClient, membership: Membership, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aihub.interop.openai_api.JOB_WAIT_MAX_SECONDS", 0.0)

    response = chat(client, **with_image(data_url(png()), detail="low"))

    assert_openai_error(response, 504, code="job_still_running")
    image = File.objects.get()
    assert (image.tenant, image.uploaded_by, image.name, image.media_type) == (
        membership.tenant,
        membership.user,
        "image.png",
        "image/png",
    )
    assert stored_bytes(media_root) == [png()]
    message = Message.objects.get(thread_id=response["X-Aihub-Thread"])
    assert message.content == [
        {"type": "text", "text": "What is in it?"},
        {"type": "image", "file_id": str(image.pk), "name": "image.png", "media_type": "image/png", "detail": "low"},
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png,not-base64", "must be base64"),
        ("data:image/png;base64,@@@@", "not valid"),
        (data_url(make_pdf("Not a picture"), "image/png"), "application/pdf, not an image"),
        (data_url(b""), "holds no data"),
    ],
    ids=["not-base64", "bad-base64", "a-pdf", "empty"],
)
def test_a_bad_inline_image_is_400_naming_it_and_nothing_is_stored(
    client: APIClient, media_root: Path, url: str, message: str
) -> None:
    response = chat(client, **with_image(url))

    assert message in assert_openai_error(
        response, 400, code="invalid_value", param="messages[0].content[1].image_url.url"
    )
    assert nothing_was_stored() and not File.objects.exists() and stored_bytes(media_root) == []


def test_an_inline_image_over_the_file_limit_is_413(client: APIClient, media_root: Path, settings: Any) -> None:
    settings.AIHUB = {**settings.AIHUB, "FILE_MAX_BYTES": 10}
    response = chat(client, **with_image(data_url(png())))

    assert_openai_error(response, 413, code="file_too_large", param="messages[0].content[1].image_url.url")
    assert nothing_was_stored() and stored_bytes(media_root) == []


def test_an_inline_image_of_a_refused_turn_leaves_no_file_behind(
    client: APIClient, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aihub.interop.openai_api.JOB_WAIT_MAX_SECONDS", 0.0)
    thread = chat(client, **hello())["X-Aihub-Thread"]  # its job is still queued: the thread is busy

    response = chat(client, **with_image(data_url(png())), metadata={"thread": thread})

    assert_openai_error(response, 409, code="conflict")
    assert not File.objects.exists() and stored_bytes(media_root) == []
