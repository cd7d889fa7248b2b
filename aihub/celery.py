"""The Celery app, and the worker that runs inside the server process in the embedded configuration."""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")

app = Celery("aihub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

_embedded_worker_lock = threading.Lock()
_embedded_worker: threading.Thread | None = None


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
        worker = app.WorkController(
            concurrency=settings.CELERY_EMBEDDED_CONCURRENCY,
            pool="threads",
            hostname=f"embedded@{os.getpid()}",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        _embedded_worker = threading.Thread(target=worker.start, name="aihub-embedded-worker", daemon=True)
        _embedded_worker.start()
        logger.info("embedded Celery worker started (concurrency %s)", settings.CELERY_EMBEDDED_CONCURRENCY)
        return _embedded_worker


def embedded_worker_alive() -> bool:
    return _embedded_worker is not None and _embedded_worker.is_alive()


def embedded_worker_started() -> bool:
    """Whether this process started the embedded worker (servers do; tests and commands usually don't)."""
    return _embedded_worker is not None
