from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from aihub.access.models import Membership
from tests.factories import ApiTokenFactory, IssuedApiToken, MembershipFactory, TenantFactory, UserFactory
from tests.helpers import bearer

# Real daphne servers (embedded and scaled out), celery workers and a headless browser as fixtures for any test module.
pytest_plugins = ["tests.servers", "tests.browser", "tests.file_server", "tests.workers"]

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> str:
    """Return ``url`` when the service answers; otherwise skip, or fail when CI is set."""
    if _reachable(url):
        return url
    message = f"{name} is not reachable at {url}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    """A Redis for tests that need one, whichever configuration the suite runs in."""
    return require_service("Redis", os.environ.get("REDIS_URL") or os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL))


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def broker_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery prefers the CELERY_BROKER_URL environment variable (set in the services run) to configuration:
    drop it, so that the test's CELERY_BROKER_URL setting counts."""
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # Factories give every user a real password; the production hasher would cost a quarter second each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Throttle counters live in the cache; every test starts with none.
    cache.clear()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def membership(db: None) -> Membership:
    """A user who is a plain member of a tenant."""
    return MembershipFactory.create(roles=["member"])


@pytest.fixture
def admin_membership(db: None) -> Membership:
    return MembershipFactory.create(roles=["admin"])


@pytest.fixture
def token_for() -> Callable[..., IssuedApiToken]:
    """``token_for(membership)``: a fresh API token of that member, its secret in ``.raw``."""

    def make(membership: Membership, **kwargs: object) -> IssuedApiToken:
        return ApiTokenFactory.create(user=membership.user, **kwargs)

    return make


@pytest.fixture
def client_as(token_for: Callable[..., IssuedApiToken]) -> Callable[..., APIClient]:
    """``client_as(membership)``: an API client carrying a fresh API token of that member."""

    def make(membership: Membership, **token_kwargs: object) -> APIClient:
        return bearer(token_for(membership, **token_kwargs).raw)

    return make


__all__ = ["TenantFactory", "UserFactory", "require_service"]
