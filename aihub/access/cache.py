"""Who a caller is, remembered per process: API token rows and tenant resolutions, forgotten when access changes.

Authenticating a token and resolving the caller's tenant and roles took three queries on every request. They are
kept here instead, each entry stamped with the *access generation*: a counter in Django's cache (Redis when
scaled out, so every process sees it) that any change of a tenant, role, membership, user or token bumps —
right away and again once the change commits (a reader in another process may have cached the old rows in
between). A lookup reads the counter (one cache read) and uses an entry only if it was stored under the current
generation and within ``TTL_SECONDS``. Entries are kept pickled and each hit unpickles its own copy: a request may
not change what the next one sees (a pickle round trip of model instances costs half a ``deepcopy``).

What is still checked on every request: the token's secret (its hash), its expiry and revocation time, whether
its user is active — on the cached row, which a revocation or deactivation replaces by bumping the generation.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import transaction

GENERATION_KEY = "aihub:access-generation"
TTL_SECONDS = 60.0
MAX_ENTRIES = 10_000

T = TypeVar("T")

_lock = threading.Lock()
_entries: OrderedDict[Any, tuple[int, float, bytes]] = OrderedDict()


def access_generation() -> int:
    return int(cache.get(GENERATION_KEY) or 0)


def _bump() -> None:
    try:
        cache.incr(GENERATION_KEY)
    except ValueError:  # not there yet (or evicted): any new value differs from what entries were stamped with
        cache.set(GENERATION_KEY, int(time.time() * 1000), None)
    with _lock:
        _entries.clear()


def access_changed() -> None:
    """Forget every cached token and principal, now and once the current transaction commits."""
    _bump()
    transaction.on_commit(_bump)


def remembered(key: Any, load: Callable[[], T]) -> T:
    """``load()``'s result for ``key``, from this process's cache while the access generation holds."""
    generation = access_generation()
    now = time.monotonic()
    with _lock:
        entry = _entries.get(key)
        fresh = entry is not None and entry[0] == generation and now - entry[1] < TTL_SECONDS
        if fresh:
            _entries.move_to_end(key)
    if entry is not None and fresh:
        return pickle.loads(entry[2])  # noqa: S301 - bytes this process pickled
    value = load()
    _store(key, value, generation=generation, now=now)
    return value


def remember(key: Any, value: Any) -> None:
    """Replace what is remembered for ``key`` by a row this process has just written itself."""
    _store(key, value, generation=access_generation(), now=time.monotonic())


def _store(key: Any, value: Any, *, generation: int, now: float) -> None:
    with _lock:
        _entries[key] = (generation, now, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
