"""What the OpenAI Responses door costs over the native API, measured in the same run on the embedded server.

Run from the repository root: ``python bench/door_responses.py [--requests 200] [--warmup 20]``.

It starts the embedded server (daphne on SQLite with the in-process worker, as `make run` does; bench.common.serve)
with the demo tenant and an instant echo agent, then alternates two requests, one client, one at a time:

- ``native``: ``POST /api/v1/demo/agents/{slug}/messages?wait=true`` with a 50-word message (the finished job);
- ``responses``: ``POST /openai/v1/responses`` with the same input, not streamed (the ``response`` object).

Both start the same job on a new thread and wait for it on the channel layer; the door adds parsing, the reads of
the job's events its output is folded from, and the Responses shape. It prints p50/p95 latency of each and the
ratio responses/native.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import percentile, serve, server_env

MESSAGE = " ".join(f"word{n}" for n in range(50))
AGENT = "bench-echo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="Requests of each kind (default 200).")
    parser.add_argument("--warmup", type=int, default=20, help="Unmeasured requests of each kind first (20).")
    args = parser.parse_args()
    import httpx

    with (
        tempfile.TemporaryDirectory(prefix="aihub-bench-door-") as var_dir,
        serve(server_env(var_dir), worker=False) as server,
    ):
        client = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {server.token}"}, timeout=60)
        created = client.post("/api/v1/demo/agents/", json={"slug": AGENT, "name": "Bench echo", "class_name": "echo"})
        assert created.status_code == 201, created.text

        def native() -> None:
            answer = client.post(
                f"/api/v1/demo/agents/{AGENT}/messages", params={"wait": "true"}, json={"content": MESSAGE}
            )
            assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text

        def responses() -> None:
            answer = client.post("/openai/v1/responses", json={"model": AGENT, "input": MESSAGE})
            assert answer.status_code == 200 and answer.json()["status"] == "completed", answer.text

        kinds = {"native": native, "responses": responses}
        latencies: dict[str, list[float]] = {name: [] for name in kinds}
        for index in range(args.warmup + args.requests):
            for name, request in kinds.items():  # alternated, so drift on a busy machine hits both alike
                started = time.perf_counter()
                request()
                if index >= args.warmup:
                    latencies[name].append(time.perf_counter() - started)

    print(f"embedded server, {args.requests} requests of each kind, one client, a 50-word echo job each")
    print(f"{'':10} {'p50 ms':>8} {'p95 ms':>8}")
    for name, values in latencies.items():
        print(f"{name:10} {percentile(values, 0.5) * 1000:8.1f} {percentile(values, 0.95) * 1000:8.1f}")
    for fraction, label in ((0.5, "p50"), (0.95, "p95")):
        ratio = percentile(latencies["responses"], fraction) / percentile(latencies["native"], fraction)
        print(f"ratio responses/native {label}: {ratio:.2f}")


if __name__ == "__main__":
    main()
