"""The baseline task of bench/jobs_throughput.py: records when it was sent, began and ended, and does nothing."""

from __future__ import annotations

import json
import os
import time

import redis

from aihub.celery import app

_client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))


@app.task(name="bench.noop", ignore_result=True)
def noop(sent_at: float) -> None:
    began = time.time()
    _client.rpush("bench:noop:done", json.dumps([sent_at, began, time.time()]))
