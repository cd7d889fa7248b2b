"""Stateless turns: a message that brings its own ``chat_history`` instead of a stored thread.

The client keeps the conversation; the server runs one turn of it. The supplied history is checked here (roles,
content blocks as a thread's messages have them, bounded in count and size, files only the caller's own) and
travels in the job's input to the worker, which gives it to the agent in place of a thread's messages
(jobs.runner.build_run). The turn itself runs on an ephemeral thread (``Thread.ephemeral``): never listed or
addressable as a thread, its messages and events purged by the janitor JOBS_STATELESS_RETENTION_SECONDS after the
job ended, and the supplied history dropped from the job's input the moment the job ends. With ``store_thread``
the client asks for a real thread instead: the history is stored as its first messages and the turn goes on there.

What the turn added comes back as ``new_messages`` (in chat_history's own shape, ready to append), with
``file_ids_map`` and ``cost``, in the wait-mode answer and in the job's final event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Q
from pydantic import ValidationError as PydanticValidationError

from agents.catalogue import model_prices
from threads import selectors as thread_selectors
from threads.content import file_ids_of, validate_content
from threads.models import Message, MessageRole

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from jobs.models import Job

HISTORY_ROLES = (MessageRole.USER, MessageRole.ASSISTANT, MessageRole.SYSTEM, MessageRole.TOOL)
HISTORY_FIELDS = frozenset({"role", "content", "agent", "caller_agent", "timestamp"})
NAME_MAX_LENGTH = 63


def is_stateless(job: Job) -> bool:
    """Whether the job answers a message that brought its own history (its answers carry new_messages)."""
    return bool((job.input or {}).get("supplied_history"))


def _message_errors(index: int, message: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
    where = f"chat_history[{index}]"
    if not isinstance(message, dict):
        return None, {where: "Each message is an object with role and content."}
    errors: dict[str, str] = {}
    for name in sorted(set(message) - HISTORY_FIELDS):
        errors[f"{where}.{name}"] = "Unknown field."
    role = message.get("role")
    if role not in HISTORY_ROLES:
        errors[f"{where}.role"] = f"Expected one of {', '.join(HISTORY_ROLES)}."
    content = message.get("content")
    blocks: list[dict[str, Any]] = []
    try:
        blocks = validate_content(content if content is not None else [])
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"][:1])
        errors[f"{where}.content{location}"] = str(first["msg"])
    for name in ("agent", "caller_agent"):
        value = message.get(name)
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= NAME_MAX_LENGTH):
            errors[f"{where}.{name}"] = f"An agent's name: a string of 1 to {NAME_MAX_LENGTH} characters, or null."
    timestamp = message.get("timestamp")
    if timestamp is not None:
        try:
            datetime.fromisoformat(str(timestamp))
        except ValueError:
            errors[f"{where}.timestamp"] = "An ISO 8601 date and time, e.g. 2025-01-01T12:00:00Z, or null."
    if errors:
        return None, errors
    normal = {"role": str(role), "content": blocks}
    normal.update({name: message[name] for name in ("agent", "caller_agent", "timestamp") if message.get(name)})
    return normal, {}


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def chat_history_checked(*, history: Any, tenant_id: Any, user: User) -> list[dict[str, Any]]:
    """The supplied history, normalised (content as blocks); a ValidationError naming each field that is wrong.

    Bounded by JOBS_CHAT_HISTORY_MAX_MESSAGES and JOBS_CHAT_HISTORY_MAX_BYTES (its JSON), and held to the rule of
    a message's own content: an image or file block may only name a file of the caller's in this tenant.
    """
    if not isinstance(history, list):
        raise ValidationError({"chat_history": "A list of messages, oldest first."})
    most = settings.JOBS_CHAT_HISTORY_MAX_MESSAGES
    if len(history) > most:
        raise ValidationError({"chat_history": f"At most {most} messages; this history has {len(history)}."})
    size = len(json.dumps(history, default=str).encode())
    if size > settings.JOBS_CHAT_HISTORY_MAX_BYTES:
        raise ValidationError(
            {"chat_history": f"At most {settings.JOBS_CHAT_HISTORY_MAX_BYTES} bytes of JSON; this one has {size}."}
        )
    normal: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for index, message in enumerate(history):
        checked, message_errors = _message_errors(index, message)
        errors.update(message_errors)
        if checked is not None:
            normal.append(checked)
    if errors:
        raise ValidationError(errors)
    ids = [file_id for message in normal for file_id in file_ids_of(message["content"])]
    if ids:
        wanted = {_as_uuid(file_id) for file_id in ids}
        owned = {
            file.pk
            for file in thread_selectors.files_of_uploader(
                tenant_id=tenant_id, user_id=user.pk, ids=[file_id for file_id in wanted if file_id is not None]
            )
        }
        if None in wanted or wanted - owned:
            raise ValidationError(
                {"chat_history": "A content block refers to a file that is not among your files in this tenant."}
            )
    return normal


# --- What a turn added ------------------------------------------------------------------------------------------


def file_ids_map(content: Sequence[dict[str, Any]]) -> dict[str, str]:
    """File name → file id for every file the message carries (uploaded and attached, or fetched from file_urls)."""
    return {
        str(block.get("name") or block["file_id"]): str(block["file_id"])
        for block in content
        if block.get("type") in ("image", "file") and block.get("file_id")
    }


def message_body(message: Message, *, agent: str | None) -> dict[str, Any]:
    """A stored message in chat_history's shape, so a client can append it to the history it keeps."""
    return {
        "id": str(message.pk),
        "role": message.role,
        "content": list(message.content),
        "agent": agent,
        "caller_agent": None,
        "timestamp": message.created_at.isoformat().replace("+00:00", "Z"),
    }


def new_messages(job: Job, *, reply: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The messages this job's turn added, oldest first: the caller's message, then the agent's replies.

    ``reply``: a last reply the caller is about to store (job_finish writes it with the final event), as
    ``message_body`` would show it.
    """
    agent = job.agent.slug if job.agent_id else None
    stored = Message.objects.filter(thread_id=job.thread_id).filter(
        Q(pk=(job.input or {}).get("message")) | Q(job_id=job.pk)
    )
    bodies = [message_body(message, agent=agent) for message in stored.order_by("created_at", "id")]
    return [*bodies, reply] if reply is not None else bodies


def turn_cost(job: Job) -> float | None:
    """The turn's cost at the catalogue's prices; None where they are unknown (an unpriced model, or the client's
    own endpoint, which bills the client)."""
    if (job.input or {}).get("client_config") or not model_prices(job.model).priced:
        return None
    cost = (job.usage or {}).get("cost")
    return float(cost) if cost is not None else None


def turn_summary(job: Job, *, reply: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a stateless turn's answer adds to the job: new_messages, file_ids_map and cost."""
    return {
        "new_messages": new_messages(job, reply=reply),
        "file_ids_map": file_ids_map((job.input or {}).get("content", [])),
        "cost": turn_cost(job),
    }
