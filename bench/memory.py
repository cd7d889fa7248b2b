"""Memory per process: the web server and the worker, idle, after jobs, after the first embedding.

Run from the repository root: ``python bench/memory.py [--skip-scaled-out]``. It starts aihub as an operator
would and reads each process's resident set size (VmRSS, /proc) at each step:

- **embedded** (`make run`: daphne with the in-process worker on SQLite): idle after start; after 20 echo jobs;
  after a document was ingested (the in-process worker embeds it, so the model loads in the server process);
  after a search (query embedding) and after a second one (the model is not loaded again: no growth);
- **scaled out** (daphne + one ``celery worker`` on PostgreSQL and Redis, as bench/streams.py): both idle; after
  20 echo jobs; after an ingest (the worker embeds; the web process does not load the model); after a search
  (the web process embeds the query, so the model loads there on the first search).

Beside each figure it says whether torch is mapped into the process (``libtorch`` in /proc/PID/maps), which
shows which processes hold the model. The floor, measured in the same run, is a process that only ran
``django.setup()`` with aihub's settings: the imports every aihub process pays before serving anything.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    DEFAULT_POSTGRES,
    REPO_ROOT,
    Server,
    http_json,
    reachable,
    recreate_database,
    rss_bytes,
    serve,
    server_env,
)

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
DATABASE = "aihub_bench_memory"
DOCUMENT = " ".join(
    f"Paragraph {n}: aihub keeps its knowledge in collections of documents cut into chunks and embedded."
    for n in range(40)
)


def megabytes(pid: int) -> str:
    maps = Path(f"/proc/{pid}/maps").read_text()
    torch = "torch loaded" if "libtorch" in maps else "no torch"
    return f"{rss_bytes(pid) / 2**20:6.0f} MB ({torch})"


def floor(var_dir: str) -> str:
    """A process that only set Django up with aihub's settings (every installed app imported), serving nothing."""
    setup = "import django, time; django.setup(); time.sleep(30)"
    bare = subprocess.Popen([sys.executable, "-c", setup], cwd=REPO_ROOT, env=server_env(var_dir))
    try:
        time.sleep(4)
        return f"{rss_bytes(bare.pid) / 2**20:6.0f} MB"
    finally:
        bare.kill()
        bare.wait()


def run_jobs(server: Server, count: int) -> None:
    for _ in range(count):
        status, job = http_json(
            f"{server.base}/api/v1/demo/agents/echo/messages?wait=true", body={"content": "hi"}, token=server.token
        )
        assert status == 200 and job["status"] == "succeeded", job


def ingest(server: Server) -> None:
    api = f"{server.base}/api/v1/demo/collections/"
    status, body = http_json(api, body={"slug": "memory", "name": "Memory"}, token=server.token)
    assert status == 201, body
    status, document = http_json(
        f"{api}memory/documents/", body={"text": DOCUMENT, "title": "memory"}, token=server.token
    )
    assert status in (201, 202), document
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, current = http_json(f"{api}memory/documents/{document['id']}/", token=server.token)
        if current.get("status") == "ready":
            return
        assert current.get("status") != "failed", current
        time.sleep(0.2)
    raise RuntimeError("the document was not ingested within 120 s")


def search(server: Server) -> None:
    status, body = http_json(
        f"{server.base}/api/v1/demo/collections/memory/search",
        body={"query": "how is knowledge kept", "mode": "vector"},
        token=server.token,
    )
    assert status == 200, body


def settle() -> None:
    time.sleep(1.0)


def run_embedded() -> None:
    print("\nembedded (daphne with the in-process worker, SQLite)")
    with (
        tempfile.TemporaryDirectory(prefix="aihub-bench-memory-") as var_dir,
        serve(server_env(var_dir), worker=False) as server,
    ):
        settle()
        print(f"  server idle:                       {megabytes(server.pid)}")
        run_jobs(server, 20)
        settle()
        print(f"  after 20 echo jobs:                {megabytes(server.pid)}")
        ingest(server)
        settle()
        print(f"  after ingesting a document:        {megabytes(server.pid)}")
        search(server)
        print(f"  after a search:                    {megabytes(server.pid)}")
        search(server)
        print(f"  after a second search:             {megabytes(server.pid)}")


def run_scaled_out() -> None:
    print("\nscaled out (daphne + one celery worker, PostgreSQL and Redis)")
    recreate_database(DEFAULT_POSTGRES, DATABASE)
    try:
        with tempfile.TemporaryDirectory(prefix="aihub-bench-memory-") as var_dir:
            env = server_env(var_dir, database_url=f"{DEFAULT_POSTGRES}/{DATABASE}", redis_url=REDIS_URL)
            with serve(env, worker=True, worker_name="benchmemory@%h") as server:
                settle()
                assert server.worker_pid is not None
                print(f"  server idle:                       {megabytes(server.pid)}")
                print(f"  worker idle:                       {megabytes(server.worker_pid)}")
                run_jobs(server, 20)
                settle()
                print(f"  server after 20 echo jobs:         {megabytes(server.pid)}")
                print(f"  worker after 20 echo jobs:         {megabytes(server.worker_pid)}")
                ingest(server)
                settle()
                print(f"  server after an ingest:            {megabytes(server.pid)}")
                print(f"  worker after an ingest:            {megabytes(server.worker_pid)}")
                search(server)
                print(f"  server after a search:             {megabytes(server.pid)}")
                search(server)
                print(f"  server after a second search:      {megabytes(server.pid)}")
    finally:
        recreate_database(DEFAULT_POSTGRES, DATABASE, drop_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-scaled-out", action="store_true", help="only the embedded setup")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aihub-bench-memory-") as var_dir:
        print(f"floor: a process that only ran django.setup() with aihub's settings: {floor(var_dir)}")
    run_embedded()
    if args.skip_scaled_out:
        return
    if reachable(f"{DEFAULT_POSTGRES}/postgres", 5432) and reachable(REDIS_URL, 6379):
        run_scaled_out()
    else:
        print(f"\nscaled out: skipped (PostgreSQL at {DEFAULT_POSTGRES} or Redis at {REDIS_URL} does not answer)")


if __name__ == "__main__":
    main()
