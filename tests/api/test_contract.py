"""The API keeps its OpenAPI contract: schemathesis fuzzes every operation of /api/v1/schema/ against a real daphne.

Every operation gets a bounded number of generated requests (valid and invalid ones, a fixed seed, so a run is
reproducible), authenticated as the admin of a seeded tenant with agents and a collection, and each response must
be no server error, carry a documented status code and content type, and match its documented schema.

Run on its own with ``pytest tests/api/test_contract.py`` (one operation: ``-k "POST /api/v1/{tenant}/jobs/"``).
Each operation is a test of its own, ``[METHOD /path]`` in its id; a failing one reports the check that failed,
the response and a curl command reproducing it.

``CONTRACT_MAX_EXAMPLES`` (default 6) sends more requests per operation, for a deeper run by hand.

It costs a minute or two, so the suite runs it once, in the embedded run (``DATABASE_URL`` unset, SQLite and the
in-process worker). ``CONTRACT_SERVICES=1`` runs it against a scaled-out server on PostgreSQL and Redis instead
(``TEST_DATABASE_URL`` and ``TEST_REDIS_URL`` name them), which is how it is checked by hand there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi import checks as openapi_checks

from tests.conftest import DEFAULT_REDIS_URL, require_service
from tests.servers import REPO, base_env, http_json, postgres_database, seed_demo_token, start_daphne, stop_server

SERVICES = os.environ.get("CONTRACT_SERVICES") == "1"
SKIPPED = bool(os.environ.get("DATABASE_URL")) and not SERVICES
pytestmark = [
    pytest.mark.skipif(
        SKIPPED, reason="the contract test runs in the embedded suite run (CONTRACT_SERVICES=1 runs it on PostgreSQL)"
    ),
    # The first operation's time includes starting and seeding the server (migrations), slow on a busy machine.
    pytest.mark.timeout(300),
]

TENANT = "demo"
AGENT = "echo"
COLLECTION = "handbook"
# Enough to reach past the first validation error of most operations, few enough for about a minute on 2 cores.
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "6"))
# A busy 2-core machine, and ?wait=true requests that wait for their job (up to a generated `timeout`).
REQUEST_TIMEOUT = 60
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
    status, body = http_json(f"{base}/api/v1/{TENANT}/agents/{AGENT}/messages", body={"content": "hello"}, token=token)
    assert status in (200, 202), body
    # Loads the embedding model into the server (scaled out, the worker ingested the document, not the server):
    # importing it takes half a minute on a busy machine, which is no operation's time.
    bearer = {"Authorization": f"Bearer {token}"}
    warm = urllib.request.Request(f"{base}/api/v1/{TENANT}/memories/?q=warm", headers=bearer)
    with urllib.request.urlopen(warm, timeout=180) as response:
        assert response.status == 200


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
        services = {"DATABASE_URL": database_url, "REDIS_URL": redis, "CELERY_BROKER_URL": redis}
        yield from _serve(env | services, worker=True)


def _serve(env: dict[str, str], *, worker: bool = False) -> Iterator[tuple[str, str]]:
    server, base = start_daphne(env)
    processes = [server]
    try:
        if worker:  # scaled out, jobs run in a Celery worker of their own (?wait=true waits for one)
            log = Path(env["AIHUB_VAR_DIR"]) / "worker.log"
            command = [sys.executable, "-m", "celery", "-A", "aihub", "worker", "--pool", "threads", "-Q", "celery"]
            output = log.open("wb")
            processes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT))
        token = seed_demo_token(env)
        subprocess.run([sys.executable, "manage.py", "seed_demo_agents"], cwd=REPO, env=env, check=True, timeout=60)
        _seed(base, token)
        yield base, token
    finally:
        for process in processes:
            stop_server(process)


def _document() -> dict[str, Any]:
    """The OpenAPI document /api/v1/schema/ serves, generated here at collection time (it needs no database) so
    every operation is a test item of its own; the requests go to the real server."""
    return dict(SchemaGenerator().get_schema(request=None, public=True))


def _operations() -> list[APIOperation]:
    schema = schemathesis.openapi.from_dict(
        _document(),
        config=schemathesis.Config.from_dict(
            # NUL bytes included: PostgreSQL refuses them in text, and that must be a 400, not a 500.
            {"generation": {"deterministic": True, "with-security-parameters": False, "allow-x00": True}}
        ),
    )
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # an operation schemathesis cannot read is a broken document
        operations.append(result.ok())
    return operations


OPERATIONS = [] if SKIPPED else _operations()


def _path_parameters(operation: APIOperation) -> dict[str, str]:
    """The seeded tenant everywhere; the seeded agent and collection below their paths, so those operations get
    past their 404 (a random slug finds nothing). The agent cannot be deleted (it has jobs); the collection
    itself is left to random slugs, so that its DELETE does not take the documents' operations' collection."""
    fixed = {"tenant": TENANT}
    if operation.path.startswith("/api/v1/{tenant}/agents/{slug}/"):
        fixed["slug"] = AGENT
    if operation.path.startswith("/api/v1/{tenant}/collections/{slug}/") and operation.path.count("/") > 5:
        fixed["slug"] = COLLECTION
    return fixed


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: operation.label)
def test_every_operation_keeps_its_documented_contract(
    operation: APIOperation, contract_server: tuple[str, str]
) -> None:
    base, token = contract_server
    fixed = _path_parameters(operation)
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, path_parameters=fixed),
        operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed),
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(case=cases)
    def sent(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=REQUEST_TIMEOUT
        )

    sent()
