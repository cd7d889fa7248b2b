#!/usr/bin/env bash
# The suite again on PostgreSQL + Redis (channels-redis, Redis cache, Redis broker).
# Outside CI a missing service skips this run with the reason; with CI set it fails.
set -euo pipefail
cd "$(dirname "$0")/.."
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
    exec .venv/bin/pytest "$@"
