"""Per-request model credentials (client_config): the caller's own OpenAI-compatible endpoint and key for one
job, against a loopback server that records what it was sent. The key is never stored, logged or shown."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.core import serializers
from django.core.cache import cache
from rest_framework.test import APIClient

from agents.models import Agent, ModelProvider
from agents.providers.base import ClientConfig
from aihub.access import services as access_services
from aihub.access.models import Membership, Tenant
from jobs import credentials
from jobs.models import FINAL_STATUSES, Job, JobStatus
from jobs.tasks import run_job
from tests.agents.conftest import LOOPBACK_API_KEY
from tests.agents.factories import AgentFactory
from tests.agents.openai_server import OpenAIServer, Status
from tests.factories import MembershipFactory, TenantFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.workers import Worker, wait_for
from threads.models import Event, Message, Thread

pytestmark = pytest.mark.django_db

CLIENT_KEY = "sk-client-own-7f3a9c2e1b"
HEADER_SECRET = "org-secret-5d1e"


@pytest.fixture
def tenant(db: None) -> Tenant:
    return TenantFactory.create()


def member_with_rules(tenant: Tenant, *rules: str) -> Membership:
    access_services.role_create(tenant=tenant, name="byok", rules=list(rules))
    return MembershipFactory.create(tenant=tenant, roles=["byok"])


@pytest.fixture
def byok(tenant: Tenant) -> Membership:
    """A member whose role names the permission (nothing else grants it)."""
    return member_with_rules(tenant, "aihub.user.>", "aihub.user.client-config")


@pytest.fixture
def client(client_as: ClientAs, byok: Membership) -> APIClient:
    return client_as(byok)


@pytest.fixture(autouse=True)
def allowlisted(settings: Any, openai_server: OpenAIServer) -> None:
    # Private addresses allowed: the loopback server is on 127.0.0.1.
    settings.AIHUB = {"CLIENT_CONFIG_URL_ALLOWLIST": [openai_server.base_url], "OUTBOUND_ALLOW_PRIVATE_NETWORKS": True}


@pytest.fixture
def chatty(tenant: Tenant, loopback_provider: ModelProvider) -> Agent:
    """A chat agent on the operator's loopback provider (whose key is LOOPBACK_API_KEY)."""
    return AgentFactory.create(tenant=tenant, slug="chatty", class_name="chat", model="loopback/gpt-test")


def url(agent: Agent) -> str:
    return f"/api/v1/{agent.tenant.slug}/agents/{agent.slug}/messages"


def config(server: OpenAIServer, **extra: Any) -> dict[str, Any]:
    return {"base_url": server.base_url, "api_key": CLIENT_KEY, "default_headers": {"X-Org": HEADER_SECRET}, **extra}


def submit(client: APIClient, agent: Agent, **body: Any) -> Any:
    return client.post(url(agent), {"content": "Hello", **body}, format="json")


def stored_rows(job: Job) -> str:
    """Everything the database holds about the job and its thread, as a dump would write it."""
    querysets = [
        Job.objects.filter(pk=job.pk),
        Thread.objects.filter(pk=job.thread_id),
        Message.objects.filter(thread_id=job.thread_id),
        Event.objects.filter(thread_id=job.thread_id),
    ]
    return "".join(serializers.serialize("json", queryset) for queryset in querysets)


def assert_secret_nowhere(*texts: str) -> None:
    for text in texts:
        assert CLIENT_KEY not in text
        assert HEADER_SECRET not in text


def test_the_job_calls_the_clients_endpoint_with_the_clients_key_and_headers(
    client: APIClient, chatty: Agent, openai_server: OpenAIServer
) -> None:
    openai_server.reply_text("Hello from your own model.")

    response = submit(client, chatty, client_config=config(openai_server))
    assert response.status_code == 202, response.content
    run_job(response.json()["id"])

    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    (request,) = openai_server.requests
    assert request.headers["authorization"] == f"Bearer {CLIENT_KEY}"  # not the operator's LOOPBACK_API_KEY
    assert request.headers["x-org"] == HEADER_SECRET
    assert request.body["model"] == "gpt-test"
    # Accounted to the client's endpoint, not priced as the operator's model.
    assert job.model == "client_config/gpt-test"


def test_the_key_appears_nowhere_in_the_api_the_event_log_the_database_or_the_logs(
    client: APIClient,
    chatty: Agent,
    openai_server: OpenAIServer,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_server.reply_text("Hello.")

    submitted = submit(client, chatty, client_config=config(openai_server))
    job_id = submitted.json()["id"]
    sealed = cache.get(f"jobs:client-config:{job_id}")
    assert isinstance(sealed, bytes)
    with django_capture_on_commit_callbacks(execute=True):  # the job's end deletes the credentials on commit
        run_job(job_id)

    job = Job.objects.get(pk=job_id)
    tenant = chatty.tenant.slug
    detail = client.get(f"/api/v1/{tenant}/jobs/{job_id}/")
    report = client.get(f"/api/v1/{tenant}/jobs/{job_id}/report")
    events = client.get(f"/api/v1/{tenant}/threads/{job.thread_id}/events/?limit=1000")
    assert detail.status_code == report.status_code == events.status_code == 200
    assert_secret_nowhere(
        submitted.content.decode(),
        detail.content.decode(),
        report.content.decode(),
        events.content.decode(),
        stored_rows(job),
        sealed.decode(),  # in the cache only encrypted
        caplog.text,
    )
    # Gone with the job.
    assert cache.get(f"jobs:client-config:{job_id}") is None


def test_without_the_permission_client_config_is_a_403_and_starts_nothing(
    client_as: ClientAs, tenant: Tenant, chatty: Agent, openai_server: OpenAIServer
) -> None:
    # Every default role is refused: `aihub.user.>` and `aihub.admin.>` do not name the permission.
    for role in ("member", "admin"):
        member = MembershipFactory.create(tenant=tenant, roles=[role])
        body = assert_problem(submit(client_as(member), chatty, client_config=config(openai_server)), 403)
        assert "aihub.user.client-config" in body["detail"]
        assert_secret_nowhere(json.dumps(body))
    assert not Job.objects.exists()
    assert not openai_server.requests


def test_a_base_url_outside_the_allowlist_is_a_400_naming_the_field(
    client: APIClient, chatty: Agent, openai_server: OpenAIServer
) -> None:
    for base_url in ("https://llm.example.com/v1", f"http://user:{CLIENT_KEY}@127.0.0.1/v1"):
        response = submit(client, chatty, client_config=config(openai_server, base_url=base_url))
        body = assert_invalid(response, "client_config.base_url")
        assert_secret_nowhere(response.content.decode())
        assert body["errors"][0]["message"]
    assert not Job.objects.exists()


def test_malformed_client_config_fields_are_400s_that_never_quote_the_secret(
    client: APIClient, chatty: Agent, openai_server: OpenAIServer
) -> None:
    cases = [
        ({"base_url": openai_server.base_url}, "client_config.api_key"),
        (config(openai_server, default_headers={"Bad Header": HEADER_SECRET}), "client_config.default_headers"),
        (
            config(openai_server, default_headers={"X-Org": f"{HEADER_SECRET}\r\nX-Evil: 1"}),
            "client_config.default_headers",
        ),
        (config(openai_server, colour="red"), "client_config.colour"),
    ]
    for client_config, field in cases:
        response = submit(client, chatty, client_config=client_config)
        assert_invalid(response, field)
        assert_secret_nowhere(response.content.decode())
    assert not Job.objects.exists()


def test_a_provider_error_that_echoes_the_key_is_redacted(
    client: APIClient, chatty: Agent, openai_server: OpenAIServer
) -> None:
    openai_server.reply(Status(401, f"Incorrect API key provided: {CLIENT_KEY} (org {HEADER_SECRET})"))

    response = submit(client, chatty, client_config=config(openai_server))
    run_job(response.json()["id"])

    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert "401" in job.error["detail"]
    assert "[redacted]" in job.error["detail"]
    assert_secret_nowhere(json.dumps(job.error), stored_rows(job))


def test_a_job_whose_sealed_credentials_are_gone_fails_instead_of_using_the_operators_provider(
    client: APIClient, chatty: Agent, openai_server: OpenAIServer
) -> None:
    response = submit(client, chatty, client_config=config(openai_server))
    credentials.client_config_drop(job_id=response.json()["id"])

    run_job(response.json()["id"])

    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error["status"] == 410
    assert job.error["type"].endswith("client-config-unavailable")
    assert not openai_server.requests


def test_sealed_credentials_open_only_for_their_own_job(openai_server: OpenAIServer) -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    credentials.client_config_seal(job_id=mine, config=ClientConfig(base_url="http://x/v1", api_key=CLIENT_KEY))
    cache.set(f"jobs:client-config:{other}", cache.get(f"jobs:client-config:{mine}"))

    opened = credentials.client_config_open(job_id=mine)
    assert opened is not None and opened.api_key == CLIENT_KEY
    assert CLIENT_KEY not in repr(opened)
    assert credentials.client_config_open(job_id=other) is None


def test_without_client_config_the_operators_provider_and_key_are_used(
    client: APIClient, chatty: Agent, openai_server: OpenAIServer
) -> None:
    openai_server.reply_text("Hi.")

    run_job(submit(client, chatty).json()["id"])

    assert openai_server.requests[0].headers["authorization"] == f"Bearer {LOOPBACK_API_KEY}"


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_key_reaches_a_separate_worker_process_sealed_and_is_gone_after(
    client: APIClient, chatty: Agent, openai_server: OpenAIServer, start_worker: Callable[..., Worker]
) -> None:
    worker = start_worker()
    openai_server.reply_text("Hello from a worker.")

    response = submit(client, chatty, client_config=config(openai_server))
    job = wait_for(
        lambda: Job.objects.filter(pk=response.json()["id"], status__in=FINAL_STATUSES).first(),
        timeout=20,
        what=f"the job (worker log:\n{worker.output()})",
    )

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {CLIENT_KEY}"
    assert cache.get(f"jobs:client-config:{job.pk}") is None
    assert_secret_nowhere(stored_rows(job), worker.output())
