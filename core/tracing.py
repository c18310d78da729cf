"""OpenTelemetry traces across every hop: API -> outbox -> Kafka -> bridge -> Celery task -> outbox -> ...

The W3C trace context travels in the CloudEvents distributed-tracing extension (`traceparent`,
`tracestate`) of every event, in the task payload from the bridge to the worker, and in the
`traceparent` header of other Celery tasks (say, a notification's delivery). Each process calls
`setup(<process>)` once; spans are made through this module, never through auto-instrumentation.

Two modes, chosen at setup:
- Exporting (OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, and/or TRACING_EXPORT_FILE): an SDK
  TracerProvider and real spans (API request, bridge dispatch, task run, outbox record).
- Otherwise, pass-through: no span is made and no id generated; the incoming trace context is held
  for the work in hand and stamped unchanged on what it emits, so a trace begun elsewhere stays one
  trace. This costs a string check and a context variable per hop (see docs/operations.md, Traces).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse
    from opentelemetry.sdk.trace import ReadableSpan

logger = logging.getLogger(__name__)

SERVICE_PREFIX = "kafka-platform-"
# Task payload keys and Celery message headers, as the CloudEvents extension names them.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# W3C Trace Context: version-traceid-parentid-flags, lowercase hex; a later version may append fields.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-\S*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
MAX_TRACESTATE = 512  # the W3C limit a vendor must propagate; longer values are dropped


class TracedEvent(Protocol):
    """What tracing reads of an event: its CloudEvents identity, where it was read from, its trace
    context, and the payload a task receives for it (the bridge's envelope is one)."""

    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def topic(self) -> str | None: ...
    @property
    def partition(self) -> int | None: ...
    @property
    def offset(self) -> int | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def traceparent(self) -> str | None: ...
    @property
    def tracestate(self) -> str | None: ...

    def to_task_payload(self) -> dict[str, Any]: ...


class TraceParent(NamedTuple):
    """A validated W3C trace context, as it travels: the `traceparent` and `tracestate` strings."""

    traceparent: str
    tracestate: str | None = None


def parse(traceparent: object, tracestate: object = None) -> TraceParent | None:
    """The trace context if `traceparent` is valid W3C, else None: a malformed one starts a new
    trace (the event itself is fine; tracing never dead-letters anything)."""
    if not isinstance(traceparent, str):
        return None
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    state = tracestate if isinstance(tracestate, str) and 0 < len(tracestate) <= MAX_TRACESTATE else None
    if state is not None and not state.isprintable():
        state = None
    return TraceParent(traceparent, state)


# --- process state --------------------------------------------------------------------------------

# None: pass-through mode (nothing exports). Replaced by `configure`.
_tracer: trace.Tracer | None = None
_provider: Any = None
_global_set = False
# Pass-through mode: the trace context of the work in hand.
_passthrough: contextvars.ContextVar[TraceParent | None] = contextvars.ContextVar("traceparent", default=None)
# A batch task's events: event id and correlation id -> that event's span (or, passing through,
# its TraceParent). An event a batch handler emits finds its cause by correlation id.
_batch: contextvars.ContextVar[tuple[dict[str, Any], dict[str, Any]] | None] = contextvars.ContextVar(
    "trace_batch", default=None
)


def enabled() -> bool:
    """Are real spans made (something exports them)?"""
    return _tracer is not None


def setup(process: str) -> None:
    """Configure this process (`web`, `bridge`, `relay`, `worker`, `beat`) from the settings."""
    from django.conf import settings

    configure(
        service=SERVICE_PREFIX + process,
        export_file=settings.TRACING_EXPORT_FILE or None,
        otlp=settings.TRACING_OTLP,
    )


def configure(*, service: str, export_file: str | None = None, otlp: bool = False) -> None:
    """Export spans of `service` over OTLP/HTTP and/or as JSON lines to `export_file`; with neither,
    pass-through mode. Called again (tests), it replaces the previous configuration."""
    global _tracer, _provider, _global_set
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None
    if not (otlp or export_file):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    # The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "kafka-platform"}),
        shutdown_on_exit=True,
    )
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT itself; the
        # batch processor exports from its own thread (and restarts it in a forked child).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if export_file:
        # Synchronous: a span is on disk when it ends, even if the process is killed right after.
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(export_file)))
    if not _global_set:
        # For any library that asks the global API; set once, as OpenTelemetry allows.
        trace.set_tracer_provider(provider)
        _global_set = True
    _provider = provider
    _tracer = provider.get_tracer("kafka_platform")
    logger.info(
        "tracing: %s exports spans%s%s",
        service,
        " over OTLP" if otlp else "",
        f" to {export_file}" if export_file else "",
    )


class JsonLinesSpanExporter(SpanExporter):
    """A debugging aid: every finished span as one JSON line appended to a file.

    Several processes may append to one file: each write is one `os.write` of whole lines on a file
    opened with O_APPEND, opened per export so a forked child never shares a descriptor.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span), default=str) + "\n" for span in spans)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def span_record(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "service": span.resource.attributes.get("service.name"),
        "kind": span.kind.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "links": [f"{link.context.trace_id:032x}-{link.context.span_id:016x}" for link in span.links],
    }


# --- contexts -------------------------------------------------------------------------------------


def _otel_context(parent: TraceParent | None) -> Context:
    """A context whose span is `parent` (remote), or an empty one: the span made in it is a root."""
    if parent is None:
        return Context()
    _version, trace_id, span_id, flags = parent.traceparent.split("-")[:4]
    state = TraceState.from_header([parent.tracestate]) if parent.tracestate else None
    remote = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16)),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(remote), Context())


def _of_span(span: trace.Span) -> TraceParent | None:
    context = span.get_span_context()
    if not context.is_valid:
        return None
    state = context.trace_state.to_header() if context.trace_state else None
    return TraceParent(
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}", state or None
    )


def current() -> TraceParent | None:
    """The trace context of the work in hand: what an event or task it sends now should carry."""
    if _tracer is None:
        return _passthrough.get()
    return _of_span(trace.get_current_span())


@contextmanager
def span(
    name: str,
    *,
    parent: TraceParent | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[trace.Span | None]:
    """A span child of `parent` (a new trace when None), current for the block.

    Passing through, no span: `parent` becomes the trace context of the block.
    """
    if _tracer is None:
        token = _passthrough.set(parent)
        try:
            yield None
        finally:
            _passthrough.reset(token)
        return
    with _tracer.start_as_current_span(
        name, context=_otel_context(parent), kind=kind, attributes=_clean(attributes)
    ) as made:
        yield made


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OpenTelemetry attributes are never None."""
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}


def annotate(**attributes: Any) -> None:
    """Set attributes on the current span (nothing when passing through)."""
    if _tracer is not None:
        current_span = trace.get_current_span()
        if current_span.is_recording():
            current_span.set_attributes(_clean(attributes) or {})


def of_envelope(event: TracedEvent) -> TraceParent | None:
    return parse(event.traceparent, event.tracestate)


def event_attributes(event: TracedEvent) -> dict[str, Any]:
    """What a span about one event says about it (OpenTelemetry messaging and CloudEvents names)."""
    return {
        "cloudevents.event_id": event.id,
        "cloudevents.event_type": event.type,
        "cloudevents.event_subject": event.subject,
        "messaging.system": "kafka",
        "messaging.destination.name": event.topic,
        "messaging.destination.partition.id": str(event.partition) if event.partition is not None else None,
        "messaging.kafka.offset": event.offset,
        "correlation_id": event.correlation_id,
    }


# --- the hops -------------------------------------------------------------------------------------


def dispatch_payload(event: TracedEvent, tasks: Sequence[str]) -> dict[str, Any]:
    """The bridge: `event`'s task payload, carrying the context of a dispatch span that is a child
    of the event's own. The span marks the hand-off to Celery; the gap to the task's span is the
    time the event waited in the queue. Passing through, the payload carries the event's context."""
    payload = event.to_task_payload()
    if _tracer is None:
        return payload
    made = _tracer.start_span(
        f"dispatch {event.type}",
        context=_otel_context(of_envelope(event)),
        kind=SpanKind.CONSUMER,
        attributes=_clean({**event_attributes(event), "celery.tasks": list(tasks)}),
    )
    made.end()
    context = _of_span(made)
    if context is not None:
        payload[TRACEPARENT], payload[TRACESTATE] = context
    return payload


def task_parent(payload: object, headers: Any) -> TraceParent | None:
    """A task's parent: the event it consumes (payload), else the Celery message's headers."""
    if isinstance(payload, Mapping) and TRACEPARENT in payload:
        return parse(payload.get(TRACEPARENT), payload.get(TRACESTATE))
    get = getattr(headers, "get", None)
    if get is None:
        return None
    return parse(get(TRACEPARENT), get(TRACESTATE))


def add_to_task_headers(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """`before_task_publish`: a task sent during traced work (say a notification's delivery,
    queued by the task that requested it) continues its trace."""
    context = current()
    if context is not None and headers is not None and TRACEPARENT not in headers:
        headers[TRACEPARENT] = context.traceparent
        if context.tracestate:
            headers[TRACESTATE] = context.tracestate


@contextmanager
def event_spans(
    name: str, events: Sequence[TracedEvent], *, attributes: Mapping[str, Any] | None = None
) -> Iterator[None]:
    """A batch task: one span per event, each a child of its event's context, for the whole batch
    (one span per event rather than a batch span with links, so each event's trace is complete).

    Inside, `within(event)` makes an event's span current, and an event recorded in the outbox
    with no span current finds its cause among the batch's events by correlation id.
    """
    by_id: dict[str, Any] = {}
    by_correlation: dict[str, Any] = {}
    made: list[trace.Span] = []
    for event in events:
        parent = of_envelope(event)
        if _tracer is None:
            handle: Any = parent
        else:
            handle = _tracer.start_span(
                name,
                context=_otel_context(parent),
                kind=SpanKind.CONSUMER,
                attributes=_clean(
                    {**event_attributes(event), "celery.task_name": name, "batch.size": len(events)}
                ),
            )
            made.append(handle)
        by_id[event.id] = handle
        by_correlation.setdefault(event.correlation_id or event.id, handle)
    token = _batch.set((by_id, by_correlation))
    try:
        yield
    except BaseException as exc:
        for each in made:
            each.record_exception(exc)
            each.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        _batch.reset(token)
        for each in made:
            each.end()


@contextmanager
def within(event: TracedEvent) -> Iterator[None]:
    """In a batch (`event_spans`), `event`'s span is current for the block."""
    batch = _batch.get()
    handle = batch[0].get(event.id) if batch else None
    if handle is None:
        yield
    elif _tracer is None:
        token = _passthrough.set(handle)
        try:
            yield
        finally:
            _passthrough.reset(token)
    else:
        with trace.use_span(handle, end_on_exit=False):
            yield


def _cause(correlation_id: str | None) -> tuple[TraceParent | None, Context | None]:
    """What an event being recorded now descends from: the current span, else (a batch handler
    working on all its events at once) the batch's event of the same correlation."""
    if _tracer is None:
        context = _passthrough.get()
        if context is None and correlation_id and (batch := _batch.get()):
            context = batch[1].get(correlation_id)
        return context, None
    if trace.get_current_span().get_span_context().is_valid:
        return None, None  # the current context
    if correlation_id and (batch := _batch.get()) and (handle := batch[1].get(correlation_id)):
        return None, trace.set_span_in_context(handle, Context())
    return None, Context()


@contextmanager
def recording(topic: str, *, correlation_id: str | None) -> Iterator[TraceParent | None]:
    """The outbox: yields the trace context the recorded event carries. Exporting, that is an
    `outbox.record` span (a child of the work in hand), current for the block."""
    passed, parent = _cause(correlation_id)
    if _tracer is None:
        yield passed
        return
    with _tracer.start_as_current_span(
        f"record {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    ) as made:
        yield _of_span(made)


def on_commit(func: Callable[[], object], *, robust: bool = False) -> None:
    """`transaction.on_commit`, run in the caller's context (trace and correlation id): work
    queued by one event of a batch and sent when the batch commits stays in that event's trace."""
    from django.db import transaction

    context = contextvars.copy_context()
    transaction.on_commit(lambda: context.run(func), robust=robust)


# --- HTTP ---------------------------------------------------------------------------------------


class TracingMiddleware:
    """The API's server span: a child of the request's W3C `traceparent` header, else a new trace.
    The events a request publishes carry its context."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        parent = parse(request.META.get("HTTP_TRACEPARENT"), request.META.get("HTTP_TRACESTATE"))
        if _tracer is None:
            if parent is None:
                return self.get_response(request)
            with span("", parent=parent):
                return self.get_response(request)
        with _tracer.start_as_current_span(
            request.method or "HTTP",
            context=_otel_context(parent),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method or "", "url.path": request.path},
        ) as made:
            response = self.get_response(request)
            match = getattr(request, "resolver_match", None)
            if match is not None and match.route:
                route = "/" + match.route.lstrip("^").rstrip("$")
                made.update_name(f"{request.method} {route}")
                made.set_attribute("http.route", route)
            made.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                made.set_status(Status(StatusCode.ERROR))
            return response
