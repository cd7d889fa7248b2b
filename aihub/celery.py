"""The Celery app, and the worker that runs inside the server process in the embedded configuration."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery, signals
from django.core.signals import setting_changed
from kombu.transport import TRANSPORT_ALIASES

from aihub import tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")

# memory:// is kombu's in-memory transport woken by each message rather than polled (aihub.embedded_broker):
# the same queues, without the poll interval's latency on every job. Registered before any connection exists.
TRANSPORT_ALIASES["memory"] = "aihub.embedded_broker:Transport"

app = Celery("aihub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)


@signals.worker_init.connect
def _trace_worker(sender: Any = None, **kwargs: Any) -> None:
    """Tracing in a `celery worker` process (a no-op without OTEL_EXPORTER_OTLP_ENDPOINT, and where the server's
    embedded worker runs, which aihub.asgi configured already)."""
    pool = getattr(sender, "pool_cls", "")
    # A prefork pool's children configure their own (worker_process_init): the exporter's thread and a gRPC
    # channel do not survive the fork.
    if "prefork" not in (pool if isinstance(pool, str) else getattr(pool, "__module__", "")):
        tracing.configure()


@signals.worker_process_init.connect
def _trace_worker_process(**kwargs: Any) -> None:
    tracing.configure()


def task_send(name: str, *args: Any, countdown: float = 0) -> None:
    """Send the task called ``name`` to the workers.

    By name, so that services, which queue work, never import the tasks that call back into them: the job path
    runs one way (service → on commit → task → runner → services). With ``task_always_eager`` (tests) it runs
    here and now, as ``apply_async`` would (which ignores the countdown then too).
    """
    if app.conf.task_always_eager:
        if name not in app.tasks:
            app.loader.import_default_modules()  # the apps' tasks modules, which autodiscovery imports lazily
        app.tasks[name].apply(args)
        return
    app.send_task(name, args=args, countdown=countdown or None)


_embedded_worker_lock = threading.Lock()
_embedded_worker: threading.Thread | None = None
_embedded_controller: Any = None


def start_embedded_worker() -> threading.Thread | None:
    """Start one worker thread consuming the in-memory broker, once per process.

    The in-memory transport only reaches consumers in the same process, which is why the embedded
    configuration runs the worker here instead of in a `celery worker` process. Returns the thread, or None
    when settings say separate workers do the work.
    """
    global _embedded_worker
    from django.conf import settings

    if not settings.CELERY_EMBEDDED_WORKER:
        return None
    with _embedded_worker_lock:
        if _embedded_worker is not None and _embedded_worker.is_alive():
            return _embedded_worker
        built = threading.Event()
        _embedded_worker = threading.Thread(
            target=_run_worker,
            args=(settings.CELERY_EMBEDDED_CONCURRENCY, built),
            name="aihub-embedded-worker",
            daemon=True,
        )
        _embedded_worker.start()
        # Wait until the controller exists, so that stop_embedded_worker() right after this has one to stop.
        built.wait(timeout=10)
        logger.info("embedded Celery worker started (concurrency %s)", settings.CELERY_EMBEDDED_CONCURRENCY)
        return _embedded_worker


def _run_worker(concurrency: int, built: threading.Event) -> None:
    global _embedded_controller
    # Built on the worker's own thread: Celery's Django fixup closes the database connections of the thread
    # that builds a worker, and those of the caller (a server starting up, a test) are not its to close.
    try:
        _embedded_controller = app.WorkController(
            concurrency=concurrency,
            pool="threads",
            hostname=f"embedded@{os.getpid()}",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
    finally:
        built.set()
    _embedded_controller.start()


def stop_embedded_worker(timeout: float = 10.0) -> None:
    """Stop the embedded worker (warm: running tasks finish) and wait for its thread; a no-op without one."""
    global _embedded_worker, _embedded_controller
    with _embedded_worker_lock:
        thread, controller = _embedded_worker, _embedded_controller
        if thread is None:
            return
        if controller is not None:
            controller.stop(in_sighandler=False)
        # The consumer notices only when its current wait on the broker returns (up to a second).
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("embedded Celery worker did not stop within %s seconds", timeout)
            return
        _embedded_worker = None
        _embedded_controller = None


def embedded_worker_alive() -> bool:
    return _embedded_worker is not None and _embedded_worker.is_alive()


def embedded_worker_started() -> bool:
    """Whether this process started the embedded worker (servers do; tests and commands usually don't)."""
    return _embedded_worker is not None


def _forget_broker_pools(*, setting: str, **kwargs: Any) -> None:
    """Drop pooled broker connections when a ``CELERY_BROKER_*`` setting changes at runtime (override_settings).

    ``app.conf`` reads Django's settings live, but the connection and producer pools were built for the old
    broker and would keep talking to it. This is what Celery itself does after a fork: forget the pools; the
    next use builds them from the current configuration.
    """
    if not setting.startswith("CELERY_BROKER_"):
        return
    app._pool = None  # type: ignore[attr-defined]
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


setting_changed.connect(_forget_broker_pools)


_embedded_beat: Any = None


def start_embedded_beat() -> Any:
    """Run Celery beat on a thread of this process (the janitor's schedule) when the embedded worker is used.

    A thread, not beat's default child process: the in-memory broker does not cross processes.
    """
    global _embedded_beat
    from celery.beat import EmbeddedService
    from django.conf import settings

    if not settings.CELERY_EMBEDDED_WORKER:
        return None
    with _embedded_worker_lock:
        if _embedded_beat is None:
            _embedded_beat = EmbeddedService(app, thread=True, schedule_filename=settings.CELERY_BEAT_SCHEDULE_FILENAME)
            _embedded_beat.start()
        return _embedded_beat


def broker_run_id() -> str | None:
    """The Redis broker's run id, which is new on every start of the Redis server; None for another broker or
    one that does not answer.

    A Redis that restarted without its append-only file has lost the task messages it held: the janitor compares
    this id with the last one it saw to re-send queued jobs at once rather than after the usual delay.
    """
    try:
        with app.connection_for_write() as conn:
            if conn.transport.driver_type != "redis":
                return None
            conn.ensure_connection(max_retries=0)
            # kombu's Redis channel holds a redis-py client; the abstract channel type does not say so.
            return str(conn.default_channel.client.info("server")["run_id"])  # type: ignore[attr-defined]
    except Exception as exc:  # whatever the broker does, the janitor goes on with its other repairs
        logger.warning("the broker's run id is unknown: %s", exc)
        return None
