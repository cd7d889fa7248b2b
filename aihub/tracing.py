"""OpenTelemetry traces: one trace per request, across the web process, the broker and the worker.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set. Off, nothing of
OpenTelemetry is imported, no provider exists, no instrumentation is installed, and every seam below costs one
``tracer is None`` check. On, :func:`configure` reads the standard variables (``OTEL_EXPORTER_OTLP_PROTOCOL``
``http/protobuf`` or ``grpc``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, headers...; the SDK
and the exporters read most of them themselves), installs the Django instrumentation (HTTP server spans, also
under ASGI when ``opentelemetry-instrumentation-asgi`` is installed) and the Celery one (a producer span where a
task is sent, the trace context in the task's headers, a consumer span where it runs), and the runtime adds GenAI
spans named and attributed after the OpenTelemetry GenAI semantic conventions: ``invoke_agent <agent>`` (jobs
runner), ``chat <model>`` (each model call), ``execute_tool <tool>`` and ``retrieval <collections>``.

Message content (prompts, completions, tool arguments and results, retrieval queries) stays off spans unless the
operator sets ``AIHUB_TRACE_CONTENT=true``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

tracer: Tracer | None = None
"""aihub's tracer once tracing is configured; None (the default) means tracing is off."""

trace_content = False
"""Whether spans carry message content (``AIHUB_TRACE_CONTENT``)."""

_provider: TracerProvider | None = None
_instrumentors: list[Any] = []
_lock = threading.Lock()

Attributes = Mapping[str, "str | int | float | bool | list[str] | tuple[str, ...]"]
P = ParamSpec("P")
R = TypeVar("R")


def endpoint_configured(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _otlp_exporter(environ: Mapping[str, str]) -> SpanExporter:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol not in ("", "http/protobuf"):
        logger.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%r is not supported; exporting with http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    # Endpoint, headers, timeout and compression come from the OTEL_EXPORTER_OTLP_* variables.
    return HttpExporter()


def configure(*, exporter: SpanExporter | None = None, environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on for this process when an OTLP endpoint is configured (or ``exporter`` is given: tests).

    Idempotent; returns whether tracing is on. Must run before Django builds its request handler (the Django
    instrumentation adds a middleware to ``settings.MIDDLEWARE``): aihub.asgi and aihub.wsgi call it first, and
    a Celery worker calls it when it starts (aihub.celery).
    """
    global tracer, trace_content, _provider
    if exporter is None and not endpoint_configured(environ):
        return False
    with _lock:
        if tracer is not None:
            return True
        from opentelemetry import trace
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over this default (Resource.create reads them).
        resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "aihub"})
        provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER(_ARG)
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(environ)))
        # Once per process in the API; the instrumentations and aihub's tracer are handed the provider anyway, so a
        # test may configure again after shutdown().
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            trace.set_tracer_provider(provider)
        django_instrumentor, celery_instrumentor = DjangoInstrumentor(), CeleryInstrumentor()
        django_instrumentor.instrument(tracer_provider=provider)
        celery_instrumentor.instrument(tracer_provider=provider)
        _instrumentors[:] = [django_instrumentor, celery_instrumentor]
        _provider = provider
        trace_content = _truthy(environ.get("AIHUB_TRACE_CONTENT"))
        tracer = provider.get_tracer("aihub")
        try:
            import opentelemetry.instrumentation.asgi  # noqa: F401
        except ImportError:
            logger.warning(
                "tracing is on, but HTTP requests served over ASGI (daphne) get no server span: the Django "
                "instrumentation needs opentelemetry-instrumentation-asgi for them"
            )
        logger.info("tracing on: exporting spans with OTLP")
        return True


def shutdown() -> None:
    """Flush what is pending and turn tracing off again (tests; a process that ends flushes on its own)."""
    global tracer, _provider
    with _lock:
        for instrumentor in _instrumentors:
            instrumentor.uninstrument()
        _instrumentors.clear()
        if _provider is not None:
            _provider.shutdown()
        tracer, _provider = None, None


def force_flush() -> None:
    if _provider is not None:
        _provider.force_flush()


def current_trace_id() -> str:
    """The id of the trace this code runs in, as 32 hex digits; empty with tracing off or outside a trace."""
    if tracer is None:
        return ""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else ""


class _NoSpan:
    """What the helpers below yield with tracing off: accepts the calls a span would, does nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Attributes) -> None:
        pass


NO_SPAN = _NoSpan()


@contextmanager
def span(name: str, attributes: Attributes, *, client: bool = False) -> Iterator[Span | _NoSpan]:
    """A span around a block, current inside it (so spans started in it are its children).

    An exception leaving the block marks the span failed with ``error.type`` (its class name) and no message or
    stack trace, which could quote content.
    """
    if tracer is None:
        yield NO_SPAN
        return
    from opentelemetry.trace import SpanKind

    kind = SpanKind.CLIENT if client else SpanKind.INTERNAL
    with tracer.start_as_current_span(
        name, kind=kind, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            fail(current, type(exc).__name__)
            raise


def traced(describe: Callable[..., tuple[str, Attributes]]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run a keyword-only function inside a span named and attributed by ``describe(**its keyword arguments)``;
    with tracing off, the call goes straight through."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if tracer is None:
                return function(*args, **kwargs)
            name, attributes = describe(**kwargs)
            with span(name, attributes):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def start_span(name: str, attributes: Attributes, *, client: bool = False) -> Span | None:
    """A span started under the current one but not made current: for a block that yields in between (a
    generator), where making it current would leak into the code the generator yields to. End it with
    :func:`end_span`. None with tracing off."""
    if tracer is None:
        return None
    from opentelemetry.trace import SpanKind

    return tracer.start_span(name, kind=SpanKind.CLIENT if client else SpanKind.INTERNAL, attributes=attributes)


def end_span(started: Span | None, *, error_type: str = "") -> None:
    if started is None:
        return
    if error_type:
        fail(started, error_type)
    started.end()


def fail(target: Span | _NoSpan | None = None, error_type: str = "error") -> None:
    """Mark a span (the current one by default) failed: status ERROR and ``error.type``."""
    if tracer is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    current = target if target is not None and not isinstance(target, _NoSpan) else trace.get_current_span()
    current.set_attribute("error.type", error_type)
    current.set_status(Status(StatusCode.ERROR))


def content(value: Any) -> str:
    """Content as a span attribute value: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
