"""Threads, messages and the event log for operators: read-only, since the log is a record of what happened.

The only write is deleting a thread, through threads.services.thread_delete.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from threads import services
from threads.models import Checkpoint, Event, File, Message, Thread

RECENT_EVENTS = 200

THREAD_FIELDS: tuple[str, ...] = (
    "id",
    "tenant",
    "title",
    "created_by",
    "metadata",
    "state",
    "last_sequence",
    "all_events",
    "created_at",
    "updated_at",
)
MESSAGE_FIELDS: tuple[str, ...] = (
    "id",
    "thread",
    "role",
    "content",
    "author",
    "agent_id",
    "job_id",
    "metadata",
    "created_at",
)
MESSAGE_INLINE_FIELDS: tuple[str, ...] = ("created_at", "role", "content", "author", "agent_id", "job_id")
EVENT_FIELDS: tuple[str, ...] = ("id", "thread", "sequence", "type", "job_id", "agent_id", "data", "created_at")
EVENT_INLINE_FIELDS: tuple[str, ...] = ("sequence", "type", "job_id", "agent_id", "data", "created_at")


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MessageInline(ReadOnlyInline):
    model = Message
    fields = readonly_fields = MESSAGE_INLINE_FIELDS
    ordering = ["created_at", "id"]


class RecentEventsFormSet(BaseInlineFormSet):
    """The last ``RECENT_EVENTS`` events of the thread: a long job writes thousands, the page must stay light."""

    def get_queryset(self) -> QuerySet[Event]:
        events = super().get_queryset()
        recent = events.order_by("-sequence").values_list("pk", flat=True)[:RECENT_EVENTS]
        return events.filter(pk__in=list(recent)).order_by("sequence")


class CheckpointInline(ReadOnlyInline):
    model = Checkpoint
    fields = readonly_fields = ("event_sequence", "job_id", "agent_id", "message_id", "state", "created_at")
    ordering = ["-event_sequence"]
    show_change_link = False


class EventInline(ReadOnlyInline):
    model = Event
    formset = RecentEventsFormSet
    fields = readonly_fields = EVENT_INLINE_FIELDS
    verbose_name_plural = f"events (the last {RECENT_EVENTS}; see 'all events' above for the rest)"


@admin.register(Thread)
class ThreadAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["__str__", "tenant", "created_by", "created_at", "last_sequence"]
    list_filter = ["tenant"]
    list_select_related = ["tenant", "created_by"]
    search_fields = ["title", "=id"]
    date_hierarchy = "created_at"
    fields = readonly_fields = THREAD_FIELDS
    inlines = [MessageInline, EventInline, CheckpointInline]

    @admin.display(description="all events")
    def all_events(self, thread: Thread) -> str:
        url = reverse("admin:threads_event_changelist") + f"?thread={thread.pk}"
        return format_html('<a href="{}">{} events in the log</a>', url, thread.last_sequence)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Messages and events cannot be deleted on their own (their admins say so), but they go with their thread.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        goes_along = {str(model._meta.verbose_name) for model in (Message, Event, Checkpoint)}
        return deleted, counts, {name for name in perms_needed if str(name) not in goes_along}, protected

    def delete_model(self, request: HttpRequest, obj: Thread) -> None:
        services.thread_delete(thread=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        for thread in queryset:
            services.thread_delete(thread=thread)


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "thread", "role", "author", "agent_id", "job_id", "created_at"]
    list_filter = ["role", "thread__tenant"]
    list_select_related = ["thread", "author"]
    search_fields = ["=id", "=thread__id", "=job_id"]
    date_hierarchy = "created_at"
    fields = readonly_fields = MESSAGE_FIELDS

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a message goes with its thread


@admin.register(Event)
class EventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["sequence", "type", "thread", "job_id", "agent_id", "created_at"]
    list_filter = ["type", "thread__tenant"]
    list_select_related = ["thread"]
    search_fields = ["=thread__id", "=job_id", "type"]
    ordering = ["-id"]
    # Counting a large log on every page load is the slow part of a changelist.
    show_full_result_count = False
    fields = readonly_fields = EVENT_FIELDS

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the log is gap-free; events go with their thread


FILE_FIELDS: tuple[str, ...] = (
    "id",
    "tenant",
    "name",
    "media_type",
    "size",
    "sha256",
    "uploaded_by",
    "source_url",
    "content",
    "text",
    "created_at",
)


@admin.register(File)
class FileAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Uploaded and fetched files, read-only; deleting one goes through threads.services.file_delete (its bytes
    leave storage too)."""

    list_display = ["name", "media_type", "size", "tenant", "uploaded_by", "created_at"]
    list_filter = ["media_type", "tenant"]
    list_select_related = ["tenant", "uploaded_by"]
    search_fields = ["name", "=id", "=sha256"]
    date_hierarchy = "created_at"
    fields = readonly_fields = FILE_FIELDS

    def delete_model(self, request: HttpRequest, obj: File) -> None:
        services.file_delete(file=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[File]) -> None:
        for file in queryset:
            services.file_delete(file=file)
