"""Job webhooks: checked at submission, enqueued when the job ends, signed, retried with backoff, recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from agents.models import Agent
from aihub.access.models import Membership
from jobs import webhooks
from jobs.models import Job, WebhookDelivery
from jobs.tasks import deliver_webhook
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.file_server import FileServer, Route
from tests.helpers import ClientAs, assert_invalid, assert_problem, drain_sent_messages
from tests.jobs.helpers import run_now

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-0123456789"


def sent_deliveries() -> list[tuple[list[Any], Any]]:
    """Take every message off the default Celery queue; the (args, eta) of the deliver_webhook ones, in order."""
    return drain_sent_messages("jobs.deliver_webhook")


@pytest.fixture(autouse=True)
def _empty_queue() -> None:
    sent_deliveries()


@pytest.fixture
def receiver(file_server: FileServer, settings: Any) -> FileServer:
    """The loopback server's /hooks/ on the allowlist (private addresses allowed: it is loopback), and a key."""
    settings.AIHUB = {
        "WEBHOOK_URL_ALLOWLIST": [file_server.url("/hooks/")],
        "WEBHOOK_SECRET": SECRET,
        "OUTBOUND_ALLOW_PRIVATE_NETWORKS": True,
    }
    file_server.routes["/hooks/done"] = Route(status=204)
    return file_server


@pytest.fixture
def echo(membership: Membership) -> Agent:
    return AgentFactory.create(tenant=membership.tenant, slug="echo")


@pytest.fixture
def client(client_as: ClientAs, membership: Membership) -> APIClient:
    return client_as(membership)


def submit(client: APIClient, membership: Membership, webhook: str) -> Any:
    body = {"agent": "echo", "input": "hello", "webhook": webhook}
    return client.post(f"/api/v1/{membership.tenant.slug}/jobs/", body, format="json")


def finished_job(client: APIClient, membership: Membership, receiver: FileServer) -> Job:
    response = submit(client, membership, receiver.url("/hooks/done"))
    assert response.status_code == 202, response.content
    return run_now(Job.objects.get(pk=response.json()["id"]))


# --- Submission -------------------------------------------------------------------------------------------------


def test_a_webhook_needs_the_server_to_have_a_signing_key(
    client: APIClient, membership: Membership, echo: Agent, settings: Any
) -> None:
    settings.AIHUB = {"WEBHOOK_URL_ALLOWLIST": ["https://hooks.example.com/"]}
    body = assert_invalid(submit(client, membership, "https://hooks.example.com/x"), "webhook")
    assert "AIHUB_WEBHOOK_SECRET" in body["errors"][0]["message"]
    assert Job.objects.count() == 0


def test_a_webhook_off_the_allowlist_or_on_a_private_address_is_refused(
    client: APIClient, membership: Membership, echo: Agent, file_server: FileServer, settings: Any
) -> None:
    settings.AIHUB = {"WEBHOOK_URL_ALLOWLIST": [file_server.url("/hooks/")], "WEBHOOK_SECRET": SECRET}
    off_list = assert_invalid(submit(client, membership, file_server.url("/elsewhere")), "webhook")
    assert "allowlist" in off_list["errors"][0]["message"]
    private = assert_invalid(submit(client, membership, file_server.url("/hooks/done")), "webhook")
    assert "non-public address" in private["errors"][0]["message"]
    assert_invalid(submit(client, membership, "ftp://hooks.example.com/"), "webhook")
    assert Job.objects.count() == 0


def test_the_webhook_is_stored_on_the_job_and_shown(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer
) -> None:
    response = submit(client, membership, receiver.url("/hooks/done"))
    assert response.status_code == 202
    job = client.get(f"/api/v1/{membership.tenant.slug}/jobs/{response.json()['id']}/").json()
    assert job["webhook"] == receiver.url("/hooks/done")


# --- Delivery ---------------------------------------------------------------------------------------------------


def test_a_finished_job_enqueues_its_delivery_once_committed(
    client: APIClient,
    membership: Membership,
    echo: Agent,
    receiver: FileServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    response = submit(client, membership, receiver.url("/hooks/done"))
    job = Job.objects.get(pk=response.json()["id"])

    with django_capture_on_commit_callbacks(execute=True):
        run_now(job)

    assert sent_deliveries() == [([str(job.pk), 1], None)]


def test_the_delivery_is_a_signed_post_of_the_jobs_final_state(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer
) -> None:
    job = finished_job(client, membership, receiver)

    assert deliver_webhook(str(job.pk), 1) == "delivered"

    [request] = receiver.requests
    assert request.method == "POST"
    headers = request.headers
    assert headers["X-Aihub-Event"] == "job.succeeded"
    assert headers["X-Aihub-Delivery"] == f"{job.pk}:1"
    assert headers["Content-Type"] == "application/json"
    assert webhooks.webhook_verify(
        secret=SECRET, timestamp=headers["X-Aihub-Timestamp"], signature=headers["X-Aihub-Signature"], body=request.body
    )
    assert not webhooks.webhook_verify(
        secret="wrong",
        timestamp=headers["X-Aihub-Timestamp"],
        signature=headers["X-Aihub-Signature"],
        body=request.body,
    )
    payload = json.loads(request.body)
    assert payload["type"] == "job.succeeded"
    assert payload["job"]["id"] == str(job.pk)
    assert payload["job"]["agent"] == "echo"
    assert payload["job"]["output"] == job.output
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.attempt, delivery.succeeded, delivery.response_status, delivery.next_attempt_at) == (
        1,
        True,
        204,
        None,
    )


def test_an_old_or_tampered_signature_does_not_verify() -> None:
    body = b'{"type":"job.succeeded"}'
    signed_at = int(timezone.now().timestamp())
    signature = webhooks.webhook_sign(secret=SECRET, timestamp=signed_at, body=body)
    assert webhooks.webhook_verify(secret=SECRET, timestamp=str(signed_at), signature=signature, body=body)
    assert not webhooks.webhook_verify(secret=SECRET, timestamp=str(signed_at), signature=signature, body=body + b" ")
    assert not webhooks.webhook_verify(secret=SECRET, timestamp=str(signed_at - 1000), signature=signature, body=body)
    assert not webhooks.webhook_verify(secret=SECRET, timestamp="soon", signature=signature, body=body)


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer
) -> None:
    job = finished_job(client, membership, receiver)
    receiver.answer_in_turn("/hooks/done", 503, 500)

    assert deliver_webhook(str(job.pk), 1) == "retry scheduled"
    [(args, eta)] = sent_deliveries()
    assert args == [str(job.pk), 2]
    assert eta is not None  # scheduled later, not now
    assert deliver_webhook(str(job.pk), 2) == "retry scheduled"
    assert deliver_webhook(str(job.pk), 3) == "delivered"

    attempts = list(WebhookDelivery.objects.values_list("attempt", "response_status", "succeeded"))
    assert attempts == [(1, 503, False), (2, 500, False), (3, 204, True)]
    first, second, _ = WebhookDelivery.objects.all()
    assert first.next_attempt_at is not None and second.next_attempt_at is not None
    assert (second.next_attempt_at - second.created_at) > (first.next_attempt_at - first.created_at)


def test_the_backoff_doubles_up_to_its_cap(settings: Any) -> None:
    settings.AIHUB = {"WEBHOOK_RETRY_BASE_SECONDS": 10, "WEBHOOK_RETRY_MAX_SECONDS": 60}
    assert [webhooks.retry_delay(attempt) for attempt in range(1, 6)] == [10, 20, 40, 60, 60]


def test_deliveries_give_up_after_the_last_attempt(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer, settings: Any
) -> None:
    settings.AIHUB = {**settings.AIHUB, "WEBHOOK_MAX_ATTEMPTS": 2}
    job = finished_job(client, membership, receiver)
    receiver.answer_in_turn("/hooks/done", 500, 500)

    assert deliver_webhook(str(job.pk), 1) == "retry scheduled"
    assert deliver_webhook(str(job.pk), 2) == "given up"
    assert WebhookDelivery.objects.get(attempt=2).next_attempt_at is None


def test_a_client_error_is_not_retried(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer
) -> None:
    job = finished_job(client, membership, receiver)
    receiver.answer_in_turn("/hooks/done", 410)

    assert deliver_webhook(str(job.pk), 1) == "given up"
    assert sent_deliveries() == []
    assert WebhookDelivery.objects.get().error == "The receiver answered HTTP 410."


def test_an_unreachable_receiver_is_retried(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer, closed_port: int, settings: Any
) -> None:
    job = finished_job(client, membership, receiver)
    gone = f"http://127.0.0.1:{closed_port}/hooks/done"
    Job.objects.filter(pk=job.pk).update(webhook=gone)
    settings.AIHUB = {**settings.AIHUB, "WEBHOOK_URL_ALLOWLIST": [f"http://127.0.0.1:{closed_port}/hooks/"]}

    assert deliver_webhook(str(job.pk), 1) == "retry scheduled"
    delivery = WebhookDelivery.objects.get()
    assert delivery.response_status is None
    assert "could not be reached" in delivery.error


def test_a_receiver_taken_off_the_allowlist_gets_nothing_more(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer, settings: Any
) -> None:
    job = finished_job(client, membership, receiver)
    settings.AIHUB = {**settings.AIHUB, "WEBHOOK_URL_ALLOWLIST": []}

    assert deliver_webhook(str(job.pk), 1) == "given up"
    assert receiver.requests == []
    assert "allowlist" in WebhookDelivery.objects.get().error


def test_an_attempt_run_twice_posts_once(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer
) -> None:
    job = finished_job(client, membership, receiver)
    assert deliver_webhook(str(job.pk), 1) == "delivered"
    assert deliver_webhook(str(job.pk), 1) == "nothing to do"
    assert len(receiver.requests) == 1


def test_a_job_without_a_webhook_or_not_finished_delivers_nothing(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer
) -> None:
    queued = Job.objects.get(pk=submit(client, membership, receiver.url("/hooks/done")).json()["id"])
    assert deliver_webhook(str(queued.pk), 1) == "nothing to do"
    assert receiver.requests == []


# --- API and admin ----------------------------------------------------------------------------------------------


def test_the_attempts_are_listed_for_whoever_sees_the_job(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer, client_as: ClientAs
) -> None:
    job = finished_job(client, membership, receiver)
    receiver.answer_in_turn("/hooks/done", 503)
    deliver_webhook(str(job.pk), 1)
    deliver_webhook(str(job.pk), 2)
    url = f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/webhook-deliveries"

    body = client.get(url).json()

    assert [(d["attempt"], d["response_status"], d["succeeded"]) for d in body["items"]] == [
        (1, 503, False),
        (2, 204, True),
    ]
    assert body["items"][0]["next_attempt_at"] is not None
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    assert_problem(client_as(colleague).get(url), 404)


def test_operators_see_the_attempts_in_the_admin(
    client: APIClient, membership: Membership, echo: Agent, receiver: FileServer, admin_client: Any
) -> None:
    job = finished_job(client, membership, receiver)
    deliver_webhook(str(job.pk), 1)

    listing = admin_client.get("/admin/jobs/webhookdelivery/")
    page = admin_client.get(f"/admin/jobs/job/{job.pk}/change/")

    assert listing.status_code == 200 and receiver.url("/hooks/done") in listing.content.decode()
    assert page.status_code == 200 and "Webhook deliveries" in page.content.decode()
