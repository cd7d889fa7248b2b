"""OpenTelemetry traces: one trace from the HTTP request through the Celery task to the agent, model and tool spans.

In-process with the SDK's in-memory exporter; across real processes (daphne, and a `celery worker` scaled out)
exporting OTLP over HTTP to a loopback receiver that decodes the export requests, the real wire protocol.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aihub import tracing
from aihub.access.models import Membership
from jobs.models import Job
from tests.agents.factories import AgentFactory
from tests.helpers import ClientAs
from tests.servers import REPO, base_env, free_port, http_json, postgres_database, seed_demo_token, start_daphne
from tests.servers import stop_server as stop_process
from tests.workers import Worker
from threads.models import Event

QUESTION = "calculate 2 * (3 + 4)"


def _asgi_instrumentation_installed() -> bool:
    try:
        import opentelemetry.instrumentation.asgi  # noqa: F401
    except ImportError:
        return False
    return True


ASGI_TRACED = _asgi_instrumentation_installed()


@dataclass
class Span:
    """A finished span, from either exporter: enough to check names, links and attributes."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    attributes: dict[str, Any]
    service: str = ""


@dataclass
class Trace:
    spans: list[Span] = field(default_factory=list)

    def named(self, prefix: str) -> list[Span]:
        return [s for s in self.spans if s.name.startswith(prefix)]

    def one(self, prefix: str) -> Span:
        found = self.named(prefix)
        assert len(found) == 1, (prefix, [s.name for s in self.spans])
        return found[0]

    def parent(self, span: Span) -> Span:
        parents = [s for s in self.spans if s.span_id == span.parent_id]
        assert parents, f"the parent of {span.name} is not in the trace: {[s.name for s in self.spans]}"
        return parents[0]


def from_sdk(exported: Any) -> Span:
    context, parent = exported.context, exported.parent
    return Span(
        name=exported.name,
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_id=f"{parent.span_id:016x}" if parent is not None else "",
        kind=exported.kind.name,
        attributes=dict(exported.attributes or {}),
    )


def assert_one_connected_trace(trace: Trace, *, http: bool = True) -> str:
    """HTTP request → celery task → invoke_agent → chat / execute_tool, all one trace with intact parent links;
    GenAI attributes present and no message content. Returns the trace id."""
    agent = trace.one("invoke_agent calculator")
    assert {s.trace_id for s in trace.spans} == {agent.trace_id}
    task = trace.parent(agent)
    assert (task.name, task.kind) == ("run/jobs.run_job", "CONSUMER")
    # The task's parent is the producer span that sent it, child of the submission; eager, the submission itself.
    sent = trace.parent(task)
    submission = sent if sent.name.startswith("submit_job") else trace.parent(sent)
    assert submission.name == "submit_job calculator"
    if http:
        server = trace.one("POST ")
        assert server.kind == "SERVER" and server.parent_id == ""
        assert "agents/<slug:slug>/messages" in server.name
        assert trace.parent(submission) is server
    else:
        assert submission.parent_id == ""
    chats = trace.named("chat ")
    tool = trace.one("execute_tool calculator")
    assert len(chats) == 2 and all(trace.parent(s) is agent for s in [*chats, tool])
    first = chats[0]
    assert first.attributes["gen_ai.operation.name"] == "chat"
    assert first.attributes["gen_ai.request.model"] == "aihub-offline-1"
    assert first.attributes["gen_ai.provider.name"] == "aihub.offline"
    assert first.attributes["gen_ai.usage.input_tokens"] > 0 and first.attributes["gen_ai.usage.output_tokens"] >= 0
    assert list(first.attributes["gen_ai.response.finish_reasons"]) == ["tool_calls"]
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "calculator" and tool.attributes["gen_ai.tool.call.id"]
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "calculator"
    content_keys = {"gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.tool.call.arguments"}
    assert not content_keys & {key for s in trace.spans for key in s.attributes}
    assert not any(QUESTION in str(value) for s in trace.spans for value in s.attributes.values())
    return agent.trace_id


# --- In process: the in-memory exporter -------------------------------------------------------------------------


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    yield exporter
    tracing.shutdown()


def post_question(client: Any, membership: Membership) -> Job:
    response = client.post(
        f"/api/v1/{membership.tenant.slug}/agents/calculator/messages", {"content": QUESTION}, format="json"
    )
    assert response.status_code in (200, 201, 202), response.content
    return Job.objects.get(pk=response.json()["id"])


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_TASK_ALWAYS_EAGER=True)
def test_a_request_its_task_and_the_agent_run_are_one_trace(
    exported: InMemorySpanExporter, membership: Membership, client_as: ClientAs
) -> None:
    AgentFactory.create(tenant=membership.tenant, slug="calculator", class_name="tools", tools=["calculator"])
    client = client_as(membership)

    job = post_question(client, membership)

    trace_id = assert_one_connected_trace(Trace([from_sdk(s) for s in exported.get_finished_spans()]))
    assert job.status == "succeeded" and job.trace_id == trace_id
    job_events = Event.objects.filter(job_id=job.pk, type__startswith="job.").order_by("sequence")
    assert [e.data["trace_id"] for e in job_events] == [trace_id] * 3  # queued, started, succeeded
    detail = client.get(f"/api/v1/{membership.tenant.slug}/jobs/{job.pk}/").json()
    assert detail["trace_id"] == trace_id


@pytest.mark.django_db(transaction=True)
@override_settings(CELERY_TASK_ALWAYS_EAGER=True)
def test_message_content_is_on_spans_only_when_the_operator_enables_it(
    membership: Membership, client_as: ClientAs
) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter, environ={"AIHUB_TRACE_CONTENT": "true"})
    try:
        AgentFactory.create(tenant=membership.tenant, slug="calculator", class_name="tools", tools=["calculator"])
        post_question(client_as(membership), membership)
    finally:
        tracing.shutdown()

    trace = Trace([from_sdk(s) for s in exporter.get_finished_spans()])
    assert QUESTION in trace.named("chat ")[0].attributes["gen_ai.input.messages"]
    assert "14" in trace.named("chat ")[1].attributes["gen_ai.output.messages"]
    assert trace.one("execute_tool").attributes["gen_ai.tool.call.arguments"] == '{"expression": "2 * (3 + 4)"}'


@pytest.mark.django_db
def test_without_tracing_jobs_events_and_the_detail_carry_no_trace(membership: Membership, client_as: ClientAs) -> None:
    assert tracing.tracer is None
    AgentFactory.create(tenant=membership.tenant, slug="calculator", class_name="tools", tools=["calculator"])

    job = post_question(client_as(membership), membership)

    assert job.trace_id == ""
    assert "trace_id" not in Event.objects.get(job_id=job.pk, type="job.queued").data


def test_with_no_endpoint_a_server_process_imports_nothing_of_the_sdk() -> None:
    """Off costs nothing: no provider, no instrumentation, not even the import. (redis-py imports the metrics
    part of the SDK for its own observability when it is installed, which is not aihub's doing.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    probe = (
        "import sys, aihub.asgi, aihub.tracing as t; "
        "prefixes = ('opentelemetry.sdk.trace', 'opentelemetry.instrumentation', 'opentelemetry.exporter');"
        "loaded = sorted(m for m in sys.modules if m.startswith(prefixes));"
        "print(t.tracer, loaded)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=env | {"CELERY_EMBEDDED_WORKER": "false"},
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.decode().split() == ["None", "[]"], done.stderr.decode()[-2000:]


# --- Across processes: OTLP over HTTP to a loopback receiver ----------------------------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class Receiver(ThreadingHTTPServer):
    """A minimal OTLP/HTTP trace receiver: decodes each ``ExportTraceServiceRequest`` into spans."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _ReceiverHandler)
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            Span(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                kind=span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                service=str(resource.get("service.name", "")),
                            )
                        )

    def trace(self, trace_id: str) -> Trace:
        with self.lock:
            return Trace([s for s in self.spans if s.trace_id == trace_id])


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        assert self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
        self.server.take(ExportTraceServiceRequest.FromString(body))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def otel_env(receiver: Receiver, service: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second, so the test waits little
    }


def start_worker(env: dict[str, str], log: Path) -> Worker:
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "aihub", "worker", "--pool", "threads", "--concurrency", "1"),
            *("--without-mingle", "--without-gossip", "--loglevel", "info", "--hostname", f"trace-{os.getpid()}@x"),
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while " ready." not in log.read_text(errors="replace"):
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.05)
    return Worker(worker, log, "trace")


def calculator_agent(base: str, token: str) -> str:
    """Create the calculator agent through the API (cheaper than another manage.py process); the token again."""
    agent = {"slug": "calculator", "name": "Calculator", "class_name": "tools", "tools": ["calculator"]}
    status, body = http_json(f"{base}/api/v1/active/agents/", body=agent, token=token)
    assert status == 201, body
    return token


@pytest.fixture(scope="module", params=["embedded", pytest.param("scaled_out", marks=pytest.mark.services)])
def deployment(
    request: pytest.FixtureRequest, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """A traced daphne seeded with the demo tenant and agents (its in-process worker, or a `celery worker` on
    PostgreSQL and Redis); its base URL and an API token."""
    from tests.conftest import DEFAULT_REDIS_URL, require_service

    env = base_env(tmp_path_factory)
    if request.param == "embedded":
        server, base = start_daphne(env | otel_env(receiver, "aihub-web"))
        token = calculator_agent(base, seed_demo_token(env))
        yield base, token
        stop_process(server)
        return
    redis = require_service("Redis", os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL))
    with postgres_database() as database_url:
        env |= {"DATABASE_URL": database_url, "REDIS_URL": redis, "CELERY_BROKER_URL": redis}
        server, base = start_daphne(env | otel_env(receiver, "aihub-web"))
        token = calculator_agent(base, seed_demo_token(env))
        worker_env = env | otel_env(receiver, "aihub-worker") | {"CELERY_EMBEDDED_WORKER": "false"}
        worker = start_worker(worker_env, Path(env["AIHUB_VAR_DIR"]) / "worker.log")
        yield base, token
        worker.stop()
        stop_process(server)


def test_one_trace_follows_a_message_across_processes_over_otlp(
    deployment: tuple[str, str], receiver: Receiver
) -> None:
    base, token = deployment

    status, answer = http_json(
        f"{base}/api/v1/active/agents/calculator/messages?wait=true&timeout=20", body={"content": QUESTION}, token=token
    )

    assert status == 200 and answer["status"] == "succeeded", answer
    status, job = http_json(f"{base}/api/v1/active/jobs/{answer['id']}/", token=token)
    trace_id = job["trace_id"]
    assert status == 200 and len(trace_id) == 32
    # The request's span ends as its answer goes out, and each process exports on its own schedule.
    deadline = time.monotonic() + 10
    while not ((trace := receiver.trace(trace_id)).named("invoke_agent") and (trace.named("POST ") or not ASGI_TRACED)):
        assert time.monotonic() < deadline, [s.name for s in receiver.trace(trace_id).spans]
        time.sleep(0.05)
    time.sleep(0.3)  # a straggler of the same trace (the last chat span) may be one export behind
    trace = receiver.trace(trace_id)
    assert assert_one_connected_trace(trace, http=ASGI_TRACED) == trace_id
    dispatch = trace.one("apply_async/jobs.run_job")
    assert (dispatch.kind, dispatch.service) == ("PRODUCER", "aihub-web")
    worker_service = "aihub-web" if "embedded" in os.environ.get("PYTEST_CURRENT_TEST", "") else "aihub-worker"
    assert trace.one("run/jobs.run_job").service == worker_service
