"""Traces through the OpenTelemetry API: every emitted event's `traceparent` continues the trace of
what caused it, and spans reach an OTLP/HTTP collector only when OTEL_EXPORTER_OTLP_ENDPOINT is set.

The collector is a real HTTP server in the test, decoding the protobuf requests the exporter POSTs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from pimms_contracts.v1.frontoffice import NeedAccepted
from pimms_servicekit import tracing
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.db import Database
from pimms_servicekit.messages import Incoming, headers_from_json
from pimms_servicekit.outbox import Outgoing
from pimms_servicekit.pipeline import BatchPipeline
from pimms_servicekit.routing import Decoded, Handlers
from pimms_servicekit.tables import kit_metadata, outbox
from pimms_servicekit.unit_of_work import UnitOfWork
from sqlalchemy import select

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
PARENT = f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"


# -- a local OTLP/HTTP collector ----------------------------------------------------------------


@dataclass
class ExportedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    links: list[tuple[str, str]]
    service: str


class Collector:
    """Records what is POSTed to it, as an OTLP/HTTP collector would receive it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, bytes]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                collector.requests.append((self.path, self.headers.get("Content-Type") or "", body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def spans(self) -> list[ExportedSpan]:
        found = []
        for path, content_type, body in self.requests:
            assert path == "/v1/traces"
            assert content_type == "application/x-protobuf"
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        found.append(
                            ExportedSpan(
                                name=span.name,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                kind=span.kind,
                                links=[(lk.trace_id.hex(), lk.span_id.hex()) for lk in span.links],
                                service=service,
                            )
                        )
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    stub = Collector()
    yield stub
    tracing.shutdown_tracing()  # before the collector goes: what is left is exported to it
    stub.close()


@pytest.fixture(autouse=True)
def _no_tracing_left_behind(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    yield
    tracing.shutdown_tracing()


# -- a service that emits an event for each message it reads ------------------------------------


class Note(dict[str, Any]):
    """A decoded test message."""


def decode(incoming: Incoming) -> Decoded[Note]:
    return Decoded(payload=Note(json.loads(incoming.value or b"{}")), event_type="note")


async def answer(note: Note, uow: UnitOfWork[None]) -> None:
    if note.get("journey"):  # a partner's answer: the case, and its journey, are found by content
        uow.about_case(str(uuid4()), correlation_id=note["journey"])
    uow.emit(
        NeedAccepted(
            submission_id="s",
            case_id=uuid4(),
            case_reference="LYON8-2026-000001",
            accepted_at=datetime.now(UTC),
        ),
        topic="events",
        key="k",
    )


@pytest.fixture
async def database(tmp_path: Any) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    async with db.engine.begin() as connection:
        await connection.run_sync(kit_metadata.create_all)
    yield db
    await db.dispose()


@pytest.fixture
def pipeline(database: Database) -> BatchPipeline[None]:
    handlers: Handlers[None] = Handlers()
    handlers(Note)(answer)
    pipe: BatchPipeline[None] = BatchPipeline(
        service="test",
        database=database,
        clock=ManualClock(),
        handlers=handlers,
        repositories=lambda session: None,
    )
    pipe.consume("in", decode)
    return pipe


def message(offset: int, *, traceparent: str | None = None, journey: str | None = None) -> Incoming:
    headers: tuple[tuple[str, bytes], ...] = (("ce_id", f"m{offset}".encode()),)
    if traceparent:
        headers += (("traceparent", traceparent.encode()),)
    body = {"journey": journey} if journey else {}
    return Incoming(
        topic="in",
        partition=0,
        offset=offset,
        key=b"k",
        value=json.dumps(body).encode(),
        headers=headers,
        timestamp_ms=0,
    )


async def emitted_traceparents(database: Database) -> list[str]:
    async with database.sessions() as session:
        rows = (await session.execute(select(outbox.c.headers).order_by(outbox.c.id))).all()
    found = []
    for (headers,) in rows:
        stored = headers if isinstance(headers, list) else json.loads(headers)
        found += [v.decode() for n, v in headers_from_json(stored) if n == "traceparent"]
    return found


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("exporting", [False, True], ids=["off", "exporting"])
async def test_an_emitted_event_carries_the_trace_id_of_the_consumed_message(
    pipeline: BatchPipeline[None],
    database: Database,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
    exporting: bool,
) -> None:
    if exporting:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    assert tracing.configure_tracing("test") is exporting
    await pipeline.process_incoming([message(0, traceparent=PARENT)])
    [emitted] = await emitted_traceparents(database)
    version, trace_id, span_id, flags = emitted.split("-")
    assert (version, trace_id, flags) == ("00", PARENT_TRACE, "01")
    assert span_id not in (PARENT_SPAN, "0" * 16)  # a new span of the consumed message's trace


async def test_a_partner_answer_joins_the_trace_of_the_case_journey(
    pipeline: BatchPipeline[None], database: Database
) -> None:
    """What comes back from a partner carries no trace header: the events it causes continue the
    trace of the case's journey, found through its correlation id."""
    journey = str(uuid4())
    await pipeline.process_incoming([message(0, journey=journey)])
    [emitted] = await emitted_traceparents(database)
    assert emitted.split("-")[1] == journey.replace("-", "")


async def test_spans_reach_the_otlp_collector_when_the_endpoint_is_set(
    pipeline: BatchPipeline[None],
    database: Database,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "pimms-test")
    assert tracing.configure_tracing("test")
    journey = str(uuid4())
    await pipeline.process_incoming([message(0, traceparent=PARENT), message(1, journey=journey)])
    relayed = [
        Outgoing(id=1, topic="events", key=b"k", value=b"{}", headers=[("traceparent", t.encode())])
        for t in await emitted_traceparents(database)
    ]

    class Sent:
        async def send(self, messages: Any) -> tuple[int, BaseException | None]:
            return len(messages), None

    assert await tracing.TracingSender(Sent()).send(relayed) == (2, None)
    tracing.shutdown_tracing()  # flushes the batch processor: the export happens now

    spans = collector.spans()
    by_name: dict[str, list[ExportedSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert {s.service for s in spans} == {"pimms-test"}
    # consuming the traced message: a child of its traceparent
    traced_process = next(s for s in by_name["in process"] if s.trace_id == PARENT_TRACE)
    assert traced_process.parent_span_id == PARENT_SPAN
    assert traced_process.kind == 5  # CONSUMER
    handle = next(s for s in by_name["handle note"] if s.trace_id == PARENT_TRACE)
    assert handle.parent_span_id == traced_process.span_id
    create = next(s for s in by_name["events create"] if s.trace_id == PARENT_TRACE)
    assert create.parent_span_id == handle.span_id
    assert create.kind == 4  # PRODUCER
    # the emitted event's traceparent is the create span's context
    [first, second] = [t.split("-") for t in await emitted_traceparents(database)]
    assert first[1:3] == [PARENT_TRACE, create.span_id]
    # the partner's answer: its event is created in the journey's trace, linked to its handling
    journey_trace = journey.replace("-", "")
    back = next(s for s in by_name["events create"] if s.trace_id == journey_trace)
    assert second[1:3] == [journey_trace, back.span_id]
    answer_handle = next(s for s in by_name["handle note"] if s.trace_id != PARENT_TRACE)
    assert (answer_handle.trace_id, answer_handle.span_id) in back.links
    # the relay's publish span is linked to both events
    [publish] = by_name["publish"]
    assert {(PARENT_TRACE, create.span_id), (journey_trace, back.span_id)} <= set(publish.links)


async def test_nothing_is_exported_without_the_endpoint(
    pipeline: BatchPipeline[None],
    database: Database,
    collector: Collector,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The exporter would honour this one; PIMMS exports only with OTEL_EXPORTER_OTLP_ENDPOINT.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.url}/v1/traces")
    assert not tracing.configure_tracing("test")
    assert not tracing.tracing_enabled()
    await pipeline.process_incoming([message(0, traceparent=PARENT)])
    tracing.shutdown_tracing()
    assert collector.requests == []
    [emitted] = await emitted_traceparents(database)  # the header is there all the same
    assert emitted.split("-")[1] == PARENT_TRACE
