"""Operators read threads, messages and events in the admin; the only write is deleting a thread."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.factories import UserFactory
from tests.threads.factories import ThreadFactory
from threads import services
from threads.admin import RECENT_EVENTS
from threads.events import EventType, NewEvent
from threads.models import Checkpoint, Event, Message, Thread

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_site(db: None) -> Client:
    client = Client()
    client.force_login(UserFactory.create(username="operator", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def thread() -> Thread:
    thread = ThreadFactory.create(title="Refund")
    services.message_create(thread=thread, role="user", content="Where is my refund?")
    return thread


def url(name: str, *args: object) -> str:
    return reverse(f"admin:threads_{name}", args=args)


@pytest.mark.parametrize("model", ["thread", "message", "event"])
def test_every_changelist_loads(admin_site: Client, thread: Thread, model: str) -> None:
    response = admin_site.get(url(f"{model}_changelist"))

    assert response.status_code == 200


def test_a_thread_shows_its_messages_and_links_to_its_events(admin_site: Client, thread: Thread) -> None:
    response = admin_site.get(url("thread_change", thread.pk))

    assert response.status_code == 200
    assert "Where is my refund?" in response.content.decode()
    events_link = url("event_changelist") + f"?thread={thread.pk}"
    assert events_link in response.content.decode()
    assert admin_site.get(events_link).context["cl"].result_count == 1


def test_a_thread_page_shows_only_the_most_recent_events(admin_site: Client, thread: Thread) -> None:
    services.events_append(
        thread=thread, events=[NewEvent(EventType.LLM_CHUNK, {"delta": str(i)}) for i in range(RECENT_EVENTS + 5)]
    )

    response = admin_site.get(url("thread_change", thread.pk))

    shown = [form.instance.sequence for form in response.context["inline_admin_formsets"][1].formset.forms]
    assert shown == list(range(7, RECENT_EVENTS + 7))


def test_nothing_can_be_added_or_changed(admin_site: Client, thread: Thread) -> None:
    assert admin_site.get(url("thread_add")).status_code == 403
    assert admin_site.get(url("message_add")).status_code == 403
    response = admin_site.post(url("thread_change", thread.pk), {"title": "Hijacked"})
    assert response.status_code == 403
    assert Thread.objects.get(pk=thread.pk).title == "Refund"


def test_messages_and_events_cannot_be_deleted_on_their_own(admin_site: Client, thread: Thread) -> None:
    message = Message.objects.get(thread=thread)
    event = Event.objects.get(thread=thread)

    assert admin_site.post(url("message_delete", message.pk), {"post": "yes"}).status_code == 403
    assert admin_site.post(url("event_delete", event.pk), {"post": "yes"}).status_code == 403


def test_deleting_a_thread_removes_its_messages_and_events(admin_site: Client, thread: Thread, db: None) -> None:
    response = admin_site.post(url("thread_delete", thread.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert not Message.objects.filter(thread_id=thread.pk).exists()
    assert not Event.objects.filter(thread_id=thread.pk).exists()


def test_a_staff_user_without_permissions_sees_nothing(thread: Thread) -> None:
    client = Client()
    client.force_login(User.objects.create_user("clerk", is_staff=True))

    assert client.get(url("thread_changelist")).status_code == 403


def test_a_thread_page_lists_its_checkpoints_and_deleting_the_thread_takes_them_along(
    admin_site: Client, thread: Thread
) -> None:
    services.thread_state_update(thread=thread, state={"plan": "premium"})
    services.checkpoint_record(thread_id=thread.pk, job_id=None, agent_id=None)

    page = admin_site.get(url("thread_change", thread.pk)).content.decode()
    deleted = admin_site.post(url("thread_delete", thread.pk), {"post": "yes"})

    assert "Checkpoints" in page and "premium" in page
    assert deleted.status_code == 302
    assert not Checkpoint.objects.exists()
