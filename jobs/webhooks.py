"""Webhooks of jobs: a job submitted with ``webhook`` has its final state POSTed there, signed, retried with
backoff, every attempt recorded as a WebhookDelivery.

The request: ``Content-Type: application/json``, the body below, and

- ``X-Aihub-Event``: ``job.succeeded`` (or ``job.failed``, ``job.cancelled``, ``job.expired``);
- ``X-Aihub-Delivery``: the job's id and the attempt, ``<job id>:<attempt>`` (the same for a repeated attempt);
- ``X-Aihub-Timestamp``: Unix seconds when it was signed;
- ``X-Aihub-Signature``: ``sha256=`` + hex HMAC-SHA256, keyed with WEBHOOK_SECRET, over ``<timestamp>.<body>``.

A receiver recomputes the signature over the raw body and refuses old timestamps (``webhook_verify`` does both).
A 2xx answer ends the deliveries; a 408, 429, 5xx, timeout or connection error is retried after
WEBHOOK_RETRY_BASE_SECONDS * 2^(attempt - 1) (at most WEBHOOK_RETRY_MAX_SECONDS), up to WEBHOOK_MAX_ATTEMPTS;
any other answer, or a URL no longer allowed, ends them at once. URLs go through aihub.outbound: only under
WEBHOOK_URL_ALLOWLIST, never to private addresses unless OUTBOUND_ALLOW_PRIVATE_NETWORKS.

WEBHOOK_EXTENSIONS lets a door add its protocol's view of the job to the body and headers of its own clients'
webhooks (aihub.interop.a2a.push: the A2A task and the client's token), signed with the rest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from aihub import outbound
from aihub.celery import task_send
from aihub.conf import aihub_settings
from jobs.models import FINAL_STATUSES, Job, WebhookDelivery

EVENT_HEADER = "X-Aihub-Event"
DELIVERY_HEADER = "X-Aihub-Delivery"
TIMESTAMP_HEADER = "X-Aihub-Timestamp"
SIGNATURE_HEADER = "X-Aihub-Signature"
RETRIED_STATUSES = frozenset({408, 429})


def webhook_check(url: str) -> str:
    """``url`` when jobs may report to it, else a ValidationError naming ``webhook`` (not configured, not on
    WEBHOOK_URL_ALLOWLIST, a private address...)."""
    if not aihub_settings.WEBHOOK_SECRET:
        raise ValidationError({"webhook": "Webhooks are not configured on this server (AIHUB_WEBHOOK_SECRET)."})
    try:
        return outbound.check_outbound_url(url, allowlist=list(aihub_settings.WEBHOOK_URL_ALLOWLIST))
    except outbound.OutboundURLError as exc:
        raise ValidationError({"webhook": str(exc)}) from None


def webhook_sign(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_verify(*, secret: str, timestamp: str, signature: str, body: bytes, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches (compared in constant time) and the timestamp is recent."""
    try:
        signed_at = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - signed_at) > tolerance:
        return False
    return hmac.compare_digest(webhook_sign(secret=secret, timestamp=signed_at, body=body), signature)


def webhook_payload(job: Job) -> dict[str, Any]:
    return {
        "type": f"job.{job.status}",
        "job": {
            "id": str(job.pk),
            "status": job.status,
            "agent": job.agent.slug,
            "thread": str(job.thread_id),
            "output": job.output,
            "usage": job.usage,
            "error": job.error,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
        },
    }


WebhookExtension = tuple[dict[str, Any], dict[str, str]]


def webhook_extensions(job: Job) -> WebhookExtension:
    """What the WEBHOOK_EXTENSIONS callables add to the job's webhook: body fields beside ``type`` and ``job``
    (which they cannot replace), and headers (never the signature's)."""
    body: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for path in aihub_settings.WEBHOOK_EXTENSIONS:
        extension = import_string(path)(job)
        if extension is not None:
            body.update(extension[0])
            headers.update(extension[1])
    return body, headers


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): doubling from the base, capped."""
    base = float(aihub_settings.WEBHOOK_RETRY_BASE_SECONDS)
    return float(min(base * 2 ** (attempt - 1), float(aihub_settings.WEBHOOK_RETRY_MAX_SECONDS)))


def webhook_enqueue(*, job_id: uuid.UUID, attempt: int = 1, countdown: float = 0) -> None:
    task_send("jobs.deliver_webhook", str(job_id), attempt, countdown=countdown)


def webhook_deliver(*, job_id: uuid.UUID, attempt: int) -> WebhookDelivery | None:
    """Make attempt ``attempt`` to deliver the job's webhook and record it; None when there is nothing to do (no
    webhook, the job not final, or this attempt already made — a task redelivered after a crash).

    The delivery's ``next_attempt_at`` says whether another attempt is due (the task schedules it).
    """
    job = Job.objects.select_related("agent").filter(pk=job_id).first()
    if job is None or not job.webhook or job.status not in FINAL_STATUSES:
        return None
    if WebhookDelivery.objects.filter(job=job, attempt=attempt).exists():
        return None
    event = f"job.{job.status}"
    extra_body, extra_headers = webhook_extensions(job)
    payload = {**extra_body, **webhook_payload(job)}
    body = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        **extra_headers,
        "Content-Type": "application/json",
        "User-Agent": "aihub-webhooks",
        EVENT_HEADER: event,
        DELIVERY_HEADER: f"{job.pk}:{attempt}",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: webhook_sign(secret=str(aihub_settings.WEBHOOK_SECRET), timestamp=timestamp, body=body),
    }
    status: int | None = None
    error = ""
    retry = False
    started = time.monotonic()
    if not aihub_settings.WEBHOOK_SECRET:
        error = "Webhooks are no longer configured on this server (AIHUB_WEBHOOK_SECRET)."
    else:
        try:
            status = outbound.post(
                job.webhook, allowlist=list(aihub_settings.WEBHOOK_URL_ALLOWLIST), body=body, headers=headers
            )
        except outbound.OutboundURLError as exc:
            error = str(exc)[:500]
            # Reaching the host failed: worth another try. A URL that is not allowed (any more) will not become so.
            retry = exc.code in ("unreachable", "unresolvable")
        else:
            if not 200 <= status < 300:
                error = f"The receiver answered HTTP {status}."
                retry = status >= 500 or status in RETRIED_STATUSES
    duration_ms = int((time.monotonic() - started) * 1000)
    retry = retry and attempt < int(aihub_settings.WEBHOOK_MAX_ATTEMPTS)
    next_at = timezone.now() + timedelta(seconds=retry_delay(attempt)) if retry else None
    try:
        with transaction.atomic():
            return WebhookDelivery.objects.create(
                tenant_id=job.tenant_id,
                job=job,
                event=event,
                url=job.webhook,
                attempt=attempt,
                succeeded=status is not None and 200 <= status < 300,
                response_status=status,
                error=error,
                duration_ms=duration_ms,
                next_attempt_at=next_at,
            )
    except IntegrityError:
        return None  # the same attempt, run twice at once, was recorded by the other run
