"""The embedded configuration's broker: kombu's in-memory transport, woken by each message instead of polled.

kombu's virtual transports poll: an empty ``drain_events`` sleeps ``polling_interval`` and looks again, so with
the in-memory transport every job waited up to that interval (0.1 s here before; kombu's default is 1 s) before
a worker thread saw it. This subclass keeps the in-memory queues as they are and replaces the sleep with a wait
on an event that every put sets, so the embedded worker starts a job the moment it is submitted. The poll
interval stays as a safety net only.

Registered as the ``memory://`` transport by :mod:`aihub.celery`; messages still only travel between threads of
one process, which is why the embedded worker runs inside the server.
"""

from __future__ import annotations

import threading
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import memory

_message_put = threading.Event()
"""Set by every put on any in-memory queue, and by every ack or reject (which frees a prefetch slot, so a message
the worker could not take before may be taken now); cleared by a draining worker before it looks at the queues."""

SAFETY_NET_SECONDS = 1.0


class Channel(memory.Channel):
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        super()._put(queue, message, **kwargs)
        _message_put.set()

    def _put_fanout(self, exchange: str, message: Any, routing_key: str | None = None, **kwargs: Any) -> None:
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        _message_put.set()

    # With acks_late and a prefetch of one per worker thread, a busy worker holds as many messages as it has
    # threads and takes no more until one is acked: without a wake-up here, every job that waited behind others
    # waited out the safety net (up to a second) after a thread had become free.
    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        _message_put.set()

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        _message_put.set()


class Transport(memory.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:  # type: ignore[override]
        assert self.cycle is not None
        started = monotonic()
        while True:
            # Cleared before looking, so a put that lands between the look and the wait still wakes the wait.
            _message_put.clear()
            try:
                self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                remaining = None if timeout is None else timeout - (monotonic() - started)
                if remaining is not None and remaining <= 0:
                    raise TimeoutError() from None
                _message_put.wait(SAFETY_NET_SECONDS if remaining is None else min(remaining, SAFETY_NET_SECONDS))
            else:
                return
