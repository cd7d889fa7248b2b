"""Reads of threads, messages and events, narrowed to what the caller may see."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef, QuerySet

from aihub.api.problems import not_found
from threads.models import Checkpoint, Event, File, Message, Thread, ThreadMember

if TYPE_CHECKING:
    from aihub.access.principal import Principal


def thread_list(*, principal: Principal, agent_id: uuid.UUID | None = None) -> QuerySet[Thread]:
    """Threads of the tenant the caller takes part in, newest first; with aihub.admin.threads, every thread of
    the tenant. ``agent_id`` narrows to threads that agent is a member of. A stateless turn's ephemeral thread is
    never among them: the client keeps that conversation, not the server."""
    threads = (
        Thread.objects.filter(tenant=principal.tenant, ephemeral=False)
        .select_related("created_by")
        .order_by("-created_at")
    )
    if agent_id is not None:
        threads = threads.filter(Exists(ThreadMember.objects.filter(thread=OuterRef("pk"), agent_id=agent_id)))
    if principal.can("admin", "threads"):
        return threads
    visible = principal.visible(threads, "threads")
    if not principal.can("user", "threads"):
        return visible  # explicit per-thread rules only
    # EXISTS rather than a join: no duplicate rows to DISTINCT away, and the ordering stays an index scan.
    return visible.filter(Exists(ThreadMember.objects.filter(thread=OuterRef("pk"), user=principal.user)))


def thread_get(*, principal: Principal, thread_id: uuid.UUID | str) -> Thread:
    """The thread, or Http404 when it does not exist or the caller may not see it."""
    thread = thread_list(principal=principal).filter(pk=thread_id).first()
    if thread is None:
        raise not_found("thread", thread_id)
    return thread


def thread_member_list(*, thread: Thread) -> QuerySet[ThreadMember]:
    return ThreadMember.objects.filter(thread=thread).select_related("user").order_by("added_at", "id")


def message_list(*, thread: Thread) -> QuerySet[Message]:
    return Message.objects.filter(thread=thread).order_by("created_at", "id")


def event_list(*, thread: Thread, after: int = 0, job_id: uuid.UUID | None = None) -> QuerySet[Event]:
    events = Event.objects.filter(thread=thread, sequence__gt=after).order_by("sequence")
    return events if job_id is None else events.filter(job_id=job_id)


def checkpoint_list(*, thread: Thread) -> QuerySet[Checkpoint]:
    """The thread's checkpoints (one per finished turn), newest first."""
    return Checkpoint.objects.filter(thread=thread).order_by("-event_sequence", "-created_at")


def file_list(*, principal: Principal) -> QuerySet[File]:
    """Files of the tenant the caller may see, newest first: its own uploads (with aihub.user.threads: files are
    what messages attach), every file of the tenant with aihub.admin.threads."""
    files = File.objects.filter(tenant=principal.tenant).select_related("uploaded_by").order_by("-created_at", "id")
    if principal.can("admin", "threads"):
        return files
    if not principal.can("user", "threads"):
        return files.none()
    return files.filter(uploaded_by=principal.user)


def file_get(*, principal: Principal, file_id: uuid.UUID | str) -> File:
    """The file, or Http404 when it does not exist or the caller may not see it."""
    file = file_list(principal=principal).filter(pk=file_id).first()
    if file is None:
        raise not_found("file", file_id)
    return file


def files_of_uploader(*, tenant_id: uuid.UUID, user_id: int, ids: Iterable[uuid.UUID]) -> QuerySet[File]:
    """The files among ``ids`` this user uploaded in this tenant: what a message of theirs may attach."""
    return File.objects.filter(tenant_id=tenant_id, uploaded_by_id=user_id, pk__in=list(ids))


def files_by_id(*, tenant_id: uuid.UUID, ids: Iterable[uuid.UUID | str]) -> dict[str, File]:
    """The tenant's files among ``ids``, by id as a string (what content blocks carry)."""
    return {str(file.pk): file for file in File.objects.filter(tenant_id=tenant_id, pk__in=list(ids))}
