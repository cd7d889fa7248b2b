"""Every write to threads, members, messages, state and the event log."""

from __future__ import annotations

import hashlib
import posixpath
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Case, DateTimeField, Q, Value, When
from django.utils import timezone
from rest_framework.exceptions import UnsupportedMediaType

from aihub import extraction
from aihub.access.models import Tenant
from aihub.api.problems import PayloadTooLarge
from aihub.conf import aihub_settings
from threads.content import validate_content
from threads.events import EventType, NewEvent, event_payload, publish
from threads.models import Checkpoint, Event, File, Message, MessageRole, Thread, ThreadMember

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def events_reserve(*, thread_id: uuid.UUID, count: int) -> int:
    """Reserve ``count`` consecutive sequence numbers of a thread and return the first.

    One ``UPDATE ... RETURNING`` on the thread's own row: it locks that row (not the table) until the
    transaction ends, so events of one thread are numbered in commit order and a rollback returns the numbers
    with everything else — the log has no gaps. Other threads are not held up. Being the thread's row lock, it
    is also the lock a job's status change takes first (jobs.services): a write that appends events anyway
    takes the lock and its numbers in one statement.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Thread._meta.db_table} SET last_sequence = last_sequence + %s WHERE id = %s "  # noqa: S608
            "RETURNING last_sequence",
            [count, Thread._meta.pk.get_db_prep_value(thread_id, connection)],
        )
        row = cursor.fetchone()
    if row is None:
        raise Thread.DoesNotExist(f"No thread {thread_id}.")
    return int(row[0]) - count + 1


_EVENT_FIELDS = ("thread", "sequence", "type", "job_id", "agent_id", "data", "created_at")


def events_insert(*, thread: Thread, events: Sequence[NewEvent], first: int) -> list[Event]:
    """Insert events numbered from ``first`` (reserved by ``events_reserve`` in this transaction), as many per
    statement as the database takes parameters; they are published once the transaction commits.

    A plain multi-row INSERT, not ``bulk_create``: this is the hottest write there is (every batch of a token
    stream), and the ORM's per-object, per-field compilation cost several times the statement itself. Values
    are adapted by the model's own fields, so the rows are exactly what ``bulk_create`` would store.
    """
    if not events:
        return []
    now = timezone.now()
    created = [
        Event(
            thread_id=thread.pk,
            sequence=first + offset,
            type=str(new.type),
            job_id=new.job_id,
            agent_id=new.agent_id,
            data=new.data,
            created_at=now,
        )
        for offset, new in enumerate(events)
    ]
    by_name = {field.name: field for field in Event._meta.concrete_fields}
    fields = [by_name[name] for name in _EVENT_FIELDS]
    thread_id, _, _, job_id, agent_id, data, created_at = (field.get_db_prep_save for field in fields)
    same_in_every_row = thread_id(thread.pk, connection), created_at(now, connection)
    rows = [
        (
            same_in_every_row[0],
            event.sequence,
            event.type,
            job_id(event.job_id, connection),
            agent_id(event.agent_id, connection),
            data(event.data, connection),
            same_in_every_row[1],
        )
        for event in created
    ]
    quote = connection.ops.quote_name
    head = f"INSERT INTO {quote(Event._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) VALUES "  # noqa: S608 - names from the model
    row_placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    per_statement = connection.ops.bulk_batch_size(fields, rows)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            batch = rows[start : start + per_statement]
            cursor.execute(head + ", ".join([row_placeholder] * len(batch)), [value for row in batch for value in row])
    # The caller's instance keeps up, so a response rendering it shows the new head of the log.
    thread.last_sequence = first + len(events) - 1
    payloads = [event_payload(event) for event in created]
    transaction.on_commit(lambda: publish(thread_id=thread.pk, tenant_id=thread.tenant_id, payloads=payloads))
    return created


# Nested in a caller's transaction (the usual case), these helpers add no savepoint of their own: they are part of
# the caller's all-or-nothing write, and a savepoint would be two more round trips each.
@transaction.atomic(savepoint=False)
def events_append(*, thread: Thread, events: Sequence[NewEvent]) -> list[Event]:
    """Append events to the thread's log, numbered in order; they are published once the transaction commits."""
    if not events:
        return []
    return events_insert(thread=thread, events=events, first=events_reserve(thread_id=thread.pk, count=len(events)))


@transaction.atomic
def thread_create(
    *,
    tenant: Tenant,
    created_by: User | None,
    title: str = "",
    metadata: dict[str, Any] | None = None,
    agent_ids: Iterable[uuid.UUID] = (),
    ephemeral: bool = False,
    thread_id: uuid.UUID | None = None,
) -> Thread:
    """A new thread; ``thread_id`` when the caller names it (an IntegrityError when that id is taken)."""
    thread = Thread.objects.create(
        id=thread_id or uuid.uuid4(),
        tenant=tenant,
        created_by=created_by,
        title=title,
        metadata=metadata or {},
        ephemeral=ephemeral,
    )
    if created_by is not None:
        ThreadMember.objects.create(thread=thread, user=created_by)
    for agent_id in dict.fromkeys(agent_ids):
        ThreadMember.objects.create(thread=thread, agent_id=agent_id)
    return thread


@transaction.atomic
def ephemeral_threads_empty(*, thread_ids: Iterable[uuid.UUID]) -> None:
    """Delete what stateless turns' ephemeral threads hold (messages, events, title, metadata, state); the rows
    stay for the jobs that ran on them. Threads that are not ephemeral are left alone."""
    ids = list(Thread.objects.filter(pk__in=list(thread_ids), ephemeral=True).values_list("pk", flat=True))
    Message.objects.filter(thread_id__in=ids).delete()
    Event.objects.filter(thread_id__in=ids).delete()
    Thread.objects.filter(pk__in=ids).update(title="", metadata={}, state={})


@transaction.atomic
def thread_update(*, thread: Thread, title: str | None = None, metadata: dict[str, Any] | None = None) -> Thread:
    changes: dict[str, Any] = {}
    if title is not None:
        thread.title = changes["title"] = title
    if metadata is not None:
        thread.metadata = changes["metadata"] = metadata
    if changes:
        thread.save(update_fields=[*changes, "updated_at"])
        events_append(thread=thread, events=[NewEvent(EventType.THREAD_UPDATED, changes)])
    return thread


@transaction.atomic(savepoint=False)
def thread_member_add(*, thread: Thread, user: User | None = None, agent_id: uuid.UUID | None = None) -> ThreadMember:
    member, _ = ThreadMember.objects.get_or_create(thread=thread, user=user, agent_id=agent_id)
    return member


@transaction.atomic
def thread_delete(*, thread: Thread) -> None:
    thread.delete()


@transaction.atomic(savepoint=False)
def message_create(
    *,
    thread: Thread,
    role: MessageRole | str,
    content: Any,
    author: User | None = None,
    agent_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | None = None,
    message_id: uuid.UUID | None = None,
    followed_by: Sequence[NewEvent] = (),
) -> Message:
    """Store a message and append ``message.created`` (carrying the whole message) to the log, then
    ``followed_by`` in the same write (events the caller's change adds after the message)."""
    message = Message.objects.create(
        id=message_id or uuid.uuid4(),
        thread=thread,
        role=str(role),
        content=validate_content(content),
        author=author,
        agent_id=agent_id,
        job_id=job_id,
        metadata=metadata or {},
    )
    events_append(
        thread=thread,
        events=[
            NewEvent(EventType.MESSAGE_CREATED, message_data(message), job_id=job_id, agent_id=agent_id),
            *followed_by,
        ],
    )
    return message


def message_data(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "role": message.role,
        "content": message.content,
        "author": message.author_id,
        "agent": str(message.agent_id) if message.agent_id else None,
        "job": str(message.job_id) if message.job_id else None,
        "created_at": message.created_at.isoformat().replace("+00:00", "Z"),
    }


@transaction.atomic
def thread_state_update(
    *,
    thread: Thread,
    state: dict[str, Any],
    mode: Literal["merge", "replace"] = "merge",
    job_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
) -> Thread:
    """Merge into or replace the thread's state, recorded as ``state.updated`` with the new state."""
    # The row lock makes concurrent merges see each other's keys instead of overwriting them.
    locked = Thread.objects.select_for_update().get(pk=thread.pk)
    locked.state = {**locked.state, **state} if mode == "merge" else dict(state)
    locked.save(update_fields=["state", "updated_at"])
    events_append(
        thread=locked,
        events=[
            NewEvent(EventType.STATE_UPDATED, {"mode": mode, "state": locked.state}, job_id=job_id, agent_id=agent_id)
        ],
    )
    thread.state = locked.state
    return thread


# --- Checkpoints ------------------------------------------------------------------------------------------------


def _handoff_target_sql() -> str:
    """SQL of the thread's current agent (the latest ``handoff`` event's ``to_agent``), as the agent column stores
    it; what agents.selectors.thread_current_agent_id reads, for threads row ``t``."""
    events = connection.ops.quote_name(Event._meta.db_table)
    latest = f"FROM {events} e WHERE e.thread_id = t.id AND e.type = %s ORDER BY e.sequence DESC LIMIT 1"
    if connection.vendor == "postgresql":
        return f"(SELECT CAST(e.data ->> 'to_agent' AS uuid) {latest})"
    # SQLite keeps UUIDs as 32 hex digits; the event's JSON has the dashed form.
    return f"(SELECT REPLACE(json_extract(e.data, '$.to_agent'), '-', '') {latest})"


def checkpoint_record(*, thread_id: uuid.UUID, job_id: uuid.UUID | None, agent_id: uuid.UUID | None) -> uuid.UUID:
    """Record the thread as it is now, in the caller's transaction (a finished turn): one INSERT ... SELECT.

    The state and the head of the event log come from the thread's row as this transaction sees it (so a tool's
    state change during the turn is in), the last message by the thread's message order, the active agent from
    the latest handoff (else ``agent_id``, the turn's agent). Nothing is copied from the messages themselves.
    """
    checkpoint_id = uuid.uuid4()
    quote = connection.ops.quote_name
    uuid_field = Checkpoint._meta.pk
    prep = uuid_field.get_db_prep_value
    created_at = Checkpoint._meta.get_field("created_at").get_db_prep_save(timezone.now(), connection)
    sql = (
        f"INSERT INTO {quote(Checkpoint._meta.db_table)} "  # noqa: S608 - names from the models
        "(id, thread_id, job_id, agent_id, message_id, event_sequence, state, created_at) "
        f"SELECT %s, t.id, %s, COALESCE({_handoff_target_sql()}, %s), "
        f"(SELECT m.id FROM {quote(Message._meta.db_table)} m WHERE m.thread_id = t.id "
        "ORDER BY m.created_at DESC, m.id DESC LIMIT 1), "
        f"t.last_sequence, t.state, %s FROM {quote(Thread._meta.db_table)} t WHERE t.id = %s"
    )
    params = [
        prep(checkpoint_id, connection),
        prep(job_id, connection),
        str(EventType.HANDOFF),
        prep(agent_id, connection),
        created_at,
        prep(thread_id, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    return checkpoint_id


@transaction.atomic
def thread_fork(
    *, thread: Thread, checkpoint_id: uuid.UUID | str, created_by: User | None, title: str | None = None
) -> Thread:
    """A new thread of the same tenant that starts where ``checkpoint`` of ``thread`` left off (time travel).

    It gets copies of the messages up to the checkpoint (new ids, same order and times; not tied to the source's
    jobs), the checkpoint's state, the caller as member and the checkpoint's active agent as its agent (so the
    next message needs no agent named), ``{"forked_from": {"thread", "checkpoint"}}`` in its metadata, and a log
    that opens with those messages (and the state), so streams show the fork as it starts. The source is not
    touched. A checkpoint of another thread is a ValidationError on ``checkpoint``.
    """
    checkpoint = Checkpoint.objects.filter(thread=thread, pk=checkpoint_id).first()
    if checkpoint is None:
        raise ValidationError({"checkpoint": f"Thread {thread.pk} has no checkpoint {checkpoint_id}."})
    fork = thread_create(
        tenant=thread.tenant,
        created_by=created_by,
        title=thread.title if title is None else title,
        metadata={"forked_from": {"thread": str(thread.pk), "checkpoint": str(checkpoint.pk)}},
        agent_ids=[checkpoint.agent_id] if checkpoint.agent_id else [],
    )
    fork.state = dict(checkpoint.state or {})
    if fork.state:
        fork.save(update_fields=["state", "updated_at"])
    copies = [
        Message(
            id=uuid.uuid4(),
            thread=fork,
            role=message.role,
            content=message.content,
            author_id=message.author_id,
            agent_id=message.agent_id,
            metadata={**message.metadata, "forked_from_message": str(message.pk)},
            created_at=message.created_at,
        )
        for message in _messages_up_to(checkpoint)
    ]
    times = {message.pk: message.created_at for message in copies}
    Message.objects.bulk_create(copies)
    # The copies keep their times (the history's order); auto_now_add stamped them at insert, so set them back.
    for start in range(0, len(copies), 500):
        batch = copies[start : start + 500]
        when = [When(pk=message.pk, then=Value(times[message.pk])) for message in batch]
        Message.objects.filter(pk__in=[m.pk for m in batch]).update(
            created_at=Case(*when, output_field=DateTimeField())
        )
        for message in batch:
            message.created_at = times[message.pk]
    events = [NewEvent(EventType.MESSAGE_CREATED, message_data(m), agent_id=m.agent_id) for m in copies]
    if fork.state:
        events.append(NewEvent(EventType.STATE_UPDATED, {"mode": "replace", "state": fork.state}))
    events_append(thread=fork, events=events)
    return fork


def _messages_up_to(checkpoint: Checkpoint) -> list[Message]:
    """The thread's messages up to and including the checkpoint's last one, in the thread's message order."""
    if checkpoint.message_id is None:
        return []
    last = Message.objects.filter(thread_id=checkpoint.thread_id, pk=checkpoint.message_id).first()
    if last is None:
        return []
    earlier = Q(created_at__lt=last.created_at) | Q(created_at=last.created_at, id__lte=last.pk)
    return list(Message.objects.filter(earlier, thread_id=checkpoint.thread_id).order_by("created_at", "id"))


# --- Files ------------------------------------------------------------------------------------------------------

FILE_NAME_MAX_LENGTH = 255


def file_name(name: str | None) -> str:
    """A name fit to show and to offer for download: no folders, no control characters, not too long."""
    base = posixpath.basename((name or "").replace("\\", "/"))
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip().strip(".") or "file"
    return base[:FILE_NAME_MAX_LENGTH]


def file_media_type(*, data: bytes, name: str, declared: str = "") -> str:
    """What the bytes are (aihub.extraction.sniff_media_type); a client's declared type only refines UTF-8 text
    the sniffer could only call text/plain (a Markdown file without its extension, say)."""
    sniffed = extraction.sniff_media_type(data, name)
    refined = extraction.normalize_media_type(declared)
    if sniffed == extraction.PLAIN and refined in (
        extraction.MARKDOWN,
        extraction.CSV,
        extraction.HTML,
        extraction.JSON,
    ):
        return refined
    return sniffed


def file_check(*, data: bytes, name: str, declared_type: str = "") -> tuple[str, str | None]:
    """(media type, extracted text or None for images) of acceptable bytes; else PayloadTooLarge (413),
    UnsupportedMediaType (415), or a ValidationError naming ``file`` (empty, damaged, encrypted)."""
    limit = int(aihub_settings.FILE_MAX_BYTES)
    if len(data) > limit:
        raise PayloadTooLarge(f"The file {name!r} is {len(data)} bytes; at most {limit} are allowed.")
    if not data:
        raise ValidationError({"file": f"The file {name!r} is empty."})
    media_type = file_media_type(data=data, name=name, declared=declared_type)
    accepted = list(aihub_settings.FILE_MEDIA_TYPES)
    if media_type not in accepted:
        raise UnsupportedMediaType(
            media_type,
            detail=f"Files of type {media_type} ({name!r}) are not accepted; accepted: {', '.join(accepted)}.",
        )
    if extraction.is_image(media_type):
        return media_type, None
    try:
        extracted = extraction.extract_text(data, media_type)
    except extraction.ExtractionError as exc:
        if exc.code == "too_large":
            raise PayloadTooLarge(f"{name!r}: {exc}") from None
        raise ValidationError({"file": f"{name!r}: {exc}"}) from None
    return media_type, extracted.text


def file_create(
    *,
    tenant: Tenant,
    uploaded_by: User | None,
    name: str,
    data: bytes,
    declared_type: str = "",
    source_url: str = "",
) -> File:
    """Store a file for ``uploaded_by``: type sniffed and checked against FILE_MEDIA_TYPES, size against
    FILE_MAX_BYTES, text extracted from documents. Refused (file_check's errors), nothing is written.

    The bytes go to storage before the row; if the transaction around this does not commit, the caller removes
    them with files_discard_stored (storage is not transactional).
    """
    name = file_name(name)
    media_type, text = file_check(data=data, name=name, declared_type=declared_type)
    file = File(
        tenant=tenant,
        uploaded_by=uploaded_by,
        name=name,
        media_type=media_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        text=text,
        source_url=source_url[:2000],
    )
    file.content.save("content", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            file.save()
    except BaseException:
        files_discard_stored(files=[file])
        raise
    return file


def files_discard_stored(*, files: Iterable[File]) -> None:
    """Remove the stored bytes of files whose rows were never committed (a rolled-back submission)."""
    for file in files:
        if file.content.name:
            file.content.storage.delete(file.content.name)


def file_delete(*, file: File) -> None:
    """Delete the file; its bytes leave storage once the deletion commits (django-cleanup). Messages keep their
    (now dangling) reference: models are told the file is no longer available."""
    file.delete()
