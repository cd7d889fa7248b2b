"""Running one claimed job: the agent class yields, the runner persists events in order and finishes the job."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from pydantic import ValidationError

from agents.models import AgentVersion
from agents.providers.base import ProviderError
from agents.registry import AgentClass, get_agent_class
from agents.runtime import AgentRun, Emit, Reply, TurnEnded
from jobs import services
from jobs.models import CancelMode, Job, JobStatus
from threads import services as thread_services
from threads.events import NewEvent
from threads.models import Message, MessageRole
from threads.selectors import message_list

logger = logging.getLogger(__name__)


class _EventWriter:
    """Persists a run's events in order; ``llm.chunk`` events are batched so a token stream is not a write each.

    Every flush also heartbeats the job and reads back any cancellation request, so one round trip does both.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.pending: list[NewEvent] = []
        self.last_flush = time.monotonic()
        self.last_heartbeat = time.monotonic()
        self.cancel_requested = ""

    def add(self, event: Emit) -> None:
        self.pending.append(NewEvent(event.type, event.data, job_id=self.job.id, agent_id=self.job.agent_id))
        batch_full = len(self.pending) >= settings.JOBS_CHUNK_BATCH_SIZE
        batch_old = time.monotonic() - self.last_flush >= settings.JOBS_CHUNK_BATCH_SECONDS
        if event.type != "llm.chunk" or batch_full or batch_old:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            thread_services.events_append(thread=self.job.thread, events=self.pending)
            self.pending = []
        self.last_flush = time.monotonic()
        if time.monotonic() - self.last_heartbeat >= settings.JOBS_HEARTBEAT_SECONDS:
            self.heartbeat()

    def heartbeat(self) -> None:
        self.cancel_requested = services.job_heartbeat(job=self.job)
        self.last_heartbeat = time.monotonic()


def _usage_of(events: list[Emit]) -> dict[str, int]:
    totals = {"input_tokens": 0, "output_tokens": 0}
    for event in events:
        for key in totals:
            totals[key] += int(event.data.get("usage", {}).get(key, 0))
    totals["total_tokens"] = totals["input_tokens"] + totals["output_tokens"]
    return totals


def _fail(job: Job, detail: str, *, status: int = 500, type_slug: str = "job-failed", usage: Any = None) -> None:
    services.job_finish(
        job=job,
        status=JobStatus.FAILED,
        error=services.job_fail_problem(job=job, detail=detail, status=status, type_slug=type_slug),
        usage=usage,
    )


def build_run(job: Job, should_stop: Any) -> tuple[type[AgentClass], AgentRun]:
    """The job's agent class and its run, from the agent version the job was submitted with."""
    snapshot = AgentVersion.objects.get(agent_id=job.agent_id, version=job.agent_version).snapshot
    agent_class = get_agent_class(snapshot["class_name"])
    if agent_class is None:
        raise LookupError(f"Agent class {snapshot['class_name']!r} is not installed.")
    config = agent_class.Config.model_validate(snapshot["config"])
    history = [
        {"role": m.role, "content": m.content}
        for m in message_list(thread=job.thread)
        .exclude(pk=job.input.get("message"))
        .filter(created_at__lte=job.created_at)
    ]
    return agent_class, AgentRun(
        tenant_id=job.tenant_id,
        thread_id=job.thread_id,
        job_id=job.id,
        agent_id=job.agent_id,
        agent_slug=snapshot["slug"],
        agent_version=job.agent_version,
        model=snapshot["model"],
        system_prompt=snapshot["system_prompt"],
        tools=list(snapshot["tools"]),
        config=config,
        history=history,
        input=job.input.get("content", []),
        additional_instructions=job.input.get("additional_instructions", ""),
        context=job.input.get("context", {}),
        user_id=job.created_by_id,
        should_stop=should_stop,
    )


def execute(job: Job) -> None:
    """Run a job that this worker has claimed, to a final state. Never raises for the agent's failures."""
    writer = _EventWriter(job)

    def should_stop() -> bool:
        writer.flush()
        if not writer.cancel_requested:
            writer.heartbeat()
        return writer.cancel_requested == CancelMode.IMMEDIATE

    completed: list[Emit] = []
    last_reply: Message | None = None
    try:
        agent_class, run = build_run(job, should_stop)
        for output in agent_class(run).execute():
            if isinstance(output, Emit):
                writer.add(output)
                if output.type == "llm.completed":
                    completed.append(output)
            elif isinstance(output, Reply):
                writer.flush()
                last_reply = thread_services.message_create(
                    thread=job.thread,
                    role=MessageRole.ASSISTANT,
                    content=output.content,
                    agent_id=job.agent_id,
                    job_id=job.id,
                )
            elif isinstance(output, TurnEnded):
                writer.flush()
                writer.heartbeat()
                if writer.cancel_requested:
                    break
            if writer.cancel_requested == CancelMode.IMMEDIATE:
                break
        writer.flush()
        usage = _usage_of(completed)
        if writer.cancel_requested:
            services.job_finish(job=job, status=JobStatus.CANCELLED, usage=usage)
            return
        output_body = {"message": str(last_reply.id), "content": last_reply.content} if last_reply else {}
        services.job_finish(job=job, status=JobStatus.SUCCEEDED, output=output_body, usage=usage)
    except ProviderError as exc:
        writer.flush()
        _fail(job, exc.detail, status=exc.status, type_slug=exc.type_slug, usage=_usage_of(completed))
    except (ValidationError, LookupError) as exc:
        writer.flush()
        _fail(job, f"The agent's configuration cannot run: {exc}", status=400, type_slug="agent-misconfigured")
    except SoftTimeLimitExceeded:
        writer.flush()
        _fail(job, "The job ran past its time limit.", status=504, type_slug="job-timeout", usage=_usage_of(completed))
    except Exception:
        logger.exception("job %s failed", job.id)
        writer.flush()
        _fail(job, "The agent failed unexpectedly; quote the job id.", usage=_usage_of(completed))
