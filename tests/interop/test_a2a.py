"""The A2A door through the official ``a2a-sdk`` client, against a real daphne and a real Celery worker.

One server and one worker per module, on the test's PostgreSQL database and Redis (the services run); each test
makes its own tenant, user, token and agents. Push notifications go to a loopback receiver on the webhook
allowlist. The conversions of jobs into tasks are also checked in process, on the embedded run too.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import channels.db
import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.server.context import ServerCallContext
from a2a.types import (
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskPushNotificationConfig,
    TaskState,
    UnsupportedOperationError,
)
from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone
from google.protobuf.json_format import ParseDict

from agents.models import Agent
from agents.tools import TOOLS, ToolContext, tool
from aihub.access.models import Membership
from aihub.access.principal import principal_for
from aihub.interop.a2a.convert import job_task
from aihub.interop.a2a.handler import CALLER, JobRequestHandler
from aihub.interop.a2a.handler import Caller as DoorCaller
from jobs import webhooks
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import ApiTokenFactory, MembershipFactory
from tests.file_server import FileServer, Route
from tests.jobs.helpers import drain_sent_jobs, run_now
from tests.servers import base_env, start_daphne, stop_server
from tests.workers import launch_worker, require_services_run, shared_database_url, wait_for

SECRET = "whsec-a2a-test-0123456789"
TOKEN = "client-token-123"
V1 = {"A2A-Version": "1.0"}


@dataclass(frozen=True)
class Door:
    base: str
    receiver: FileServer


@pytest.fixture(scope="module")
def door(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    """daphne and a worker on the test database; webhooks signed with SECRET and allowed to the receiver."""
    require_services_run()
    receiver = FileServer()
    receiver.thread.start()
    receiver.routes["/hooks/a2a"] = Route(status=204)
    push = {
        "AIHUB_WEBHOOK_SECRET": SECRET,
        "AIHUB_WEBHOOK_URL_ALLOWLIST": receiver.url("/hooks/"),
        "AIHUB_OUTBOUND_ALLOW_PRIVATE_NETWORKS": "true",
        "DATABASE_CONN_MAX_AGE": "0",
    }
    services = {
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": str(settings.REDIS_URL or settings.CELERY_BROKER_URL),
        "CELERY_BROKER_URL": str(settings.CELERY_BROKER_URL),
        "CELERY_EMBEDDED_WORKER": "false",
    }
    drain_sent_jobs()
    server, base = start_daphne(base_env(tmp_path_factory) | services | push)
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    worker = launch_worker(log=log, name=f"a2a-{os.getpid()}@localhost", env=push, concurrency=2)
    try:
        yield Door(base=base, receiver=receiver)
    finally:
        worker.stop()
        stop_server(server)
        receiver.httpd.shutdown()
        receiver.httpd.server_close()
        drain_sent_jobs()


@dataclass(frozen=True)
class Caller:
    tenant: str
    token: str


def caller_with(*agents: dict[str, Any]) -> Caller:
    membership = MembershipFactory.create()
    for fields in agents:
        AgentFactory.create(tenant=membership.tenant, **fields)
    token = ApiTokenFactory.create(user=membership.user)
    return Caller(tenant=membership.tenant.slug, token=token.raw)


@asynccontextmanager
async def a2a_client(door: Door, caller: Caller, agent: str, *, streaming: bool = True) -> AsyncIterator[Client]:
    """The SDK's client for the agent, from its card (resolved from the well-known path)."""
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {caller.token}"}, timeout=30) as http:
        card = await A2ACardResolver(http, f"{door.base}/a2a/{caller.tenant}/{agent}").get_agent_card()
        yield ClientFactory(ClientConfig(httpx_client=http, streaming=streaming)).create(card)


def user_message(text: str, **fields: Any) -> Message:
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)], **fields)


async def send_blocking(client: Client, request: SendMessageRequest) -> Task:
    responses = [response async for response in client.send_message(request)]
    assert len(responses) == 1 and responses[0].HasField("task"), responses
    return responses[0].task


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# --- Jobs as tasks, in process (first: before the module's server and worker start) ---------------------------


def a_job(status: JobStatus, **fields: Any) -> Job:
    now = timezone.now()
    return Job(
        pk=uuid.uuid4(),
        thread_id=uuid.uuid4(),
        agent=Agent(slug="echo"),
        agent_version=3,
        status=status,
        input={"message": str(uuid.uuid4()), "content": [{"type": "text", "text": "question"}]},
        created_at=now,
        **fields,
    )


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (JobStatus.QUEUED, TaskState.TASK_STATE_SUBMITTED),
        (JobStatus.RUNNING, TaskState.TASK_STATE_WORKING),
        (JobStatus.SUCCEEDED, TaskState.TASK_STATE_COMPLETED),
        (JobStatus.FAILED, TaskState.TASK_STATE_FAILED),
        (JobStatus.CANCELLED, TaskState.TASK_STATE_CANCELED),
        (JobStatus.EXPIRED, TaskState.TASK_STATE_FAILED),
    ],
)
def test_a_jobs_status_is_its_tasks_state(status: JobStatus, state: TaskState) -> None:
    assert job_task(a_job(status), artifacts=[]).status.state == state


def test_a_job_waiting_for_input_is_an_input_required_task_whose_message_asks_for_it() -> None:
    job = a_job(JobStatus.REQUIRES_ACTION, pending_action={"type": "input", "prompt": "Which city?"})
    task = job_task(job, artifacts=[])
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert task.status.message.parts[0].text == "Which city?"
    assert task.context_id == str(job.thread_id) and task.id == str(job.pk)


def test_a_failed_job_says_why_in_its_tasks_status() -> None:
    job = a_job(JobStatus.FAILED, error={"detail": "The model provider is unreachable."})
    assert job_task(job, artifacts=[]).status.message.parts[0].text == "The model provider is unreachable."


# --- Waiting for input, through the handler in process ------------------------------------------------------------
# A tool that needs approval exists only in this process (the worker would not know it), so the job runs here, on
# the test's thread, as the worker runs it; the requests go to the door's handler as the dispatcher calls it.


def approve_refund(context: ToolContext, order_id: str) -> dict[str, Any]:
    """Refund an order (a person approves every call)."""
    return {"refunded": order_id}


@pytest.fixture
def refund_tool() -> Iterator[None]:
    tool(requires_approval=True)(approve_refund)
    yield
    TOOLS.pop("approve_refund", None)


@pytest.mark.django_db
def test_a_task_waiting_for_approval_is_input_required_and_a_message_on_it_answers_it(
    membership: Membership, refund_tool: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The handler's ORM calls run on this thread, inside the test's transaction: channels' clean-up between calls
    # (meant for a fresh request) would close the connection holding it.
    monkeypatch.setattr(channels.db, "close_old_connections", lambda: None)
    agent = AgentFactory.create(tenant=membership.tenant, slug="cashier", class_name="tools", tools=["approve_refund"])
    caller = DoorCaller(
        principal=principal_for(user=membership.user, tenant_ref=membership.tenant.slug),
        agent=agent,
        base_url="http://testserver",
    )
    context = ServerCallContext(state={CALLER: caller, "headers": V1})
    handler = JobRequestHandler()
    immediately = SendMessageConfiguration(return_immediately=True)

    def send(message: Message) -> Task:
        request = SendMessageRequest(message=message, configuration=immediately)
        task = async_to_sync(handler.on_message_send)(request, context)
        assert isinstance(task, Task)
        return task

    def get(task_id: str) -> Task:
        task = async_to_sync(handler.on_get_task)(GetTaskRequest(id=task_id), context)
        assert task is not None
        return task

    submitted = send(user_message('use approve_refund {"order_id": "A-1"}'))
    run_now(Job.objects.get(pk=submitted.id))
    waiting = get(submitted.id)
    assert waiting.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert "approve_refund" in waiting.status.message.parts[0].text

    answered = send(user_message("approve", task_id=submitted.id, context_id=submitted.context_id))
    assert answered.id == submitted.id and answered.status.state == TaskState.TASK_STATE_SUBMITTED
    run_now(Job.objects.get(pk=submitted.id))
    done = get(submitted.id)
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    with pytest.raises(UnsupportedOperationError):  # an ended task takes no more messages
        send(user_message("again", task_id=submitted.id))


# --- The card ------------------------------------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_public_card_tells_the_agents_version_and_endpoint_and_only_the_extended_card_lists_its_tools(
    door: Door,
) -> None:
    helper = {
        "slug": "helper",
        "name": "Helper",
        "description": "Helps.",
        "class_name": "tools",
        "tools": ["calculator"],
    }
    caller = caller_with(helper)

    async def scenario() -> tuple[Any, Any]:
        async with httpx.AsyncClient(timeout=30) as anonymous:
            card = await A2ACardResolver(anonymous, f"{door.base}/a2a/{caller.tenant}/helper").get_agent_card()
        async with a2a_client(door, caller, "helper") as client:
            extended = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
        return card, extended

    card, extended = run(scenario())
    assert (card.name, card.description, card.version) == ("Helper", "Helps.", "1")
    assert card.supported_interfaces[0].url == f"{door.base}/a2a/{caller.tenant}/helper"
    assert card.supported_interfaces[0].protocol_binding == "JSONRPC"
    assert card.capabilities.streaming and card.capabilities.push_notifications
    assert card.capabilities.extended_agent_card
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    oauth2 = card.security_schemes["oauth2"].oauth2_security_scheme.flows.authorization_code
    assert oauth2.token_url == f"{door.base}/o/token/" and oauth2.pkce_required
    assert [skill.id for skill in card.skills] == ["helper"]
    assert [skill.id for skill in extended.skills] == ["helper", "tool:calculator"]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_disabled_or_unknown_agent_has_no_card(door: Door) -> None:
    caller = caller_with({"slug": "off", "enabled": False})
    for path in (f"/a2a/{caller.tenant}/off", f"/a2a/{caller.tenant}/nobody", "/a2a/no-such-tenant/off"):
        assert httpx.get(f"{door.base}{path}/.well-known/agent-card.json").status_code == 404


# --- Messages and tasks ----------------------------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_blocking_send_answers_with_the_completed_task_which_get_and_list_read_back(door: Door) -> None:
    caller = caller_with({"slug": "echo"})

    async def scenario() -> tuple[Task, Task, Task, Any]:
        async with a2a_client(door, caller, "echo", streaming=False) as client:
            first = await send_blocking(client, SendMessageRequest(message=user_message("hello there")))
            # The same context continues the conversation on the same thread: a second task.
            second = await send_blocking(
                client, SendMessageRequest(message=user_message("and again", context_id=first.context_id))
            )
            got = await client.get_task(GetTaskRequest(id=first.id, history_length=1))
            listed = await client.list_tasks(ListTasksRequest(context_id=first.context_id, page_size=1))
            return first, second, got, listed

    first, second, got, listed = run(scenario())
    assert first.status.state == TaskState.TASK_STATE_COMPLETED
    assert first.status.message.role == Role.ROLE_AGENT and first.status.message.parts[0].text == "hello there"
    assert [message.role for message in first.history] == [Role.ROLE_USER, Role.ROLE_AGENT]
    assert second.context_id == first.context_id and second.id != first.id
    job = Job.objects.get(pk=first.id)
    assert str(job.thread_id) == first.context_id and job.status == JobStatus.SUCCEEDED
    assert got.id == first.id and [m.parts[0].text for m in got.history] == ["hello there"]
    assert listed.total_size == 2 and [task.id for task in listed.tasks] == [second.id]
    assert listed.next_page_token


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_streamed_message_brings_status_and_artifact_updates_from_the_worker_until_it_completes(
    door: Door,
) -> None:
    caller = caller_with({"slug": "notes", "class_name": "tools", "tools": ["publish_note"]})

    async def scenario() -> tuple[list[StreamResponse], Task]:
        async with a2a_client(door, caller, "notes") as client:
            message = user_message("note: Shopping | milk at 5 pm")
            updates = [update async for update in client.send_message(SendMessageRequest(message=message))]
            task = await client.get_task(GetTaskRequest(id=updates[0].task.id))
            return updates, task

    updates, task = run(scenario())
    assert updates[0].HasField("task")
    kinds = [update.WhichOneof("payload") for update in updates]
    assert "artifact_update" in kinds
    artifact = next(update.artifact_update.artifact for update in updates if update.HasField("artifact_update"))
    assert artifact.name == "Shopping"
    assert updates[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.artifact_id for a in task.artifacts] == [artifact.artifact_id]
    assert any(part.url for part in task.artifacts[0].parts)  # the note's download


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_resubscribed_client_follows_a_running_task_to_its_cancellation(door: Door) -> None:
    caller = caller_with({"slug": "slow", "config": {"chunk_delay_seconds": 0.2}})
    words = " ".join(f"word{n}" for n in range(40))

    async def scenario() -> tuple[Task, list[StreamResponse], Task]:
        async with a2a_client(door, caller, "slow", streaming=False) as polling:
            request = SendMessageRequest(
                message=user_message(words), configuration=SendMessageConfiguration(return_immediately=True)
            )
            submitted = await send_blocking(polling, request)
        async with a2a_client(door, caller, "slow") as client:
            stream = client.subscribe(SubscribeToTaskRequest(id=submitted.id))
            seen = [await anext(stream)]
            while not seen[-1].status_update.status.message.parts:  # until the first words arrive
                seen.append(await anext(stream))
            cancelled = await client.cancel_task(CancelTaskRequest(id=submitted.id))
            seen += [update async for update in stream]
            with pytest.raises(TaskNotCancelableError):
                await client.cancel_task(CancelTaskRequest(id=submitted.id))
            with pytest.raises(UnsupportedOperationError):
                await anext(client.subscribe(SubscribeToTaskRequest(id=submitted.id)))
            return submitted, seen, cancelled

    submitted, seen, cancelled = run(scenario())
    assert submitted.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
    assert seen[0].task.id == submitted.id
    assert seen[-2].status_update.status.state == TaskState.TASK_STATE_WORKING
    assert seen[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert Job.objects.get(pk=submitted.id).status == JobStatus.CANCELLED


# --- Push notifications ---------------------------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_push_notifications_reach_the_receiver_signed_with_the_clients_token(door: Door) -> None:
    caller = caller_with({"slug": "echo"})
    hook = door.receiver.url("/hooks/a2a")
    config = TaskPushNotificationConfig(id="mine", url=hook, token=TOKEN)

    async def scenario() -> tuple[Task, TaskPushNotificationConfig, Any]:
        async with a2a_client(door, caller, "echo", streaming=False) as client:
            request = SendMessageRequest(
                message=user_message("push me"),
                configuration=SendMessageConfiguration(task_push_notification_config=config),
            )
            task = await send_blocking(client, request)
            stored = await client.get_task_push_notification_config(
                GetTaskPushNotificationConfigRequest(task_id=task.id, id="mine")
            )
            listed = await client.list_task_push_notification_configs(
                ListTaskPushNotificationConfigsRequest(task_id=task.id)
            )
            # The task has ended: a new config would never be used.
            late = TaskPushNotificationConfig(task_id=task.id, id="late", url=hook)
            with pytest.raises(UnsupportedOperationError):
                await client.create_task_push_notification_config(late)
            return task, stored, listed

    task, stored, listed = run(scenario())
    assert (stored.url, stored.token, stored.task_id) == (hook, TOKEN, task.id)
    assert [c.id for c in listed.configs] == ["mine"]
    received = wait_for(lambda: [r for r in door.receiver.requests if r.path == "/hooks/a2a"], what="the push")
    assert len(received) == 1
    push = received[0]
    headers = {name.lower(): value for name, value in push.headers.items()}
    assert headers["x-a2a-notification-token"] == TOKEN
    assert webhooks.webhook_verify(
        secret=SECRET,
        timestamp=headers["x-aihub-timestamp"],
        signature=headers["x-aihub-signature"],
        body=push.body,
    )
    body = json.loads(push.body)
    assert body["type"] == "job.succeeded"
    notified = ParseDict(body, StreamResponse(), ignore_unknown_fields=True)
    assert notified.task.id == task.id and notified.task.status.state == TaskState.TASK_STATE_COMPLETED


# --- Isolation and errors -------------------------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_another_tenants_task_is_not_found(door: Door) -> None:
    owner, stranger = caller_with({"slug": "echo"}), caller_with({"slug": "echo"})

    async def scenario() -> None:
        async with a2a_client(door, owner, "echo", streaming=False) as client:
            task = await send_blocking(client, SendMessageRequest(message=user_message("mine")))
        async with a2a_client(door, stranger, "echo") as client:
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError):
                await client.cancel_task(CancelTaskRequest(id=task.id))
            with pytest.raises(TaskNotFoundError):
                await anext(client.subscribe(SubscribeToTaskRequest(id=task.id)))
            assert (await client.list_tasks(ListTasksRequest())).total_size == 0

    run(scenario())
    # The stranger's token at the owner's agent: no such agent for it.
    answer = httpx.post(
        f"{door.base}/a2a/{owner.tenant}/echo",
        json={"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}},
        headers={"Authorization": f"Bearer {stranger.token}", **V1},
    )
    assert answer.status_code == 404 and answer.json()["error"]["code"] == -32600


def rpc(door: Door, caller: Caller, method: str, params: Any, *, token: str | None = None) -> httpx.Response:
    token = caller.token if token is None else token
    headers = {**V1, "Authorization": f"Bearer {token}"} if token else V1
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    return httpx.post(f"{door.base}/a2a/{caller.tenant}/echo", json=body, headers=headers, timeout=30)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_bad_requests_get_a2a_json_rpc_errors_never_a_500(door: Door) -> None:
    caller = caller_with({"slug": "echo"})

    def message(*parts: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": list(parts), **fields}}

    nobody = str(uuid.uuid4())
    cases = {
        "unknown method": ("tasks/explode", {}, -32601),
        "unparseable params": ("GetTask", {"id": "x", "historyLength": "many"}, -32602),
        "a file part": ("SendMessage", message({"url": "https://x.example/a.pdf"}), -32005),
        "no text": ("SendMessage", message({"text": "  "}), -32602),
        "a context of nobody": ("SendMessage", message({"text": "hi"}, contextId=nobody), -32602),
        "an unknown task": ("GetTask", {"id": nobody}, -32001),
        "a push config elsewhere": (
            "CreateTaskPushNotificationConfig",
            {"taskId": nobody, "url": "https://x/"},
            -32001,
        ),
    }
    for case, (method, params, code) in cases.items():
        answer = rpc(door, caller, method, params)
        assert answer.status_code == 200, case
        assert answer.json()["error"]["code"] == code, (case, answer.json())
    unauthenticated = rpc(door, caller, "GetTask", {"id": "x"}, token="")
    assert unauthenticated.status_code == 401 and "Bearer" in unauthenticated.headers["www-authenticate"]
    assert unauthenticated.json()["error"]["code"] == -32600
