"""Reads of threads, messages and events, narrowed to what the caller may see."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.db.models import Q, QuerySet
from django.http import Http404

from threads.models import Event, Message, Thread

if TYPE_CHECKING:
    from aihub.access.principal import Principal


def thread_list(*, principal: Principal) -> QuerySet[Thread]:
    """Threads of the tenant the caller takes part in; with aihub.admin.threads, every thread of the tenant."""
    threads = Thread.objects.filter(tenant=principal.tenant).select_related("created_by")
    if principal.can("admin", "threads"):
        return threads
    visible = principal.visible(threads, "threads")
    if not principal.can("user", "threads"):
        return visible  # explicit per-thread rules only
    return visible.filter(Q(members__user=principal.user)).distinct()


def thread_get(*, principal: Principal, thread_id: uuid.UUID | str) -> Thread:
    """The thread, or Http404 when it does not exist or the caller may not see it."""
    thread = thread_list(principal=principal).filter(pk=thread_id).first()
    if thread is None:
        raise Http404("No such thread.")
    return thread


def message_list(*, thread: Thread) -> QuerySet[Message]:
    return Message.objects.filter(thread=thread).order_by("created_at", "id")


def event_list(*, thread: Thread, after: int = 0) -> QuerySet[Event]:
    return Event.objects.filter(thread=thread, sequence__gt=after).order_by("sequence")
