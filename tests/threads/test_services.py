"""The event log's sequence numbers, publishing after commit, and thread state, through threads.services."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, connections, transaction

from tests.factories import UserFactory
from tests.threads.factories import ThreadFactory
from threads import services
from threads.events import EventType, NewEvent, thread_group
from threads.models import Event, Thread

pytestmark = pytest.mark.django_db


def chunk(text: str = "hi") -> NewEvent:
    return NewEvent(EventType.LLM_CHUNK, {"delta": text})


def sequences(thread: Thread) -> list[int]:
    return list(Event.objects.filter(thread=thread).order_by("sequence").values_list("sequence", flat=True))


def run_at_once(workers: int, work: Callable[[int], object]) -> None:
    """Run ``work(i)`` on ``workers`` threads released together, each with its own database connection."""
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=10)
            work(index)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


@pytest.fixture
def postgresql() -> None:
    # SQLite has one writer at a time, so there is no concurrency to test; PostgreSQL runs in CI.
    if connection.vendor != "postgresql":
        pytest.skip("concurrency needs PostgreSQL (set DATABASE_URL)")


# --- Sequence numbers ------------------------------------------------------------------------------------


def test_events_are_numbered_from_one_in_the_order_given() -> None:
    thread = ThreadFactory.create()

    created = services.events_append(thread=thread, events=[chunk("a"), chunk("b"), chunk("c")])

    assert [(e.sequence, e.data["delta"]) for e in created] == [(1, "a"), (2, "b"), (3, "c")]
    assert thread.last_sequence == 3
    assert Thread.objects.get(pk=thread.pk).last_sequence == 3


def test_each_thread_has_its_own_sequence() -> None:
    first, second = ThreadFactory.create(), ThreadFactory.create()

    services.events_append(thread=first, events=[chunk(), chunk()])
    services.events_append(thread=second, events=[chunk()])

    assert sequences(first) == [1, 2]
    assert sequences(second) == [1]


def test_appending_nothing_reserves_nothing() -> None:
    thread = ThreadFactory.create()

    assert services.events_append(thread=thread, events=[]) == []
    assert Thread.objects.get(pk=thread.pk).last_sequence == 0


def test_a_rolled_back_transaction_gives_its_numbers_back() -> None:
    thread = ThreadFactory.create()
    services.events_append(thread=thread, events=[chunk()])

    with pytest.raises(RuntimeError), transaction.atomic():
        services.events_append(thread=thread, events=[chunk(), chunk()])
        raise RuntimeError("the job failed half way")
    services.events_append(thread=thread, events=[chunk()])

    assert sequences(thread) == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_get_gap_free_unique_sequences(postgresql: None) -> None:
    thread = ThreadFactory.create()
    workers, batches = 8, 10

    def write(index: int) -> None:
        for batch in range(batches):
            # Batches of different sizes: each reserves a block of numbers in one UPDATE ... RETURNING.
            size = 1 + (index + batch) % 3
            services.events_append(thread=thread, events=[chunk(f"{index}-{batch}") for _ in range(size)])

    run_at_once(workers, write)

    expected = sum(1 + (i + b) % 3 for i in range(workers) for b in range(batches))
    assert sequences(thread) == list(range(1, expected + 1))
    assert Thread.objects.get(pk=thread.pk).last_sequence == expected


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_with_failures_leave_no_gaps(postgresql: None) -> None:
    thread = ThreadFactory.create()

    def write(index: int) -> None:
        for batch in range(5):
            try:
                with transaction.atomic():
                    services.events_append(thread=thread, events=[chunk(), chunk()])
                    if (index + batch) % 2:
                        raise RuntimeError("rolled back")
            except RuntimeError:
                pass

    run_at_once(6, write)

    kept = sum(2 for i in range(6) for b in range(5) if not (i + b) % 2)
    assert sequences(thread) == list(range(1, kept + 1))


# --- Publishing ------------------------------------------------------------------------------------------


async def next_message(layer: Any, channel: str, timeout: float = 0.3) -> dict[str, Any] | None:
    try:
        return dict(await asyncio.wait_for(layer.receive(channel), timeout))
    except TimeoutError:
        return None


@pytest.mark.django_db(transaction=True)
def test_events_reach_the_channel_layer_only_after_commit() -> None:
    thread = ThreadFactory.create()
    layer = get_channel_layer()

    async def scenario() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        channel = await layer.new_channel()
        await layer.group_add(thread_group(thread.pk), channel)
        # Thread-sensitive sync code runs on this test's thread, so the block spans the calls on one connection.
        block = transaction.atomic()
        await sync_to_async(block.__enter__)()
        await sync_to_async(services.events_append)(thread=thread, events=[chunk("a"), chunk("b")])
        before_commit = await next_message(layer, channel)
        await sync_to_async(block.__exit__)(None, None, None)
        after_commit = await next_message(layer, channel, timeout=5)
        await layer.group_discard(thread_group(thread.pk), channel)
        return before_commit, after_commit

    before_commit, after_commit = async_to_sync(scenario)()

    assert before_commit is None
    assert after_commit is not None
    assert after_commit["type"] == "thread.events"
    assert [(e["id"], e["type"], e["data"]) for e in after_commit["events"]] == [
        (1, "llm.chunk", {"delta": "a"}),
        (2, "llm.chunk", {"delta": "b"}),
    ]
    assert after_commit["events"][0]["thread"] == str(thread.pk)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_append_is_never_published() -> None:
    thread = ThreadFactory.create()
    layer = get_channel_layer()

    async def scenario() -> dict[str, Any] | None:
        channel = await layer.new_channel()
        await layer.group_add(thread_group(thread.pk), channel)

        def append_then_fail() -> None:
            with pytest.raises(RuntimeError), transaction.atomic():
                services.events_append(thread=thread, events=[chunk()])
                raise RuntimeError("rolled back")

        await sync_to_async(append_then_fail)()
        received = await next_message(layer, channel)
        await layer.group_discard(thread_group(thread.pk), channel)
        return received

    assert async_to_sync(scenario)() is None


# --- Threads and state -----------------------------------------------------------------------------------


def test_a_new_thread_has_its_creator_and_agents_as_members() -> None:
    user = UserFactory.create()
    agent_id = uuid.uuid4()

    thread = services.thread_create(tenant=ThreadFactory.create().tenant, created_by=user, agent_ids=[agent_id])

    assert {(m.user_id, m.agent_id) for m in thread.members.all()} == {(user.pk, None), (None, agent_id)}


def test_updating_a_thread_records_what_changed() -> None:
    thread = ThreadFactory.create(title="Before")

    services.thread_update(thread=thread, title="After")

    event = Event.objects.get(thread=thread)
    assert (event.type, event.data) == ("thread.updated", {"title": "After"})
    assert thread.last_sequence == event.sequence


def test_an_update_that_changes_nothing_records_nothing() -> None:
    thread = ThreadFactory.create()

    services.thread_update(thread=thread)

    assert not Event.objects.filter(thread=thread).exists()


def test_merging_state_keeps_the_other_keys() -> None:
    thread = ThreadFactory.create()
    services.thread_state_update(thread=thread, state={"step": "start", "order": 1042})

    services.thread_state_update(thread=thread, state={"step": "confirm"}, mode="merge")

    assert Thread.objects.get(pk=thread.pk).state == {"step": "confirm", "order": 1042}
    assert thread.state == {"step": "confirm", "order": 1042}


def test_replacing_state_drops_the_other_keys() -> None:
    thread = ThreadFactory.create()
    services.thread_state_update(thread=thread, state={"step": "start", "order": 1042})

    services.thread_state_update(thread=thread, state={"step": "done"}, mode="replace")

    assert Thread.objects.get(pk=thread.pk).state == {"step": "done"}


def test_every_state_change_is_recorded_with_the_new_state() -> None:
    thread = ThreadFactory.create()

    services.thread_state_update(thread=thread, state={"a": 1})
    services.thread_state_update(thread=thread, state={"b": 2}, mode="merge")

    events = Event.objects.filter(thread=thread, type="state.updated").order_by("sequence")
    assert [e.data for e in events] == [
        {"mode": "merge", "state": {"a": 1}},
        {"mode": "merge", "state": {"a": 1, "b": 2}},
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_merges_keep_every_key(postgresql: None) -> None:
    thread = ThreadFactory.create()

    run_at_once(6, lambda index: services.thread_state_update(thread=thread, state={f"key{index}": index}))

    assert Thread.objects.get(pk=thread.pk).state == {f"key{i}": i for i in range(6)}
    assert sequences(thread) == list(range(1, 7))


def test_deleting_a_thread_deletes_its_messages_and_events() -> None:
    thread = ThreadFactory.create()
    services.message_create(thread=thread, role="user", content="hello")

    services.thread_delete(thread=thread)

    assert not Thread.objects.filter(pk=thread.pk).exists()
    assert not Event.objects.filter(thread_id=thread.pk).exists()
