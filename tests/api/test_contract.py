"""The API keeps its OpenAPI contract: schemathesis fuzzes every operation of /api/v1/schema/ against a real daphne.

Every operation gets a bounded number of generated requests (valid and invalid ones, a fixed seed, so a run is
reproducible), authenticated as the admin of a seeded tenant with agents and a collection, and each response must
be no server error, carry a documented status code and content type, and match its documented schema.

Run on its own with ``pytest tests/api/test_contract.py``; each failing operation is a failed subtest whose
report names the operation, the check and a curl command reproducing it.

It costs about a minute, so the suite runs it once, in the embedded run (``DATABASE_URL`` unset, SQLite and the
in-process worker). ``CONTRACT_SERVICES=1`` runs it against a scaled-out server on PostgreSQL and Redis instead
(``TEST_DATABASE_URL`` and ``TEST_REDIS_URL`` name them), which is how it is checked by hand there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as openapi_checks

from tests.conftest import DEFAULT_REDIS_URL, require_service
from tests.servers import REPO, base_env, http_json, postgres_database, seed_demo_token, start_daphne, stop_server

SERVICES = os.environ.get("CONTRACT_SERVICES") == "1"
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")) and not SERVICES,
    reason="the contract test runs in the embedded suite run (CONTRACT_SERVICES=1 runs it on PostgreSQL)",
)

TENANT = "demo"
COLLECTION = "handbook"
# Enough to reach past the first validation error of most operations, few enough for about a minute on 2 cores.
MAX_EXAMPLES = 6
SEED = 15
CHECKS = [
    st_checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


def _seed(base: str, token: str) -> None:
    """What the operations can find: a collection with a document, a thread with a message (the demo agents
    are there already)."""
    status, body = http_json(
        f"{base}/api/v1/{TENANT}/collections/", body={"slug": COLLECTION, "name": "Handbook"}, token=token
    )
    assert status == 201, body
    documents = f"{base}/api/v1/{TENANT}/collections/{COLLECTION}/documents/"
    status, body = http_json(documents, body={"title": "Leave", "text": "Holidays are 25 days a year."}, token=token)
    assert status in (200, 201), body
    status, body = http_json(f"{base}/api/v1/{TENANT}/agents/echo/messages", body={"content": "hello"}, token=token)
    assert status in (200, 202), body


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """daphne seeded with the demo tenant, its agents, a collection and a thread; the demo admin's token.

    Throttling is lifted: the fuzzer sends a few hundred requests a minute with one token, and a 429 would
    only hide what an operation does."""
    env = base_env(tmp_path_factory) | {"AIHUB_THROTTLE_TOKEN": "1000000/minute", "AIHUB_THROTTLE_IP": "1000000/minute"}
    if not SERVICES:
        yield from _serve(env)
        return
    redis = require_service("Redis", os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL))
    with postgres_database() as database_url:
        yield from _serve(env | {"DATABASE_URL": database_url, "REDIS_URL": redis, "CELERY_BROKER_URL": redis})


def _serve(env: dict[str, str]) -> Iterator[tuple[str, str]]:
    server, base = start_daphne(env)
    try:
        token = seed_demo_token(env)
        subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
        _seed(base, token)
        yield base, token
    finally:
        stop_server(server)


def _document() -> dict[str, Any]:
    """The OpenAPI document /api/v1/schema/ serves, generated here at collection time (it needs no database) so
    every operation is a test item of its own; the requests go to the real server."""
    return dict(SchemaGenerator().get_schema(request=None, public=True))


schema = schemathesis.openapi.from_dict(
    _document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "with-security-parameters": False},
            "parameters": {"tenant": TENANT},
        }
    ),
)


@schema.parametrize()
def test_every_operation_keeps_its_documented_contract(
    case: schemathesis.Case, contract_server: tuple[str, str]
) -> None:
    base, token = contract_server
    case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
