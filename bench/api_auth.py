"""How much authentication and the permission check cost per request.

Run from the repository root: ``python bench/api_auth.py`` (see bench/README.md). A throwaway SQLite database
in a temporary folder is migrated and seeded; nothing in the repository is touched. Requests go through the
whole Django stack (middleware, URL routing, DRF, authentication, throttles, the database) with Django's test
client, which skips the network and the ASGI server, so the figures isolate what aihub itself adds.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import configure_django

WARM_UP = 50


def configure_environment(var_dir: Path) -> None:
    """Production-like settings on a private SQLite file; must run before Django is set up."""
    # The default throttle rates: a round stays under them because the counters are cleared before each round.
    # DEBUG off (configure_django): with it on Django keeps every SQL query in memory, which production does not pay.
    for name in ("AIHUB_THROTTLE_TOKEN", "AIHUB_THROTTLE_IP"):
        os.environ.pop(name, None)
    configure_django(var_dir)


def disable_throttles() -> None:
    from django.conf import settings

    from aihub.conf import aihub_settings

    # A rate of None makes DRF's throttles allow the request without touching the cache.
    settings.AIHUB = {**settings.AIHUB, "THROTTLE_RATES": {"token": None, "ip": None}}
    aihub_settings.reload()


def requests_per_second(send: Callable[[], int], *, requests: int, rounds: int) -> float:
    """The median rate over ``rounds`` runs of ``requests`` calls after a warm-up; every call must answer 200."""
    from django.core.cache import cache

    rates = []
    for _ in range(rounds):
        # Throttle counters start empty each round, so a round measures a client well within its limits.
        cache.clear()
        for _ in range(WARM_UP):
            check(send())
        started = time.perf_counter()
        for _ in range(requests):
            check(send())
        rates.append(requests / (time.perf_counter() - started))
    return statistics.median(rates)


def check(status: int) -> None:
    if status != 200:
        hint = " (429: use fewer --requests, or --no-throttles)" if status == 429 else ""
        raise SystemExit(f"a request answered {status}, not 200{hint}")


def nanoseconds_per_call(call: Callable[[], object], *, rounds: int) -> float:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=rounds, number=number)) / number * 1e9


def bench_http(*, requests: int, rounds: int, throttles: bool) -> None:
    from django.core.management import call_command
    from django.test import Client

    from aihub.access import services

    call_command("migrate", verbosity=0, interactive=False)
    user = services.user_create(username="bench", password=secrets.token_urlsafe(16))
    tenant = services.tenant_create(slug="bench", name="Bench")
    services.membership_create(tenant=tenant, user=user, role_names=["member"])
    _, raw_token = services.api_token_create(user=user, name="bench")

    client = Client()
    auth = {"Authorization": f"Bearer {raw_token}"}
    cases: list[tuple[str, Callable[[], int]]] = [
        ("GET /api/v1/health (no auth)", lambda: client.get("/api/v1/health").status_code),
        ("GET /api/v1/me (API token)", lambda: client.get("/api/v1/me", headers=auth).status_code),
        (
            "GET /api/v1/bench/roles/ (API token)",
            lambda: client.get("/api/v1/bench/roles/", headers=auth).status_code,
        ),
    ]
    if not throttles:
        disable_throttles()
    print(
        f"HTTP through the Django stack (test client, SQLite, DEBUG off, throttles {'on' if throttles else 'off'}),"
        f" median of {rounds} x {requests} requests"
    )
    print(f"  {'case':<40} {'req/s':>9} {'ms/req':>8} {'vs health':>10}")
    baseline = 0.0
    for label, send in cases:
        rate = requests_per_second(send, requests=requests, rounds=rounds)
        baseline = baseline or rate
        print(f"  {label:<40} {rate:>9.0f} {1000 / rate:>8.3f} {rate / baseline:>9.2f}x")


def bench_rules(*, rounds: int) -> None:
    from aihub.access.rules import is_granted

    # The shapes real roles have: a few wildcards, one explicit id, and an admin rule that implies a user rule.
    rules = [
        "aihub.user.agents.>",
        "aihub.user.threads.>",
        "aihub.user.jobs.*",
        "aihub.user.collections.handbook",
        "aihub.admin.collections.support-docs",
    ]
    ceiling = ["aihub.user.>", "aihub.admin.collections.>"]
    granted = {
        "aihub.user.agents.support-bot",
        "aihub.user.collections.support-docs",
        "aihub.user.jobs.1234",
    }
    cases = [
        ("granted by 'aihub.user.agents.>'", "aihub.user.agents.support-bot", ()),
        ("granted by the admin rule (implies user)", "aihub.user.collections.support-docs", ()),
        ("denied (every rule tried)", "aihub.user.memories.m-1", ()),
        ("granted, with a tenant ceiling", "aihub.user.agents.support-bot", ceiling),
    ]
    baseline = nanoseconds_per_call(lambda: "aihub.user.agents.support-bot" in granted, rounds=rounds)
    print(f"\nPermission check, best of {rounds} (5 rules)")
    print(f"  {'case':<48} {'ns/call':>9} {'vs set lookup':>14}")
    print(f"  {'baseline: name in a set of granted names':<48} {baseline:>9.0f} {1.0:>13.1f}x")
    for label, name, case_ceiling in cases:
        ns = nanoseconds_per_call(partial(is_granted, name, rules=rules, ceiling=case_ceiling), rounds=rounds)
        print(f"  {label:<48} {ns:>9.0f} {ns / baseline:>13.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 1000 + the warm-up stays under the default token limit of 1200/minute.
    parser.add_argument("--requests", type=int, default=1000, help="requests per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (default 3)")
    parser.add_argument(
        "--no-throttles", action="store_true", help="take the rate limits out of the request path, to see their cost"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aihub-bench-") as var_dir:
        configure_environment(Path(var_dir))
        import django

        django.setup()
        print(f"Python {sys.version.split()[0]}, Django {django.get_version()}, {os.cpu_count()} CPUs\n")
        bench_http(requests=args.requests, rounds=args.rounds, throttles=not args.no_throttles)
        bench_rules(rounds=args.rounds)


if __name__ == "__main__":
    main()
