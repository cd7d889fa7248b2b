"""Per-request model credentials (``client_config``) on their way from the request to the worker that runs its job.

The key must reach another process (a Celery worker) without being written anywhere in clear: not in the job's
row, its events, the task message or a log. So the submission seals it — Fernet (AES-128-CBC with HMAC-SHA256)
under a key derived from SECRET_KEY with HKDF — into one cache entry named by the job id, with a TTL
(JOBS_CLIENT_CONFIG_TTL_SECONDS). The worker opens it when it builds the run, holds it in memory for the run
only, and the entry is deleted as soon as the job ends. A job whose entry is gone (the TTL passed before a
worker took it, or the cache lost it) fails with ``client-config-unavailable`` rather than falling back to the
operator's provider.

What this defends against: a database dump or backup, the job API, the event log and streams, the broker's task
messages, logs, error messages, and someone reading the cache (Redis) without SECRET_KEY. What it does not: an
attacker with both SECRET_KEY and the cache while the job is alive, or with the worker's memory.
"""

from __future__ import annotations

import base64
import json
import uuid
from functools import cache as memoized

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.cache import cache

from agents.providers.base import ClientConfig

_CACHE_PREFIX = "jobs:client-config:"
_HKDF_INFO = b"aihub jobs client_config v1"


@memoized
def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _key(job_id: uuid.UUID) -> str:
    return f"{_CACHE_PREFIX}{job_id}"


def client_config_seal(*, job_id: uuid.UUID, config: ClientConfig) -> None:
    """Keep the job's credentials, encrypted, for its worker (JOBS_CLIENT_CONFIG_TTL_SECONDS at most)."""
    plain = json.dumps(
        {"base_url": config.base_url, "api_key": config.api_key, "default_headers": config.default_headers}
    )
    # The job id is authenticated with the secret: an entry copied under another job's name does not open.
    token = _fernet(settings.SECRET_KEY).encrypt(f"{job_id}\n{plain}".encode())
    cache.set(_key(job_id), token, timeout=settings.JOBS_CLIENT_CONFIG_TTL_SECONDS)


def client_config_open(*, job_id: uuid.UUID) -> ClientConfig | None:
    """The job's credentials, or None when they are gone (expired, deleted, or not sealed by this deployment)."""
    token = cache.get(_key(job_id))
    if not isinstance(token, bytes):
        return None
    try:
        named, _, plain = _fernet(settings.SECRET_KEY).decrypt(token).decode().partition("\n")
    except InvalidToken:
        return None
    if named != str(job_id):
        return None
    data = json.loads(plain)
    return ClientConfig(
        base_url=data["base_url"], api_key=data["api_key"], default_headers=dict(data.get("default_headers") or {})
    )


def client_config_drop(*, job_id: uuid.UUID) -> None:
    """Forget the job's credentials (when it ends)."""
    cache.delete(_key(job_id))
