"""What the A2A door adds to a turn: a blocking ``SendMessage`` next to the native API's wait mode, in one run.

Run from the repository root: ``python bench/door_a2a.py [--setup embedded|scaled] [--units 200] [--clients 1]``.

aihub is started as bench/serving.py starts it (embedded: daphne alone with its in-process worker; scaled:
PostgreSQL, Redis and ``--workers`` celery workers), seeded with tenant ``bench`` and its instant ``echo`` agent.
One unit posts the same 50-word message either natively, ``POST /api/v1/bench/agents/echo/messages?wait=true``
(a new thread, answered with the ended job), or through the door, JSON-RPC ``SendMessage`` to ``/a2a/bench/echo``
(a new context, answered with the completed task). The two kinds alternate, unit by unit, on one HTTP client, so
both see the same server, database and load. It prints p50/p95 latency of each and the ratio door/native.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile
from bench.serving import MESSAGE, Server, aihub

KINDS = ("native", "a2a")


async def unit(client: httpx.AsyncClient, kind: str) -> float:
    """One turn of ``kind``; its latency in seconds (an error raises: a benchmark of failures is no figure)."""
    started = time.perf_counter()
    if kind == "native":
        response = await client.post(
            "/api/v1/bench/agents/echo/messages", params={"wait": "true"}, json={"content": MESSAGE}
        )
        assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    else:
        message = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": MESSAGE}]}
        body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
        response = await client.post("/a2a/bench/echo", json=body, headers={"A2A-Version": "1.0"})
        state = response.json().get("result", {}).get("task", {}).get("status", {}).get("state")
        assert response.status_code == 200 and state == "TASK_STATE_COMPLETED", response.text
    return time.perf_counter() - started


async def drive(server: Server, *, units: int, warmup: int, clients: int) -> dict[str, list[float]]:
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.base, headers=headers, timeout=120) as client:
        for index in range(warmup):
            await unit(client, KINDS[index % 2])
        remaining = iter(range(units * len(KINDS)))

        async def worker() -> None:
            for index in remaining:
                kind = KINDS[index % 2]
                latencies[kind].append(await unit(client, kind))

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup", default="embedded", choices=["embedded", "scaled"])
    parser.add_argument("--units", type=int, default=200, help="Units of each kind.")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with aihub(args.setup, args) as server:
        latencies = asyncio.run(drive(server, units=args.units, warmup=args.warmup, clients=args.clients))
    row: dict[str, object] = {"setup": args.setup, "units_each": args.units, "clients": args.clients}
    for kind in KINDS:
        row[f"{kind}_p50_ms"] = round(percentile(latencies[kind], 0.5) * 1000, 1)
        row[f"{kind}_p95_ms"] = round(percentile(latencies[kind], 0.95) * 1000, 1)
    row["a2a_vs_native_p50"] = f"{percentile(latencies['a2a'], 0.5) / percentile(latencies['native'], 0.5):.2f}x"
    row["a2a_vs_native_p95"] = f"{percentile(latencies['a2a'], 0.95) / percentile(latencies['native'], 0.95):.2f}x"
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
