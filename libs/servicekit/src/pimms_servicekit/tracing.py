"""W3C trace context across Kafka, through the OpenTelemetry API.

Every platform event carries a `traceparent` header continuing the trace of the message that
caused it, from the front office through every service (partner feeds carry the partner's payload
alone, as specs/partners.md requires; what comes back from a partner joins the case's trace again
through its correlation id). The trace id of a case journey with no incoming trace is its
correlation id, so support staff find the same journey under either name.

Spans are exported through OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the usual
`OTEL_EXPORTER_OTLP_*` variables then tune the exporter; `OTEL_SDK_DISABLED=true` keeps it off).
Otherwise the tracer is OpenTelemetry's no-op one and the headers are still written, at the cost of
formatting one string per event: nothing is needed to run.

Each consumed message gets a `<topic> process` span (a child of its `traceparent`), its handler a
`handle <event type>` span, each emitted event a `<topic> create` span whose context is the
`traceparent` it carries, and each relay batch a `publish` span linked to the events it sends.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pimms_servicekit.logging import get_logger

if TYPE_CHECKING:
    from pimms_servicekit.messages import Incoming
    from pimms_servicekit.outbox import Outgoing, Sender

HEADER = "traceparent"
ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_PROPAGATOR = TraceContextTextMapPropagator()
_MAX_LINKS = 128

log = get_logger("pimms.tracing")


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id of a valid `traceparent` value, else None."""
    if not traceparent:
        return None
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1)


def trace_id_for(*, incoming: str | None, correlation_id: str | None) -> str:
    """The trace to continue: the incoming one, else one derived from the correlation id."""
    found = trace_id_of(incoming)
    if found:
        return found
    hexed = (correlation_id or "").replace("-", "").lower()
    if re.fullmatch(r"[0-9a-f]{32}", hexed) and hexed != "0" * 32:
        return hexed
    return secrets.token_hex(16)


def child_traceparent(trace_id: str) -> str:
    """A `traceparent` for a new span of `trace_id` (sampled)."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


# -- the tracer ---------------------------------------------------------------------------------


class _Tracing:
    """The process's tracer: OpenTelemetry's no-op tracer unless an OTLP endpoint is set."""

    def __init__(self) -> None:
        self.enabled = False
        self.tracer: Tracer = trace.NoOpTracer()
        self.provider: Any = None
        self.processor: Any = None


_state = _Tracing()


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Export spans of `service` through OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set;
    return whether spans are exported. Called again, it replaces the previous set-up."""
    env = os.environ if environ is None else environ
    shutdown_tracing()
    endpoint = (env.get(ENDPOINT_VARIABLE) or "").strip()
    if not endpoint or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    # Imported only when exporting: a service without an endpoint never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Its retries against an unreachable collector are not news; a batch given up on is (ERROR).
    logging.getLogger("opentelemetry.exporter").setLevel(logging.ERROR)
    name = env.get("OTEL_SERVICE_NAME") or f"pimms-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    traces_url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
        f"{endpoint.rstrip('/')}/v1/traces"
    )
    processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url))
    provider.add_span_processor(processor)
    _state.provider = provider
    _state.processor = processor
    _state.tracer = provider.get_tracer("pimms_servicekit")
    _state.enabled = True
    log.info("tracing.exporting", endpoint=_without_credentials(endpoint), service_name=name)
    return True


def shutdown_tracing(*, timeout_s: float = 3.0) -> None:
    """Export the spans not yet sent (waiting `timeout_s` at most: an unreachable collector does
    not hold a stopping service) and go back to the no-op tracer."""
    processor = _state.processor
    _state.enabled = False
    _state.tracer = trace.NoOpTracer()
    _state.provider = None
    _state.processor = None
    if processor is not None:
        flushing = threading.Thread(target=processor.shutdown, name="otel-shutdown", daemon=True)
        flushing.start()
        flushing.join(timeout_s)


def tracing_enabled() -> bool:
    """True when spans are recorded and exported."""
    return _state.enabled


def _without_credentials(endpoint: str) -> str:
    return re.sub(r"//[^/@]*@", "//", endpoint)


# -- spans --------------------------------------------------------------------------------------


_OFF: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def consuming(incoming: Incoming, *, service: str) -> contextlib.AbstractContextManager[None]:
    """The `<topic> process` span of one consumed message, a child of its `traceparent` (or of
    the journey its correlation id names)."""
    return _consuming(incoming, service=service) if _state.enabled else _OFF


def handling(
    event_type: str | None, *, case_id: str | None = None
) -> contextlib.AbstractContextManager[None]:
    """The `handle <event type>` span of a handler."""
    return _handling(event_type, case_id=case_id) if _state.enabled else _OFF


@contextlib.contextmanager
def _consuming(incoming: Incoming, *, service: str) -> Iterator[None]:
    parent = _remote_parent(incoming.header(HEADER), incoming.correlation_id)
    with _state.tracer.start_as_current_span(
        f"{incoming.topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": incoming.topic,
            "messaging.destination.partition.id": str(incoming.partition),
            "messaging.kafka.offset": incoming.offset,
            "messaging.message.id": incoming.message_id[:200],
            "messaging.consumer.group.name": f"pimms-{service}",
        },
    ):
        yield


@contextlib.contextmanager
def _handling(event_type: str | None, *, case_id: str | None) -> Iterator[None]:
    attributes = {"pimms.case_id": case_id} if case_id else {}
    with _state.tracer.start_as_current_span(
        f"handle {event_type or 'message'}", kind=SpanKind.INTERNAL, attributes=attributes
    ):
        yield


def outgoing_traceparent(
    *, incoming: str | None, correlation_id: str | None, topic: str, event_type: str | None = None
) -> str:
    """The `traceparent` of an event emitted now: a new span of the trace of what caused it (the
    incoming `traceparent`, else the journey of `correlation_id`).

    Exporting, it is the context of a `<topic> create` span, a child of the current span when
    that span is of the same trace (else of the journey, linked to the current span)."""
    trace_id = trace_id_for(incoming=incoming, correlation_id=correlation_id)
    if not _state.enabled:
        return child_traceparent(trace_id)
    current = trace.get_current_span().get_span_context()
    links: list[Link] = []
    if current.is_valid and f"{current.trace_id:032x}" == trace_id:
        parent = None  # the current context
    else:
        parent = trace.set_span_in_context(NonRecordingSpan(_journey_root(trace_id)))
        if current.is_valid:
            links.append(Link(current))
    attributes: dict[str, str] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "create",
        "messaging.destination.name": topic,
    }
    if event_type:
        attributes["cloudevents.event_type"] = event_type
    span = _state.tracer.start_span(
        f"{topic} create",
        context=parent,
        kind=SpanKind.PRODUCER,
        links=links,
        attributes=attributes,
    )
    span.end()
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(HEADER) or child_traceparent(trace_id)


def _remote_parent(traceparent: str | None, correlation_id: str | None) -> Any:
    if trace_id_of(traceparent):
        return _PROPAGATOR.extract({HEADER: traceparent or ""})
    hexed = (correlation_id or "").replace("-", "").lower()
    if re.fullmatch(r"[0-9a-f]{32}", hexed) and hexed != "0" * 32:
        return trace.set_span_in_context(NonRecordingSpan(_journey_root(hexed)))
    return None  # a new trace (a partner's message: its handler joins the case's journey)


def _journey_root(trace_id: str) -> SpanContext:
    """The (never recorded) root of a journey known by its trace id alone: what a partner's
    answer or a timer continues, so that its spans join the case's trace."""
    span_id = int(hashlib.sha256(trace_id.encode()).hexdigest()[:16], 16) or 1
    return SpanContext(
        trace_id=int(trace_id, 16),
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


class TracingSender:
    """A sender whose batches are `publish` spans linked to the events they carry."""

    def __init__(self, sender: Sender) -> None:
        self.sender = sender

    async def send(self, messages: Sequence[Outgoing]) -> tuple[int, BaseException | None]:
        """Publish in order, in a span when exporting."""
        if not _state.enabled:
            return await self.sender.send(messages)
        links = []
        for message in messages[:_MAX_LINKS]:
            parent = next((v for n, v in message.headers if n == HEADER), None)
            if parent is None:
                continue
            context = trace.get_current_span(
                _PROPAGATOR.extract({HEADER: parent.decode(errors="replace")})
            ).get_span_context()
            if context.is_valid:
                links.append(Link(context))
        topics = sorted({m.topic for m in messages})
        with _state.tracer.start_as_current_span(
            "publish",
            kind=SpanKind.PRODUCER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.batch.message_count": len(messages),
                "messaging.destination.name": topics[0] if len(topics) == 1 else "(several)",
            },
        ) as span:
            delivered, error = await self.sender.send(messages)
            if error is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
            return delivered, error
