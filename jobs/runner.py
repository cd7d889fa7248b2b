"""Running one claimed job: the agent class yields, the runner persists events in order and finishes the job."""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import connection
from pydantic import ValidationError

from agents.providers.base import ClientConfig, ProviderError
from agents.registry import AgentClass, get_agent_class
from agents.runtime import AgentRun, AwaitInput, Emit, Reply, Resume, TurnEnded
from agents.runtime import Artifact as ArtifactOutput
from agents.selectors import agent_version_snapshot
from aihub import tracing
from aihub.db import in_memory_sqlite
from jobs import credentials, services
from jobs.models import CancelMode, Job, JobStatus
from threads.events import NewEvent
from threads.selectors import message_list

logger = logging.getLogger(__name__)


class _Heartbeat(threading.Thread):
    """Marks the job alive every ``JOBS_HEARTBEAT_SECONDS`` while it runs, from a thread of its own.

    Why a thread: the agent may wait on one model or tool call for longer than ``JOBS_STALE_AFTER_SECONDS``
    without yielding anything, and a heartbeat written only between events would then look like a dead worker
    and the janitor would run the job a second time. A thread keeps beating through such waits, so the stale
    limit can be short (a dead worker's job is taken over in seconds) without a slow call ever being mistaken
    for one. It never decides that the claim is lost (the runner learns that from its own reads); it only stops
    beating once the claim is no longer its own.
    """

    def __init__(self, job: Job) -> None:
        super().__init__(name=f"heartbeat-{job.id}", daemon=True)
        self.job = job
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.JOBS_HEARTBEAT_SECONDS):
                try:
                    if not services.job_heartbeat(job=self.job):
                        return
                except Exception as exc:  # the database is away: try again next beat, the janitor judges
                    logger.warning("job %s: heartbeat not written: %s", self.job.id, exc)
        finally:
            connection.close()  # this thread's own connection (given back to the pool on PostgreSQL)

    def stop(self) -> None:
        self.stopped.set()
        self.join()

    @staticmethod
    def possible() -> bool:
        # Not beside an in-memory SQLite database: there the runner beats between events on its own thread.
        return not in_memory_sqlite()


class _EventWriter:
    """Persists a run's events in order; ``llm.chunk`` events are batched so a token stream is not a write each.

    It also keeps the runner in touch with the job's row: a heartbeat every ``JOBS_HEARTBEAT_SECONDS`` when no
    ``_Heartbeat`` thread beats for it, and the job's control state (cancellation requested, claim lost) known
    at most ``JOBS_CHUNK_BATCH_SECONDS`` old — every write of events returns it, so only a run that writes
    nothing for that long reads it on its own — and checking for cancellation before every chunk costs no
    query each.
    """

    def __init__(self, job: Job, *, beats: bool) -> None:
        self.job = job
        self.beats = beats
        self.pending: list[NewEvent] = []
        now = time.monotonic()
        self.last_flush = now
        self.last_heartbeat = now
        # Due at once: a job cancelled (or interrupted) between its claim and its first step stops at that step.
        self.last_check = now - settings.JOBS_CHUNK_BATCH_SECONDS
        self.cancel_requested = ""
        self.lost = False
        self.chunks_written = False  # of the current streak of chunks (since the last other event)

    def add(self, event: Emit) -> None:
        self.pending.append(NewEvent(event.type, event.data, job_id=self.job.id, agent_id=self.job.agent_id))
        if event.type != "llm.chunk" or not self.chunks_written:
            # Anything but a chunk shows at once, and so does the first chunk: the first token is not held back
            # for a batch to fill.
            self.chunks_written = event.type == "llm.chunk"
            self.flush()
            return
        batch_full = len(self.pending) >= settings.JOBS_CHUNK_BATCH_SIZE
        batch_old = time.monotonic() - self.last_flush >= settings.JOBS_CHUNK_BATCH_SECONDS
        if batch_full or batch_old:
            self.flush()

    def flush(self) -> None:
        if self.pending and not self.lost:
            self.record(services.job_events_append(job=self.job, events=self.pending))
        self.pending = []
        self.last_flush = time.monotonic()
        if self.beats and time.monotonic() - self.last_heartbeat >= settings.JOBS_HEARTBEAT_SECONDS:
            self.heartbeat()

    def heartbeat(self) -> None:
        if not self.lost and not services.job_heartbeat(job=self.job):
            self.lost = True
        self.last_heartbeat = time.monotonic()
        self.check()

    def check(self) -> None:
        """Read the job's control state now."""
        if not self.lost:
            self.record(services.job_control(job=self.job))

    def record(self, control: str | None) -> None:
        """Take the job's control state as just read (None: the claim is lost)."""
        if control is None:
            logger.warning("job %s: the claim was lost (re-queued or finished elsewhere); stopping", self.job.id)
            self.lost = True
        else:
            self.cancel_requested = control
        self.last_check = time.monotonic()

    def flush_and_check(self) -> None:
        """Write what is pending and know the control state as of now: a write tells it, else it is read."""
        wrote = bool(self.pending) and not self.lost
        self.flush()
        if not wrote:
            self.check()

    def check_due(self) -> None:
        """Flush and learn the control state when the last check is older than a batch interval."""
        if time.monotonic() - self.last_check >= settings.JOBS_CHUNK_BATCH_SECONDS:
            self.flush_and_check()

    @property
    def must_stop(self) -> bool:
        return self.lost or self.cancel_requested == CancelMode.IMMEDIATE


def _usage_of(events: list[Emit]) -> dict[str, int]:
    totals = {"input_tokens": 0, "output_tokens": 0}
    for event in events:
        for key in totals:
            totals[key] += int(event.data.get("usage", {}).get(key, 0))
    totals["total_tokens"] = totals["input_tokens"] + totals["output_tokens"]
    return totals


def build_run(job: Job, should_stop: Any) -> tuple[type[AgentClass], AgentRun]:
    """The job's agent class and its run, from the agent version the job was submitted with."""
    snapshot = agent_version_snapshot(agent_id=job.agent_id, version=job.agent_version)
    agent_class = get_agent_class(snapshot["class_name"])
    if agent_class is None:
        raise LookupError(f"Agent class {snapshot['class_name']!r} is not installed.")
    config = agent_class.Config.model_validate(snapshot["config"])
    if "chat_history" in job.input:
        # A stateless turn: the client's history is the conversation; its ephemeral thread has only this turn.
        history = list(job.input["chat_history"])
    else:
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
        resume=_resume_of(job),
        client_config=_client_config_of(job),
        client_tools=job.input.get("client_tools", []),
    )


def _client_config_of(job: Job) -> ClientConfig | None:
    """The request's own model credentials, opened from the cache (jobs.credentials); ProviderError when they are
    gone, rather than running the job on the operator's provider instead of the one the client asked for."""
    if not job.input.get("client_config"):
        return None
    config = credentials.client_config_open(job_id=job.id)
    if config is None:
        raise ProviderError(
            "The job's client_config is no longer available (it is kept for JOBS_CLIENT_CONFIG_TTL_SECONDS while "
            "the job waits for a worker); send the request again.",
            status=410,
            type_slug="client-config-unavailable",
        )
    return config


def _resume_of(job: Job) -> Resume | None:
    """The answered request a paused job resumes with (kept until the job ends, so a retry resumes too)."""
    saved = job.resume_state or {}
    if "response" not in saved:
        return None
    return Resume(request=saved.get("request", {}), response=saved["response"], state=saved.get("state", {}))


def _publish(job: Job, writer: _EventWriter, artifact: ArtifactOutput) -> dict[str, Any]:
    """Store an artifact of the running job now, after the events before it; its summary, or ValueError."""
    writer.flush()
    try:
        stored = (
            None
            if writer.lost
            else services.artifact_publish(
                job=job,
                name=artifact.name,
                kind=artifact.kind,
                data=artifact.data,
                content=artifact.content,
                media_type=artifact.media_type,
                claimed=True,
            )
        )
    except DjangoValidationError as exc:
        raise ValueError(" ".join(exc.messages)) from exc
    if stored is None:
        writer.lost = True
        raise ValueError("The job is no longer running here.")
    return services.artifact_summary(stored)


def _publish_or_report(job: Job, writer: _EventWriter, artifact: ArtifactOutput) -> None:
    """An agent's artifact output: a refusal is recorded as an ``agent.error`` event and the run goes on."""
    try:
        _publish(job, writer, artifact)
    except ValueError as exc:
        if not writer.lost:
            detail = {"type": "artifact-refused", "name": artifact.name[:200], "detail": str(exc)}
            writer.add(Emit("agent.error", detail))


def execute(job: Job) -> None:
    """Run a job that this worker has claimed, to a final state. Never raises for the agent's failures.

    A claim that is lost midway (the janitor gave the job to another worker) ends the run without writing
    anything more: the job belongs to the other attempt now.
    """
    heartbeat = _Heartbeat(job) if _Heartbeat.possible() else None
    if heartbeat is not None:
        heartbeat.start()
    try:
        writer = _EventWriter(job, beats=heartbeat is None)
        if tracing.tracer is None:
            _execute(job, writer)
        else:
            with tracing.span(f"invoke_agent {job.agent.slug}", _agent_attributes(job)):
                _execute(job, writer)
    finally:
        if heartbeat is not None:
            heartbeat.stop()


def _agent_attributes(job: Job) -> dict[str, Any]:
    """The GenAI semantic conventions' attributes of the ``invoke_agent`` span (and aihub's job id)."""
    return {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": job.agent.slug,
        "gen_ai.agent.version": str(job.agent_version),
        "gen_ai.conversation.id": str(job.thread_id),
        "gen_ai.request.model": job.model,
        "aihub.job.id": str(job.id),
        "aihub.job.attempt": job.attempts,
    }


def _execute(job: Job, writer: _EventWriter) -> None:
    def should_stop() -> bool:
        writer.check_due()
        return writer.must_stop

    # A resumed job's usage so far was stored when it paused; this run adds to it.
    completed: list[Emit] = [Emit("llm.completed", {"usage": job.usage})] if job.resume_state and job.usage else []
    # The latest reply is held back until the run writes something after it, so that a reply that ends the run
    # is stored in the transaction that finishes the job.
    held_reply: list[dict[str, Any]] | None = None

    def store_held_reply() -> None:
        nonlocal held_reply
        if held_reply is not None and not writer.lost:
            writer.lost = services.job_reply(job=job, content=held_reply) is None
        held_reply = None

    def fail(detail: str, *, status: int = 500, type_slug: str = "job-failed") -> None:
        if tracing.tracer is not None:
            tracing.fail(error_type=type_slug)  # the invoke_agent span
        writer.flush()
        store_held_reply()
        if writer.lost:
            return
        services.job_finish(
            job=job,
            status=JobStatus.FAILED,
            error=services.job_fail_problem(job=job, detail=detail, status=status, type_slug=type_slug),
            usage=_usage_of(completed),
            claimed=True,
        )

    try:
        agent_class, run = build_run(job, should_stop)
        run.publish_artifact = partial(_publish, job, writer)
        for output in agent_class(run).execute():
            if not isinstance(output, TurnEnded | Reply):
                store_held_reply()
            if isinstance(output, Emit):
                writer.add(output)
                if output.type == "llm.completed":
                    completed.append(output)
            elif isinstance(output, Reply):
                writer.flush()
                store_held_reply()
                held_reply = output.content
            elif isinstance(output, ArtifactOutput):
                _publish_or_report(job, writer, output)
            elif isinstance(output, TurnEnded):
                writer.flush_and_check()
                if writer.cancel_requested:
                    break
            elif isinstance(output, AwaitInput):
                # What was complete is persisted; the job then waits in requires_action and this worker is free.
                # A cancellation asked for meanwhile wins over pausing (it ends the job below).
                writer.flush_and_check()
                if not writer.lost and not writer.cancel_requested:
                    request, state = output.request, output.state
                    if services.job_await(job=job, request=request, state=state, usage=_usage_of(completed)):
                        return
                    writer.check()
                break
            if writer.must_stop:
                break
        writer.flush()
        if writer.lost:
            return
        # What was complete is kept: an ``after_turn`` cancellation may come after the last reply (job_finish
        # then ends the job cancelled, with the reply).
        status = JobStatus.CANCELLED if writer.cancel_requested else JobStatus.SUCCEEDED
        services.job_finish(
            job=job, status=status, output={}, usage=_usage_of(completed), reply=held_reply, claimed=True
        )
    except ProviderError as exc:
        fail(exc.detail, status=exc.status, type_slug=exc.type_slug)
    except (ValidationError, LookupError) as exc:
        fail(f"The agent's configuration cannot run: {exc}", status=400, type_slug="agent-misconfigured")
    except SoftTimeLimitExceeded:
        fail("The job ran past its time limit.", status=504, type_slug="job-timeout")
    except Exception:
        logger.exception("job %s failed", job.id)
        fail("The agent failed unexpectedly; quote the job id.")
