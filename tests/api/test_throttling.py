"""Rate limits per token and per address: reported on every response, enforced with 429 + Retry-After."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.test import RequestFactory, override_settings
from rest_framework.request import Request
from rest_framework.test import APIClient

from aihub.access.models import Membership
from aihub.api.throttling import IpRateThrottle
from tests.factories import IssuedApiToken
from tests.helpers import assert_problem, bearer

pytestmark = pytest.mark.django_db

TOKEN_LIMITED = {"THROTTLE_RATES": {"token": "3/minute", "ip": "100/minute"}}
ADDRESS_LIMITED = {"THROTTLE_RATES": {"token": "100/minute", "ip": "3/minute"}}


@pytest.fixture
def token_limited() -> Iterator[None]:
    with override_settings(AIHUB=TOKEN_LIMITED):
        yield


@pytest.fixture
def address_limited() -> Iterator[None]:
    with override_settings(AIHUB=ADDRESS_LIMITED):
        yield


def _hit(client: APIClient, times: int, path: str = "/api/v1/me", **extra: Any) -> list[Any]:
    return [client.get(path, **extra) for _ in range(times)]


def test_responses_report_the_limit_what_remains_and_when_it_resets(member_client: APIClient) -> None:
    before = time.time()
    with override_settings(AIHUB=TOKEN_LIMITED):
        first, second = _hit(member_client, 2)

    assert first.status_code == 200
    assert first["X-RateLimit-Limit"] == "3"
    assert first["X-RateLimit-Remaining"] == "2"
    assert second["X-RateLimit-Remaining"] == "1"
    assert before < int(first["X-RateLimit-Reset"]) <= before + 121


def test_exceeding_the_token_rate_is_a_429_problem_with_retry_after(
    token_limited: None, member_client: APIClient
) -> None:
    *allowed, refused = _hit(member_client, 4)

    assert [response.status_code for response in allowed] == [200, 200, 200]
    body = assert_problem(refused, 429)
    assert body["type"] == "urn:aihub:problem:rate-limited"
    # The window slides: the three requests weigh on the next minute until a third of it has passed.
    assert 1 <= int(refused["Retry-After"]) <= 60 + 60 // 3
    assert refused["X-RateLimit-Remaining"] == "0"


def test_two_tokens_have_separate_budgets(
    token_limited: None, membership: Membership, client_as: Callable[..., APIClient]
) -> None:
    first, second = client_as(membership), client_as(membership)

    _hit(first, 3)

    assert first.get("/api/v1/me").status_code == 429
    assert second.get("/api/v1/me").status_code == 200


def test_a_flood_of_bad_tokens_from_one_address_is_stopped_before_authentication(
    address_limited: None, api_client: APIClient
) -> None:
    responses = [api_client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer aih_guess_{index}") for index in range(4)]

    assert [response.status_code for response in responses[:3]] == [401, 401, 401]
    assert_problem(responses[3], 429)
    assert "Retry-After" in responses[3]


def test_a_forged_forwarded_for_header_does_not_buy_a_fresh_budget(
    address_limited: None, api_client: APIClient
) -> None:
    responses = [
        api_client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer aih_guess", HTTP_X_FORWARDED_FOR=f"10.0.0.{index}")
        for index in range(4)
    ]

    assert responses[3].status_code == 429


def test_another_address_keeps_its_own_budget(address_limited: None, api_client: APIClient) -> None:
    _hit(api_client, 3, HTTP_AUTHORIZATION="Bearer aih_guess")

    assert api_client.get("/api/v1/me", REMOTE_ADDR="192.0.2.7").status_code == 401


def test_a_request_counts_once_against_its_address(address_limited: None, member_client: APIClient) -> None:
    # API views consult the address limit before authentication and again with the other throttles.
    responses = _hit(member_client, 3)

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert responses[-1]["X-RateLimit-Remaining"] == "0"


def test_the_headers_show_whichever_limit_is_closer(member_client: APIClient) -> None:
    with override_settings(AIHUB={"THROTTLE_RATES": {"token": "10/minute", "ip": "5/minute"}}):
        response = member_client.get("/api/v1/me")

    assert response["X-RateLimit-Limit"] == "5"
    assert response["X-RateLimit-Remaining"] == "4"


def test_unauthenticated_routes_are_limited_by_address(address_limited: None, api_client: APIClient) -> None:
    *allowed, refused = _hit(api_client, 4, path="/api/v1/health")

    assert [response.status_code for response in allowed] == [200, 200, 200]
    assert_problem(refused, 429)


# --- shared through Redis -----------------------------------------------------------------------------------


@pytest.fixture
def redis_cache(redis_url: str) -> Iterator[dict[str, Any]]:
    """The default cache on Redis, under a prefix of its own so parallel runs cannot meet."""
    config = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        }
    }
    with override_settings(CACHES=config):
        yield config["default"]
        cache.clear()


def test_with_redis_the_counter_is_shared_between_cache_clients(
    token_limited: None,
    redis_cache: dict[str, Any],
    membership: Membership,
    token_for: Callable[..., IssuedApiToken],
) -> None:
    token = token_for(membership)
    client = bearer(token.raw)
    assert isinstance(caches["default"], RedisCache)

    _hit(client, 3)

    # A second web process: the same settings, a new cache client with a connection of its own.
    with override_settings(CACHES={"default": redis_cache}):
        assert_problem(client.get("/api/v1/me"), 429)

    other_client = RedisCache(redis_cache["LOCATION"], {"KEY_PREFIX": redis_cache["KEY_PREFIX"]})
    window = int(time.time() // 60)
    counted = other_client.get(f"throttle:token:ApiToken:{token.pk}:{window}")
    assert counted is not None and counted >= 3


# --- the window, on a clock the test moves ------------------------------------------------------------------


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _ask(clock: _Clock) -> IpRateThrottle:
    """One request from 203.0.113.9 to a throttle reading ``clock``; returns the throttle after deciding."""
    throttle = IpRateThrottle()
    throttle.timer = clock
    request = Request(RequestFactory().get("/api/v1/health", REMOTE_ADDR="203.0.113.9"))
    throttle.verdict = throttle.allow_request(request, None)  # type: ignore[attr-defined]
    return throttle


def test_a_refused_client_that_waits_retry_after_seconds_gets_in(address_limited: None) -> None:
    clock = _Clock(now=6_000_000.0 + 45)  # three quarters into a minute
    for _ in range(3):
        assert _ask(clock).verdict  # type: ignore[attr-defined]
    refused = _ask(clock)
    assert not refused.verdict  # type: ignore[attr-defined]

    clock.now += refused.wait() or 0

    assert _ask(clock).verdict  # type: ignore[attr-defined]


def test_there_is_no_burst_of_twice_the_limit_across_a_window_edge(address_limited: None) -> None:
    clock = _Clock(now=6_000_000.0 + 59)  # a second before the edge
    assert all(_ask(clock).verdict for _ in range(3))  # type: ignore[attr-defined]

    clock.now += 2  # just past it

    assert not _ask(clock).verdict  # type: ignore[attr-defined]
