"""Human in the loop: a tool that requires approval pauses the job in requires_action, the worker is freed, and
the person's answer (approve, reject, tool output, text) resumes the same job. Decided in code, never by the
model. Jobs run on the test's thread, as a worker runs them; the offline model calls a tool on "use <name>"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.utils import timezone

from agents.models import Agent
from agents.registry import _BUILT_INS, AgentClass
from agents.runtime import AgentOutput, AwaitInput, Reply
from agents.tools import TOOLS, ToolContext, tool
from aihub.access.models import Membership, Tenant
from aihub.api.problems import Conflict
from jobs import services
from jobs.models import Job, JobStatus
from tests.agents.factories import AgentFactory
from tests.factories import MembershipFactory
from tests.helpers import ClientAs, assert_invalid, assert_problem
from tests.jobs.helpers import assert_gap_free, assistant_messages, event_types, run_now
from threads import services as thread_services
from threads.content import text_of
from threads.models import Event

pytestmark = pytest.mark.django_db

REFUND_REQUEST = 'use issue_refund {"order_id": "A-1", "amount": 20}'

# What the approval-gated tool did; a tool that must not run on the model's say-so leaves this empty.
refunds_issued: list[dict[str, Any]] = []


def issue_refund(context: ToolContext, order_id: str, amount: int) -> dict[str, Any]:
    """Refund an order (money leaves the company: a person approves every call)."""
    refunds_issued.append({"order_id": order_id, "amount": amount})
    return {"refund_id": f"R-{order_id}", "amount": amount}


@pytest.fixture(autouse=True)
def _refund_tool() -> Iterator[None]:
    # Registered for this module's tests only: other modules list the tool registry and expect the built-ins.
    tool(requires_approval=True)(issue_refund)
    refunds_issued.clear()
    yield
    TOOLS.pop("issue_refund", None)


@pytest.fixture
def cashier(tenant: Tenant) -> Agent:
    return AgentFactory.create(tenant=tenant, slug="cashier", class_name="tools", tools=["calculator", "issue_refund"])


def submit(agent: Agent, user: User, content: Any = REFUND_REQUEST, **kwargs: Any) -> Job:
    job, created = services.job_submit(agent=agent, user=user, content=content, **kwargs)
    assert created
    return job


def paused(agent: Agent, user: User, **kwargs: Any) -> Job:
    job = run_now(submit(agent, user, **kwargs))
    assert job.status == JobStatus.REQUIRES_ACTION
    return job


def answer(job: Job, user: User | None = None, **response: Any) -> Job:
    return services.job_respond(job=job, user=user or job.created_by, response=response)


def pending(job: Job) -> dict[str, Any]:
    assert job.pending_action is not None, f"{job} waits for nothing"
    return dict(job.pending_action)


def result_of(job: Job) -> Any:
    """The tool result the offline model restated in its answer ("The result is <JSON>.")."""
    text = job.output["content"][0]["text"]
    assert text.startswith("The result is "), text
    return json.loads(text.removeprefix("The result is ").removesuffix("."))


def tool_completed(job: Job) -> dict[str, Any]:
    [event] = Event.objects.filter(job_id=job.pk, type="tool.completed")
    return dict(event.data)


def later(seconds: float) -> Any:
    return timezone.now() + timedelta(seconds=seconds)


# --- Pausing --------------------------------------------------------------------------------------------------


def test_a_tool_that_requires_approval_pauses_the_job_instead_of_running(cashier: Agent, user: User) -> None:
    job = run_now(submit(cashier, user))

    assert job.status == JobStatus.REQUIRES_ACTION
    assert refunds_issued == []
    request = pending(job)
    assert request["type"] == "tool_approval"
    assert request["tool_call"]["name"] == "issue_refund"
    assert request["tool_call"]["arguments"] == {"order_id": "A-1", "amount": 20}
    assert request["tool_call"]["id"].startswith("call_")
    assert request["requested_at"]
    # The worker is released: nobody holds or heartbeats the job while it waits.
    assert (job.worker, job.heartbeat_at, job.finished_at) == ("", None, None)
    assert job.usage["input_tokens"] > 0


def test_the_pause_is_announced_with_the_request_after_what_was_complete(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)

    types = event_types(job.thread)
    assert types[-3:] == ["llm.started", "llm.completed", "job.requires_action"]
    assert "tool.started" not in types
    event = Event.objects.get(job_id=job.pk, type="job.requires_action")
    assert event.data["status"] == "requires_action"
    assert event.data["pending_action"] == job.pending_action
    assert assistant_messages(job) == []
    assert_gap_free(job.thread)


def test_the_conversation_so_far_is_saved_to_resume_from(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)

    assert job.resume_state is not None
    state = job.resume_state["state"]
    assert state["step"] == 0
    assert [m["role"] for m in state["messages"]] == ["user", "assistant"]
    assert state["messages"][-1]["tool_calls"][0]["id"] == pending(job)["tool_call"]["id"]
    assert [call["name"] for call in state["calls"]] == ["issue_refund"]


def test_tools_without_approval_still_run_at_once(cashier: Agent, user: User) -> None:
    job = run_now(submit(cashier, user, "calculate 6 * 7"))

    assert job.status == JobStatus.SUCCEEDED
    assert "42" in job.output["content"][0]["text"]
    assert job.pending_action is None


# --- Resuming -------------------------------------------------------------------------------------------------


def test_approving_runs_the_tool_and_the_same_job_carries_on_to_success(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)
    usage_before_pause = job.usage["input_tokens"]

    queued = answer(job, action="approve")
    assert (queued.pk, queued.status, queued.pending_action) == (job.pk, JobStatus.QUEUED, None)
    job = run_now(queued)

    assert job.status == JobStatus.SUCCEEDED
    assert refunds_issued == [{"order_id": "A-1", "amount": 20}]
    completed = tool_completed(job)
    assert completed["output"] == {"refund_id": "R-A-1", "amount": 20}
    assert (completed["is_error"], completed["approved"]) == (False, True)
    assert result_of(job) == {"refund_id": "R-A-1", "amount": 20}
    assert job.usage["input_tokens"] > usage_before_pause, "the usage of both runs is counted"
    assert (job.pending_action, job.resume_state) == (None, None)


def test_the_event_log_of_a_resumed_job_is_gap_free_and_in_order(cashier: Agent, user: User) -> None:
    job = run_now(answer(paused(cashier, user), action="approve"))

    job_events = [t for t in event_types(job.thread) if t.startswith(("job.", "tool."))]
    assert job_events == [
        "job.queued",
        "job.started",
        "job.requires_action",
        "job.queued",
        "job.started",
        "tool.started",
        "tool.completed",
        "job.succeeded",
    ]
    resumed = Event.objects.filter(job_id=job.pk, type="job.queued").order_by("sequence").last()
    assert resumed is not None
    assert resumed.data["resumed"] is True
    assert resumed.data["response"] == {"action": "approve"}
    assert_gap_free(job.thread)


def test_rejecting_tells_the_model_why_and_never_runs_the_tool(cashier: Agent, user: User) -> None:
    job = run_now(answer(paused(cashier, user), action="reject", reason="Refunds need a manager."))

    assert job.status == JobStatus.SUCCEEDED
    assert refunds_issued == []
    completed = tool_completed(job)
    assert (completed["is_error"], completed["rejected"]) == (True, True)
    assert "tool.started" not in event_types(job.thread)
    # The offline model restates the tool result it was given: the rejection and its reason.
    answer_text = job.output["content"][0]["text"]
    assert "rejected" in answer_text
    assert "Refunds need a manager." in answer_text
    assert_gap_free(job.thread)


def test_a_supplied_tool_output_is_used_in_place_of_running_the_tool(cashier: Agent, user: User) -> None:
    supplied = {"refund_id": "R-manual", "note": "issued by hand"}

    job = run_now(answer(paused(cashier, user), action="tool_output", output=supplied))

    assert job.status == JobStatus.SUCCEEDED
    assert refunds_issued == []
    completed = tool_completed(job)
    assert (completed["output"], completed["supplied"]) == (supplied, True)
    assert result_of(job) == supplied


# --- Answers that do not fit ----------------------------------------------------------------------------------


def test_a_text_answer_to_a_tool_approval_is_invalid(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)

    with pytest.raises(ValidationError):
        answer(job, action="text", text="yes please")

    job.refresh_from_db()
    assert job.status == JobStatus.REQUIRES_ACTION


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.CANCELLED])
def test_answering_a_job_that_is_not_waiting_is_a_conflict(cashier: Agent, user: User, status: JobStatus) -> None:
    job = submit(cashier, user)
    Job.objects.filter(pk=job.pk).update(status=status)

    with pytest.raises(Conflict):
        answer(job, action="approve")


def test_answering_twice_is_a_conflict_and_resumes_once(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)
    answer(job, action="approve")
    events_before = Event.objects.count()

    with pytest.raises(Conflict):
        answer(job, action="reject")

    assert Event.objects.count() == events_before
    assert run_now(job).status == JobStatus.SUCCEEDED
    assert len(refunds_issued) == 1


# --- Waiting: other jobs, cancel, expiry ----------------------------------------------------------------------


def test_the_threads_next_job_waits_until_the_paused_job_is_done(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)
    follow_up = submit(cashier, user, "calculate 1 + 1", thread=job.thread, busy="enqueue")

    assert services.job_claim(job_id=follow_up.pk, worker="w1") is None

    run_now(answer(job, action="approve"))
    assert run_now(follow_up).status == JobStatus.SUCCEEDED


def test_a_waiting_job_can_be_cancelled(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)

    services.job_cancel(job=job)

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.pending_action is None
    assert event_types(job.thread)[-1] == "job.cancelled"
    with pytest.raises(Conflict):
        answer(job, action="approve")
    assert refunds_issued == []
    assert_gap_free(job.thread)


def test_the_janitor_expires_a_job_waiting_past_its_expiry(cashier: Agent, user: User) -> None:
    job = paused(cashier, user, expires_at=later(60))

    counts = services.janitor_run(now=later(120))

    job.refresh_from_db()
    assert counts["expired"] == 1
    assert job.status == JobStatus.EXPIRED
    assert event_types(job.thread)[-1] == "job.expired"
    assert_gap_free(job.thread)


def test_an_answer_after_the_expiry_is_a_conflict(cashier: Agent, user: User) -> None:
    job = paused(cashier, user, expires_at=later(60))
    Job.objects.filter(pk=job.pk).update(expires_at=later(-1))

    with pytest.raises(Conflict):
        answer(job, action="approve")


def test_a_worker_lost_after_resuming_is_retried_from_the_same_answer(cashier: Agent, user: User) -> None:
    job = paused(cashier, user)
    answer(job, action="approve")
    services.job_claim(job_id=job.pk, worker="w-dies")  # claimed, then the worker is killed before it runs

    services.janitor_run(now=later(3600))

    job = run_now(job)
    assert job.status == JobStatus.SUCCEEDED
    assert refunds_issued == [{"order_id": "A-1", "amount": 20}]


# --- Another class asking for text ----------------------------------------------------------------------------


class AskNameAgent(AgentClass):
    """Asks the user for their name, then greets them: the same hook as the tool approval, with text."""

    name = "ask-name"
    description = "Asks for a name."
    needs_model = False

    def execute(self) -> Iterator[AgentOutput]:
        if self.run.resume is None:
            yield AwaitInput(request={"type": "input", "prompt": "What is your name?"}, state={"asked": 1})
            return
        yield Reply([{"type": "text", "text": f"Hello, {self.run.resume.response['text']}!"}])


@pytest.fixture
def ask_name(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Agent:
    monkeypatch.setitem(_BUILT_INS, AskNameAgent.name, AskNameAgent)
    return AgentFactory.create(tenant=tenant, slug="greeter", class_name="ask-name")


def test_an_agent_can_ask_for_text_and_gets_it(ask_name: Agent, user: User) -> None:
    job = paused(ask_name, user)
    assert pending(job)["type"] == "input"
    assert pending(job)["prompt"] == "What is your name?"

    with pytest.raises(ValidationError):
        answer(job, action="approve")
    job = run_now(answer(job, action="text", text="Ada"))

    assert job.status == JobStatus.SUCCEEDED
    assert job.output["content"] == [{"type": "text", "text": "Hello, Ada!"}]
    assert_gap_free(job.thread)


# --- The API --------------------------------------------------------------------------------------------------


def respond_url(membership: Membership, job: Job) -> str:
    return f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/respond"


@pytest.fixture
def api_cashier(membership: Membership) -> Agent:
    return AgentFactory.create(
        tenant=membership.tenant, slug="cashier", class_name="tools", tools=["calculator", "issue_refund"]
    )


def test_the_creator_approves_over_the_api_and_the_job_resumes(
    client_as: ClientAs, membership: Membership, api_cashier: Agent
) -> None:
    client = client_as(membership)
    job = paused(api_cashier, membership.user)
    detail = client.get(f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/").json()
    assert detail["status"] == "requires_action"
    assert detail["pending_action"]["tool_call"]["name"] == "issue_refund"

    response = client.post(respond_url(membership, job), {"action": "approve"}, format="json")

    assert response.status_code == 202, response.content
    assert (response.json()["id"], response.json()["status"]) == (str(job.pk), "queued")
    assert response.json()["pending_action"] is None
    assert run_now(job).status == JobStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"action": "dance"}, ["action"]),
        ({}, ["action"]),
        ({"action": "tool_output"}, ["output"]),
        ({"action": "approve", "reason": "why not"}, ["reason"]),
        ({"action": "reject", "output": 1}, ["output"]),
        ({"action": "approve", "colour": "blue"}, ["colour"]),
        ({"action": "text", "text": "yes"}, ["action"]),
    ],
)
def test_bad_answers_are_validation_problems(
    client_as: ClientAs, membership: Membership, api_cashier: Agent, body: dict[str, Any], fields: list[str]
) -> None:
    job = paused(api_cashier, membership.user)

    assert_invalid(client_as(membership).post(respond_url(membership, job), body, format="json"), *fields)

    job.refresh_from_db()
    assert job.status == JobStatus.REQUIRES_ACTION


def test_answering_a_running_or_finished_job_over_the_api_is_a_conflict(
    client_as: ClientAs, membership: Membership, api_cashier: Agent
) -> None:
    client = client_as(membership)
    job = submit(api_cashier, membership.user)
    assert services.job_claim(job_id=job.pk, worker="w1") is not None

    assert_problem(client.post(respond_url(membership, job), {"action": "approve"}, format="json"), 409)

    services.job_finish(job=job, status=JobStatus.SUCCEEDED)
    assert_problem(client.post(respond_url(membership, job), {"action": "approve"}, format="json"), 409)


def test_answering_twice_over_the_api_is_a_conflict(
    client_as: ClientAs, membership: Membership, api_cashier: Agent
) -> None:
    client = client_as(membership)
    job = paused(api_cashier, membership.user)

    assert client.post(respond_url(membership, job), {"action": "approve"}, format="json").status_code == 202
    assert_problem(client.post(respond_url(membership, job), {"action": "reject"}, format="json"), 409)


def test_only_the_creator_or_a_jobs_admin_may_answer(
    client_as: ClientAs, membership: Membership, api_cashier: Agent
) -> None:
    job = paused(api_cashier, membership.user)
    colleague = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    thread_services.thread_member_add(thread=job.thread, user=colleague.user)
    stranger = MembershipFactory.create(tenant=membership.tenant, roles=["member"])
    admin = MembershipFactory.create(tenant=membership.tenant, roles=["admin"])

    # The colleague sees the job (a member of its thread) but did not start it; the stranger does not see it.
    assert client_as(colleague).get(f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/").status_code == 200
    assert_problem(client_as(colleague).post(respond_url(membership, job), {"action": "approve"}, format="json"), 403)
    assert_problem(client_as(stranger).post(respond_url(membership, job), {"action": "approve"}, format="json"), 404)
    response = client_as(admin).post(respond_url(membership, job), {"action": "approve"}, format="json")
    assert response.status_code == 202, response.content


def test_the_respond_route_is_in_the_schema_with_examples(api_client: Any) -> None:
    schema = api_client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()

    operation = schema["paths"]["/api/v1/{tenant}/jobs/{id}/respond"]["post"]
    assert len(operation["requestBody"]["content"]["application/json"]["examples"]) == 4
    assert operation["responses"]["202"]["content"]["application/json"]["examples"]
    assert {"400", "403", "409"} <= set(operation["responses"])


# --- Client tools: the client runs them, the job waits for their output ---------------------------------------

CONFIRM = {
    "name": "confirm_order",
    "description": "Ask the user to confirm the order.",
    "parameters": {"type": "object", "properties": {"item": {"type": "string"}}, "required": ["item"]},
}


def test_a_call_to_a_client_tool_pauses_the_job_and_its_output_resumes_it(cashier: Agent, user: User) -> None:
    job = paused(cashier, user, content='use confirm_order {"item": "tea"}', client_tools=[CONFIRM])

    assert job.pending_action is not None
    assert job.pending_action["type"] == "client_tool"
    assert job.pending_action["tool_call"]["name"] == "confirm_order"
    assert job.pending_action["tool_call"]["arguments"] == {"item": "tea"}
    assert job.input["client_tools"] == [CONFIRM]

    resumed = run_now(services.job_respond(job=job, user=user, response={"action": "tool_output", "output": "yes"}))

    assert resumed.status == JobStatus.SUCCEEDED
    assert [text_of(m.content) for m in assistant_messages(resumed)] == ["The result is yes."]
    assert tool_completed(resumed)["supplied"] is True


def test_a_client_tool_may_only_be_answered_with_its_output_or_a_rejection(cashier: Agent, user: User) -> None:
    job = paused(cashier, user, content='use confirm_order {"item": "tea"}', client_tools=[CONFIRM])

    with pytest.raises(ValidationError):
        services.job_respond(job=job, user=user, response={"action": "approve"})


def test_client_tools_may_not_shadow_the_agents_own(cashier: Agent, user: User) -> None:
    shadow = {**CONFIRM, "name": "calculator"}

    with pytest.raises(ValidationError, match="taken"):
        services.job_submit(agent=cashier, user=user, content="hi", client_tools=[shadow])
    assert not Job.objects.exists()
