"""The AG-UI door's added latency over the native API, in the same run on the same server.

Run from the repository root: ``python bench/door_agui.py [--setups embedded,scaled] [--units 200] [--clients 1,8]``.

For each setup (as bench/serving.py starts them: ``embedded`` daphne alone on SQLite, or ``scaled`` on PostgreSQL
``BENCH_POSTGRES`` and Redis ``BENCH_REDIS_URL`` with ``--workers`` celery workers) one unit posts a 50-word
message to an instant echo agent on a new thread and reads the stream to its end, through one of two doors,
alternately, so both see the same machine:

- native: ``POST /api/v1/bench/agents/echo/messages?stream=true``, read to the job's final event;
- AG-UI: ``POST /ag-ui/bench/echo`` with a ``RunAgentInput`` (a new thread id each time), read to RUN_FINISHED.

It prints p50/p95 latency of each (from the POST to the last event), units/s, and the ratio AG-UI/native.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import serving
from bench.common import percentile
from bench.serving import FINAL_EVENTS, MESSAGE, Server, aihub

# A database of its own when scaled out, so that it never drops the one a serving.py run is using.
serving.DATABASE = "aihub_bench_door_agui"


async def native_unit(client: Any, latencies: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    url = "/api/v1/bench/agents/echo/messages"
    async with client.stream("POST", url, params={"stream": "true"}, json={"content": MESSAGE}) as response:
        if response.status_code != 200:
            errors.append(f"native {response.status_code}")
            return
        async for line in response.aiter_lines():
            if line.startswith("event: ") and line.removeprefix("event: ") in FINAL_EVENTS:
                latencies.append(time.perf_counter() - started)
                return
    errors.append("native stream ended early")


async def agui_unit(client: Any, latencies: list[float], errors: list[str]) -> None:
    body = {
        "threadId": f"bench-{uuid.uuid4().hex}",
        "runId": uuid.uuid4().hex,
        "messages": [{"id": "u1", "role": "user", "content": MESSAGE}],
    }
    started = time.perf_counter()
    async with client.stream("POST", "/ag-ui/bench/echo", json=body) as response:
        if response.status_code != 200:
            errors.append(f"ag-ui {response.status_code}")
            return
        async for line in response.aiter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["type"] in ("RUN_FINISHED", "RUN_ERROR"):
                latencies.append(time.perf_counter() - started)
                return
    errors.append("ag-ui stream ended early")


async def measure(server: Server, *, clients: int, units: int, warmup: int) -> dict[str, object]:
    import httpx2

    limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx2.AsyncClient(base_url=server.base, headers=headers, limits=limits, timeout=120) as client:
        native: list[float] = []
        agui: list[float] = []
        errors: list[str] = []
        for _ in range(warmup):
            await native_unit(client, [], errors)
            await agui_unit(client, [], errors)
        remaining = units
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                # Alternately, so that both doors see the same load and the same state of the database.
                if remaining % 2:
                    await native_unit(client, native, errors)
                else:
                    await agui_unit(client, agui, errors)

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ratio = percentile(agui, 0.5) / percentile(native, 0.5) if agui and native else float("nan")
    return {
        "clients": clients,
        "native_p50_ms": round(percentile(native, 0.5) * 1000, 1) if native else None,
        "native_p95_ms": round(percentile(native, 0.95) * 1000, 1) if native else None,
        "agui_p50_ms": round(percentile(agui, 0.5) * 1000, 1) if agui else None,
        "agui_p95_ms": round(percentile(agui, 0.95) * 1000, 1) if agui else None,
        "agui_vs_native_p50": f"{ratio:.2f}x",
        "units_per_s": round((len(native) + len(agui)) / elapsed, 1),
        "errors": errors or "none",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setups", default="embedded")
    parser.add_argument("--clients", default="1,8")
    parser.add_argument("--units", type=int, default=200, help="Units per client count, half through each door.")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    for setup in args.setups.split(","):
        with aihub(setup, args) as server:
            for count in (int(n) for n in args.clients.split(",")):
                row = asyncio.run(measure(server, clients=count, units=args.units, warmup=args.warmup))
                print(json.dumps({"setup": setup, **row}), flush=True)


if __name__ == "__main__":
    main()
