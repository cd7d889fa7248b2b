"""aihub's records as A2A's types: a job is a task, its thread the task's context, its messages the history, its
artifacts the task's artifacts; thread events become the stream's status and artifact updates.

Plain functions on rows already loaded (no queries of their own unless named ``*_load``), so the handler decides
what is read, and once.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import ContentTypeNotSupportedError, InvalidParamsError
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.struct_pb2 import Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from jobs.models import Artifact as JobArtifact
from jobs.models import Job, JobStatus
from jobs.services import artifact_summary
from threads.events import EventType

TASK_STATES: dict[str, TaskState] = {
    JobStatus.QUEUED: TaskState.TASK_STATE_SUBMITTED,
    JobStatus.RUNNING: TaskState.TASK_STATE_WORKING,
    JobStatus.REQUIRES_ACTION: TaskState.TASK_STATE_INPUT_REQUIRED,
    JobStatus.SUCCEEDED: TaskState.TASK_STATE_COMPLETED,
    JobStatus.FAILED: TaskState.TASK_STATE_FAILED,
    JobStatus.CANCELLED: TaskState.TASK_STATE_CANCELED,
    # A2A has no expiry: the task failed, and its status message says why.
    JobStatus.EXPIRED: TaskState.TASK_STATE_FAILED,
}
JOB_STATUSES: dict[TaskState, list[str]] = {}
for _status, _state in TASK_STATES.items():
    JOB_STATUSES.setdefault(_state, []).append(_status)

TERMINAL_STATES = frozenset(
    {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED}
)
_EVENT_STATES: dict[str, TaskState] = {
    EventType.JOB_STARTED: TaskState.TASK_STATE_WORKING,
    EventType.JOB_QUEUED: TaskState.TASK_STATE_SUBMITTED,
}
_FINAL_EVENTS = frozenset(
    {EventType.JOB_SUCCEEDED, EventType.JOB_FAILED, EventType.JOB_CANCELLED, EventType.JOB_EXPIRED}
)
ENDING_EVENTS = frozenset({*_FINAL_EVENTS, EventType.JOB_REQUIRES_ACTION})
"""After these a stream of the task ends: it has ended, or it waits for the client."""


def _struct(data: dict[str, Any]) -> Struct:
    struct = Struct()
    # Through JSON: datetimes, UUIDs and decimals of aihub's records become strings, as the REST API shows them.
    struct.update(json.loads(json.dumps(data, default=str)))
    return struct


def _value(data: Any) -> Value:
    return ParseDict(json.loads(json.dumps(data, default=str)), Value())


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- Messages ------------------------------------------------------------------------------------------------


def parts_of(content: list[dict[str, Any]]) -> list[Part]:
    """aihub content blocks as A2A parts: text as text, anything else (files, tool calls, citations) as data."""
    return [
        Part(text=block["text"])
        if block.get("type") == "text"
        else Part(data=_value(block), media_type="application/json")
        for block in content
    ]


def content_of(message: Message) -> list[dict[str, Any]]:
    """An A2A message's parts as aihub content blocks: text parts as text, data parts as their JSON in text (the
    agent reads them). Files (raw bytes or URLs) are refused: aihub takes files through its upload API."""
    blocks: list[dict[str, Any]] = []
    for part in message.parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            blocks.append({"type": "text", "text": part.text})
        elif kind == "data":
            blocks.append({"type": "text", "text": json.dumps(MessageToDict(part.data))})
        else:
            raise ContentTypeNotSupportedError(
                message="Only text and data parts are accepted; upload files through the API "
                "(POST /api/v1/{tenant}/files/) and send their text."
            )
    if not any(block["text"].strip() for block in blocks):
        raise InvalidParamsError(message="The message has no text: send at least one non-empty text or data part.")
    return blocks


def _message(*, role: Role, content: list[dict[str, Any]], message_id: str, job: Job) -> Message:
    return Message(
        message_id=message_id,
        context_id=str(job.thread_id),
        task_id=str(job.pk),
        role=role,
        parts=parts_of(content),
    )


def _input_message(job: Job) -> Message:
    return _message(
        role=Role.ROLE_USER,
        content=job.input.get("content") or [],
        message_id=str(job.input.get("message") or job.pk),
        job=job,
    )


def _reply_message(job: Job) -> Message | None:
    content = (job.output or {}).get("content")
    if not content:
        return None
    return _message(role=Role.ROLE_AGENT, content=content, message_id=str(job.output.get("message")), job=job)


def _text_message(job: Job, text: str, *, data: dict[str, Any] | None = None) -> Message:
    parts = [Part(text=text)]
    if data is not None:
        parts.append(Part(data=_value(data), media_type="application/json"))
    return Message(
        message_id=f"{job.pk}:{job.status}",
        context_id=str(job.thread_id),
        task_id=str(job.pk),
        role=Role.ROLE_AGENT,
        parts=parts,
    )


# --- Tasks ---------------------------------------------------------------------------------------------------


def task_status(job: Job) -> TaskStatus:
    """The task's state, when it got there, and what the agent says about it: its answer when it completed, the
    problem when it failed, the request when it waits for input."""
    status = TaskStatus(
        state=TASK_STATES[job.status],
        timestamp=_timestamp(job.finished_at or job.started_at or job.created_at),
    )
    message: Message | None = None
    if job.status == JobStatus.SUCCEEDED or (job.status == JobStatus.CANCELLED and job.output):
        message = _reply_message(job)
    elif job.status in (JobStatus.FAILED, JobStatus.EXPIRED):
        detail = (job.error or {}).get("detail") or f"The job {job.status}."
        message = _text_message(job, str(detail))
    elif job.status == JobStatus.REQUIRES_ACTION and job.pending_action:
        request = job.pending_action
        prompt = request.get("prompt") or (
            f"Approve the call of {request.get('tool_call', {}).get('name', 'a tool')}? Answer approve or reject."
        )
        message = _text_message(job, str(prompt), data=request)
    if message is not None:
        status.message.CopyFrom(message)
    return status


def task_artifact(artifact: JobArtifact) -> Artifact:
    """A published artifact: its data as a data part and, for a file, its download URL (relative to the server,
    with the caller's bearer token) as a URL part."""
    summary = artifact_summary(artifact)
    parts = [Part(data=_value(summary["data"]), media_type="application/json")]
    if summary["url"]:
        parts.append(Part(url=summary["url"], media_type=summary["media_type"], filename=summary["name"]))
    return Artifact(
        artifact_id=summary["id"],
        name=summary["name"],
        parts=parts,
        metadata=_struct({"kind": summary["kind"], "size": summary["size"]}),
    )


def job_task(job: Job, *, artifacts: list[JobArtifact], history_length: int | None = None) -> Task:
    """The job as an A2A task. ``history_length``: at most that many of the newest messages (the question and
    the answer); None for all, 0 for none."""
    history = [_input_message(job)]
    if (reply := _reply_message(job)) is not None:
        history.append(reply)
    if history_length is not None:
        history = history[len(history) - history_length :] if history_length else []
    return Task(
        id=str(job.pk),
        context_id=str(job.thread_id),
        status=task_status(job),
        artifacts=[task_artifact(artifact) for artifact in artifacts],
        history=history,
        metadata=_struct(
            {
                "aihub": {
                    "job": str(job.pk),
                    "status": job.status,
                    "agent": job.agent.slug,
                    "agent_version": job.agent_version,
                    "usage": job.usage or {},
                }
            }
        ),
    )


# --- Stream events -------------------------------------------------------------------------------------------


Update = TaskStatusUpdateEvent | TaskArtifactUpdateEvent


def _status_update(job: Job, status: TaskStatus, event: dict[str, Any]) -> TaskStatusUpdateEvent:
    return TaskStatusUpdateEvent(
        task_id=str(job.pk),
        context_id=str(job.thread_id),
        status=status,
        metadata=_struct({"aihub": {"event": event["type"], "id": event.get("id")}}),
    )


def stream_update(job: Job, event: dict[str, Any]) -> Update | None:
    """What a thread event of the job is in an A2A stream (None: nothing a client of A2A needs).

    ``job.*`` events are status updates (the final ones are sent by the handler from the job's fresh row, see
    :func:`final_update`), ``llm.chunk`` a working status whose message is the new text, ``artifact.updated`` an
    artifact update.
    """
    kind = event["type"]
    if kind in _EVENT_STATES:
        return _status_update(job, TaskStatus(state=_EVENT_STATES[kind]), event)
    if kind == EventType.LLM_CHUNK and event["data"].get("delta"):
        status = TaskStatus(state=TaskState.TASK_STATE_WORKING)
        status.message.CopyFrom(
            Message(
                message_id=f"{job.pk}:{event['id']}",
                context_id=str(job.thread_id),
                task_id=str(job.pk),
                role=Role.ROLE_AGENT,
                parts=[Part(text=event["data"]["delta"])],
            )
        )
        return _status_update(job, status, event)
    if kind == EventType.ARTIFACT_UPDATED:
        data = event["data"]
        parts = [Part(data=_value(data.get("data") or {}), media_type="application/json")]
        if data.get("url"):
            parts.append(Part(url=data["url"], media_type=data.get("media_type") or "", filename=data["name"]))
        artifact = Artifact(
            artifact_id=data["id"],
            name=data["name"],
            parts=parts,
            metadata=_struct({"kind": data.get("kind"), "size": data.get("size")}),
        )
        return TaskArtifactUpdateEvent(
            task_id=str(job.pk), context_id=str(job.thread_id), artifact=artifact, last_chunk=True
        )
    return None


def final_update(job: Job, event: dict[str, Any]) -> TaskStatusUpdateEvent:
    """The stream's last update: the task's status as its row says after ``event`` (which ended or paused it)."""
    return _status_update(job, task_status(job), event)
