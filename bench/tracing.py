"""What tracing costs on the serving path: bench/serving.py's scenario with tracing off, then on.

Run from the repository root: ``python bench/tracing.py [--setups embedded] [--clients 1,32] [--units 200]``.

The same servers and units as bench/serving.py (message → job → events → reply, ``?wait=true`` or
``?stream=true``), measured twice in one run: without ``OTEL_EXPORTER_OTLP_ENDPOINT`` (tracing off: no provider,
no instrumentation) and with it pointing at a loopback OTLP/HTTP collector in this process that decodes and counts
the spans it is sent (every span sampled, batched as the SDK does by default). It prints each side's row as
serving.py does, the on/off ratio of units/s and of server CPU per unit, and the spans exported per unit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.common import free_port
from bench.serving import aihub, measure, report


class Collector(ThreadingHTTPServer):
    """Accepts OTLP/HTTP trace exports and counts their spans."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.spans = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        count = sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
        with self.server.lock:
            self.server.spans += count
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def ratio(on: dict[str, object], off: dict[str, object], key: str) -> str:
    return f"{float(str(on[key])) / max(float(str(off[key])), 0.01):.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setups", default="embedded")
    parser.add_argument("--clients", default="1,32")
    parser.add_argument("--modes", default="wait,stream")
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", default="threads")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    clients = [int(n) for n in args.clients.split(",")]
    modes = args.modes.split(",")

    collector = Collector()
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    tracing_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
    }
    for setup in args.setups.split(","):
        off: dict[tuple[str, int], Any] = {}
        for traced in (False, True):
            for name in tracing_env:
                os.environ.pop(name, None)
            if traced:
                os.environ.update(tracing_env)
            label = "on" if traced else "off"
            with aihub(setup, args) as server:
                for mode in modes:
                    for count in clients:
                        before = collector.spans
                        result = asyncio.run(measure(server, is_floor=False, mode=mode, clients=count, args=args))
                        row = report(f"tracing {label} {setup} {mode} {count} clients", result, args.units, None)
                        if not traced:
                            off[(mode, count)] = row
                            continue
                        base = off[(mode, count)]
                        done = args.units + args.warmup
                        summary = {
                            "label": f"tracing on/off {setup} {mode} {count} clients",
                            "units_per_s": ratio(row, base, "units_per_s"),
                            "cpu_ms_per_unit": ratio(row, base, "cpu_ms_per_unit"),
                            # Exports trail the units by the batch delay: counted up to the next row.
                            "spans_per_unit_so_far": round((collector.spans - before) / done, 1),
                        }
                        print(json.dumps(summary), flush=True)
    collector.shutdown()


if __name__ == "__main__":
    main()
