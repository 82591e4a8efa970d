"""File-drop, webhook and mapped partners, wired: what each partner finds in its folder or endpoint,
what referrals hears, on the in-memory broker with a manual clock and a real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH
from pimms_contracts.v1.internal import IntakeCaseOpened, IntakeDocumentsAdded
from pimms_contracts.v1.lifecycle import ReferralDocumentsForwarded, ReferralReminded
from pimms_partner_gateways.adapters import registry
from pimms_partner_gateways.adapters.eau_grand_lyon import ENCODING
from pimms_partner_gateways.adapters.webhook_signature import delivery_id, signed_headers, verify
from pimms_partner_gateways.app import Gateway, build_gateway
from pimms_partner_gateways.settings import GatewaySettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.effects import Destination
from pimms_servicekit.messages import encode
from pimms_servicekit.tables import effects
from pimms_servicekit.testing import envelope_for
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.routing import Route
from structlog.testing import capture_logs

NOW = datetime(2026, 11, 27, 8, 45, 10, tzinfo=UTC)
SNCF_SECRET = "sncf-current"
SNCF_PREVIOUS = "sncf-previous"
BP_SECRET = "bp-current"
ENV = {
    "PIMMS_SNCF_WEBHOOK_SECRET": SNCF_SECRET,
    "PIMMS_SNCF_WEBHOOK_SECRET_PREVIOUS": SNCF_PREVIOUS,
    "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET": BP_SECRET,
}
ORANGE_FEED = topics.partner_referrals("orange")
ORANGE_ANSWERS = topics.partner_responses("orange")
EDF_FEED = topics.partner_referrals("edf")
PREFECTURE_FEED = topics.partner_referrals("prefecture-69")


@dataclass
class Seen:
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.value)


@dataclass
class FakeEndpoint:
    """A webhook partner's endpoint: answers the statuses it is told to, records every request."""

    statuses: list[int] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json={"ok": status < 300})

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) for r in self.requests]


@dataclass
class Harness:
    gateway: Gateway
    broker: Any
    clock: ManualClock
    data_dir: Path
    seen: list[Seen]
    endpoint: FakeEndpoint
    _position: int = 0

    @property
    def runtime(self) -> Any:
        return self.gateway.runtime

    async def publish(self, topic: str, event: Event, *, key: str) -> None:
        value, headers = encode(event, envelope=envelope_for(event, source="urn:pimms:test"))
        await self.broker.publish(
            value, topic, key=key.encode(), headers={k: v.decode() for k, v in headers}
        )
        await self.drain()

    async def answer(self, topic: str, value: bytes, *, key: str) -> None:
        self._position += 1
        await self.broker.publish(value, topic, key=key.encode(), partition=self._position)
        await self.drain()

    async def drain(self) -> None:
        while await self.runtime.relay.drain():
            pass

    async def deliver(self) -> None:
        """Let every dispatcher deliver what is due, then publish what their hooks emitted."""
        await self.runtime.drain_effects()
        await self.drain()

    def of(self, topic: str) -> list[Seen]:
        return [s for s in self.seen if s.topic == topic]

    def reports(self, kind: str) -> list[dict[str, Any]]:
        return [
            s.json
            for s in self.of(topics.PARTNER_REPORTS)
            if s.headers.get("ce_type") == f"fr.pimms.gateway.{kind}.v1"
        ]

    async def post(
        self, partner_id: str, body: bytes, headers: Mapping[str, str]
    ) -> httpx.Response:
        app = Starlette(
            routes=[
                Route(
                    "/partners/{partner_id}/responses",
                    self.gateway.webhooks.endpoint,
                    methods=["POST"],
                )
            ]
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            response = await client.post(
                f"/partners/{partner_id}/responses", content=body, headers=dict(headers)
            )
        await self.drain()
        return response

    def outbound(self) -> Path:
        return self.data_dir / "partners" / "eau-grand-lyon" / "outbound"

    def inbound(self) -> Path:
        return self.data_dir / "partners" / "eau-grand-lyon" / "inbound"


def demo_directory(tmp_path: Path, **replace: str) -> Path:
    """The packaged directory, with some text replaced."""
    text = DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "directory.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def _harness(
    tmp_path: Path, database_url: str, endpoint: FakeEndpoint
) -> tuple[Harness, Any]:
    directory = demo_directory(tmp_path, **{'export_every = "5m"': 'export_every = "1m"'})
    settings = GatewaySettings(
        data_dir=tmp_path, database_url=database_url, partner_directory=directory
    )
    clock = ManualClock(NOW)
    gateway = build_gateway(settings, clock=clock, environ=ENV)
    mock = httpx.MockTransport(endpoint.handler)
    destinations: dict[str, Destination] = gateway.destinations
    for name in ("partner:sncf", "partner:banque-postale"):
        destinations[name]._transport = mock  # type: ignore[attr-defined]
    runtime = gateway.runtime
    runtime.subscribe()
    runtime.use_test_broker()
    broker = runtime.broker
    seen: list[Seen] = []

    async def raw(message: Any, original: Any) -> Any:
        return message.body

    watched = [
        topics.PARTNER_REPORTS,
        EDF_FEED,
        ORANGE_FEED,
        PREFECTURE_FEED,
        topics.dead_letters(ORANGE_ANSWERS),
        topics.dead_letters(topics.partner_responses("sncf")),
        topics.dead_letters(topics.partner_responses("eau-grand-lyon")),
    ]
    for topic in watched:

        @broker.subscriber(topic, decoder=raw)
        async def record(msg: KafkaMessage) -> None:
            raw_record: Any = msg.raw_message
            key = raw_record.key
            seen.append(
                Seen(
                    topic=raw_record.topic,
                    key=key.decode() if key else None,
                    value=msg.body,
                    headers=dict(msg.headers),
                )
            )

    await runtime.prepare_database()
    harness = Harness(
        gateway=gateway, broker=broker, clock=clock, data_dir=tmp_path, seen=seen, endpoint=endpoint
    )
    return harness, runtime


@pytest.fixture
async def harness(tmp_path: Path, database_url: str) -> AsyncIterator[Harness]:
    endpoint = FakeEndpoint()
    platform, runtime = await _harness(tmp_path, database_url, endpoint)
    async with TestKafkaBroker(runtime.broker) as test_broker:
        platform.broker = test_broker
        yield platform
    for destination in platform.gateway.destinations.values():
        close = getattr(destination, "aclose", None)
        if close is not None:
            await close()
    await runtime.database.dispose()


async def send_referral(
    harness: Harness,
    case: IntakeCaseOpened,
    partner_id: str,
    referral_requested: Any,
) -> str:
    requested = referral_requested(case, partner_id)
    await harness.publish(topics.INTAKE_CASES, case, key=str(case.case_id))
    await harness.publish(topics.CASES, requested, key=str(case.case_id))
    return str(requested.referral_id)


def reminded(case: IntakeCaseOpened, partner_id: str, referral_id: str, number: int) -> Any:
    from uuid import UUID

    return ReferralReminded(
        case_id=case.case_id,
        case_reference=case.case_reference,
        site_id=case.site_id,
        occurred_at=NOW,
        referral_id=UUID(referral_id),
        partner_id=partner_id,
        status="transmitted",
        reminder=number,
        due_at=NOW,
    )


def csv_file(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode(ENCODING)


HEADER = "REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE"


# --- eau-grand-lyon: export files ---


async def test_eau_grand_lyon_gets_an_export_file_at_the_next_slot_renamed_into_place(
    harness: Harness,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    case = case_opened(
        category="water_bill", first_name="فاطمة", last_name="Łukasz", summary="=cmd|' /C calc'!A0"
    )
    other = case_opened(category="water_bill", first_name="Jean", last_name="Martin")
    first = await send_referral(harness, case, "eau-grand-lyon", referral_requested)
    second = await send_referral(harness, other, "eau-grand-lyon", referral_requested)
    await harness.deliver()
    assert not harness.outbound().exists() or list(harness.outbound().iterdir()) == []
    assert harness.reports("delivered") == []

    harness.clock.advance(timedelta(minutes=1))  # past the export slot, 08:46:00
    await harness.deliver()
    [export] = list(harness.outbound().iterdir())  # no temporary file left behind
    assert export.name.startswith("PIMMS_EGL_20261127094610_")
    text = export.read_bytes().decode(ENCODING)
    lines = text.split("\r\n")
    assert (
        lines[0]
        == "REFERENCE;DOSSIER;DATE_DEMANDE;NOM;PRENOM;TELEPHONE;CODE_POSTAL;URGENCE;DESCRIPTION"
    )
    assert [line.split(";")[0] for line in lines[1:-1]] == [first, second]
    assert "'=cmd|' /C calc'!A0" in lines[1]  # neutralised
    assert ";Lukasz;ftmh;" in lines[1]  # transliterated, never dropped
    delivered = harness.reports("delivered")
    assert {(r["referral_id"], r["transport"]) for r in delivered} == {
        (first, "file_drop"),
        (second, "file_drop"),
    }

    await harness.publish(
        topics.CASES, referral_cancelled(case, "eau-grand-lyon", first), key=str(case.case_id)
    )
    await harness.publish(
        topics.CASES, reminded(other, "eau-grand-lyon", second, 1), key=str(other.case_id)
    )
    harness.clock.advance(timedelta(minutes=1))
    await harness.deliver()
    newest = max(harness.outbound().iterdir(), key=lambda p: p.name)
    rows = [r.split(";") for r in newest.read_bytes().decode(ENCODING).split("\r\n")[1:-1]]
    assert [(r[0], r[7], r[8][:11]) for r in rows] == [
        (first, "0", "ANNULATION"),
        (second, "1", "RELANCE 1 -"),
    ]
    assert [r["kind"] for r in harness.reports("delivered")][2:] == ["cancellation", "reminder"]


# --- eau-grand-lyon: response files ---


async def test_a_response_file_applies_its_good_lines_and_reports_the_bad_ones(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened(category="water_bill")
    referral_id = await send_referral(harness, case, "eau-grand-lyon", referral_requested)
    harness.clock.advance(timedelta(minutes=1))
    await harness.deliver()
    harness.inbound().mkdir(parents=True)
    (harness.inbound() / "REPONSES_1.csv").write_bytes(
        csv_file(
            HEADER,
            f"{referral_id};ACCEPTE;28/11/2026 10:00;;",
            f"{referral_id};PERDU;28/11/2026 10:05;;",
            "00000000-0000-4000-8000-000000000000;RECU;28/11/2026 10:05;;",
            f"{referral_id};TRAITE;29/11/2026 11:00;RESOLU;Echéancier accordé",
        )
    )
    assert await harness.gateway.inbound.scan() == 1
    await harness.drain()

    reports = [
        (r["referral_id"], r["status"], r["outcome"]) for r in harness.reports("status_reported")
    ]
    assert reports == [(referral_id, "accepted", None), (referral_id, "completed", "resolved")]
    processed = harness.inbound() / "processed"
    assert not (harness.inbound() / "REPONSES_1.csv").exists()
    assert (processed / "REPONSES_1.csv").exists()
    errors = (processed / "REPONSES_1.errors.csv").read_bytes().decode(ENCODING).split("\r\n")
    assert errors[0] == HEADER + ";ERREUR"
    assert errors[1].startswith(f"{referral_id};PERDU;")
    assert ";unknown_status: " in errors[1]
    assert errors[2].startswith("00000000-")
    assert ";unknown_reference: " in errors[2]
    assert errors[3:] == [""]
    assert await harness.gateway.inbound.scan() == 0  # nothing left


async def test_a_gateway_killed_halfway_through_a_file_applies_each_line_once(
    tmp_path: Path,
    database_url: str,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    class Killed(Exception):
        pass

    endpoint = FakeEndpoint()
    first, runtime = await _harness(tmp_path, database_url, endpoint)
    references = []
    async with TestKafkaBroker(runtime.broker) as test_broker:
        first.broker = test_broker
        for _ in range(5):
            case = case_opened(category="water_bill")
            references.append(
                await send_referral(first, case, "eau-grand-lyon", referral_requested)
            )
        first.clock.advance(timedelta(minutes=1))
        await first.deliver()
        first.inbound().mkdir(parents=True)
        lines = [f"{r};RECU;28/11/2026 10:00;;" for r in references]
        (first.inbound() / "R.csv").write_bytes(csv_file(HEADER, *lines))

        async def kill(file: Any, done: int) -> None:
            raise Killed  # the process dies after its first transaction of two lines

        first.gateway.inbound.lines_per_transaction = 2
        first.gateway.inbound.after_chunk = kill
        with pytest.raises(Killed):
            await first.gateway.inbound.scan()
        await first.drain()
        assert len(first.reports("status_reported")) == 2
        assert (first.inbound() / "R.csv").exists()  # not finished: still there
    await runtime.database.dispose()

    second, runtime = await _harness(tmp_path, database_url, endpoint)  # a new process
    async with TestKafkaBroker(runtime.broker) as test_broker:
        second.broker = test_broker
        assert await second.gateway.inbound.scan() == 1
        await second.drain()
        later = [r["referral_id"] for r in second.reports("status_reported")]
    await runtime.database.dispose()
    applied = [r["referral_id"] for r in first.reports("status_reported")] + later
    assert sorted(applied) == sorted(references)  # each line once
    assert not (tmp_path / "partners/eau-grand-lyon/inbound/processed/R.errors.csv").exists()


# --- signed webhooks, outbound ---


async def test_sncf_gets_a_signed_post_retried_with_the_same_delivery_id_until_it_answers(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    harness.endpoint.statuses = [503, 429]
    case = case_opened(category="rail_travel")
    referral_id = await send_referral(harness, case, "sncf", referral_requested)
    await harness.deliver()
    assert harness.reports("delivered") == []
    async with harness.runtime.database.transaction() as session:
        [row] = (await session.execute(select(effects))).all()
    wait = (row.next_attempt_at - NOW).total_seconds()
    assert 0.8 <= wait <= 1.2  # first retry after 1 s, ±20 %
    harness.clock.advance(timedelta(seconds=1.3))
    await harness.deliver()
    harness.clock.advance(timedelta(seconds=2.5))
    await harness.deliver()

    first, second, third = harness.endpoint.requests
    ids = {r.headers["X-PIMMS-Delivery"] for r in harness.endpoint.requests}
    assert ids == {delivery_id(partner_id="sncf", referral_id=referral_id, kind="referral")}
    assert str(third.url) == "http://127.0.0.1:8787/pimms/referrals"
    assert third.headers["content-type"] == "application/json"
    assert verify(
        headers=dict(third.headers),
        body=third.content,
        secrets=(SNCF_SECRET.encode(),),
        now=harness.clock.now(),
    ).ok
    body = json.loads(third.content)
    assert body["referral_id"] == referral_id
    assert body["topic"] == "rail_travel"
    [delivered] = harness.reports("delivered")
    assert delivered["transport"] == "webhook"
    assert first.content == second.content == third.content


async def test_a_webhook_partner_down_for_24_hours_is_a_failed_delivery(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    harness.endpoint.statuses = [503] * 1000
    case = case_opened(category="rail_travel")
    referral_id = await send_referral(harness, case, "sncf", referral_requested)
    while not harness.reports("delivery_failed"):
        await harness.deliver()
        async with harness.runtime.database.transaction() as session:
            [row] = (await session.execute(select(effects))).all()
        if row.done_at is None:  # straight to the next try, as the durable schedule says
            harness.clock.advance(max(row.next_attempt_at - harness.clock.now(), timedelta(0)))
    [failed] = harness.reports("delivery_failed")
    assert (failed["referral_id"], failed["reason"]) == (referral_id, "gave_up:http_503")
    tried = harness.clock.now() - NOW
    assert timedelta(hours=23) < tried <= timedelta(hours=24)
    assert 30 < len(harness.endpoint.requests) < 40  # 1 s doubling to 1 h, then hourly


async def test_a_4xx_fails_the_webhook_delivery_at_once(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    harness.endpoint.statuses = [410]
    case = case_opened(category="micro_credit")
    referral_id = await send_referral(harness, case, "banque-postale", referral_requested)
    await harness.deliver()
    [failed] = harness.reports("delivery_failed")
    assert (failed["referral_id"], failed["reason"]) == (referral_id, "http_410")
    assert len(harness.endpoint.requests) == 1
    [request] = harness.endpoint.requests
    assert verify(
        headers=dict(request.headers),
        body=request.content,
        secrets=(BP_SECRET.encode(),),
        now=harness.clock.now(),
    ).ok


async def test_reminders_and_cancellations_reach_webhook_partners_with_new_delivery_ids(
    harness: Harness,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    case = case_opened(category="rail_travel")
    referral_id = await send_referral(harness, case, "sncf", referral_requested)
    await harness.deliver()
    reminder = reminded(case, "sncf", referral_id, 1)
    await harness.publish(topics.CASES, reminder, key=str(case.case_id))
    await harness.publish(topics.CASES, reminder, key=str(case.case_id))  # replayed: once
    await harness.deliver()
    await harness.publish(
        topics.CASES, referral_cancelled(case, "sncf", referral_id), key=str(case.case_id)
    )
    await harness.deliver()
    bodies = harness.endpoint.bodies()
    assert [b.get("reminder") for b in bodies] == [None, 1, None]
    assert bodies[2] == {
        "referral_id": referral_id,
        "status": "cancelled",
        "at": "2026-11-27T09:45:10+01:00",
    }
    assert len({r.headers["X-PIMMS-Delivery"] for r in harness.endpoint.requests}) == 3
    assert [r["kind"] for r in harness.reports("delivered")] == [
        "referral",
        "reminder",
        "cancellation",
    ]


async def test_a_reminder_reaches_a_kafka_partner_in_its_format_and_not_a_cancelled_referral(
    harness: Harness,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
    referral_cancelled: Any,
) -> None:
    case = case_opened()
    referral_id = await send_referral(harness, case, "edf", referral_requested)
    await harness.publish(
        topics.CASES, reminded(case, "edf", referral_id, 1), key=str(case.case_id)
    )
    referral, reminder = harness.of(EDF_FEED)
    assert reminder.json == {**referral.json, "relance": 1}
    await harness.publish(
        topics.CASES, referral_cancelled(case, "edf", referral_id), key=str(case.case_id)
    )
    await harness.publish(
        topics.CASES, reminded(case, "edf", referral_id, 2), key=str(case.case_id)
    )
    assert [s.json.get("statut") for s in harness.of(EDF_FEED)] == [None, None, "ANNULE"]


# --- signed webhooks, inbound ---


def signed(body: bytes, *, secret: str = SNCF_SECRET, at: datetime = NOW) -> dict[str, str]:
    return signed_headers(secret=secret.encode(), body=body, at=at, delivery_id="sncf-d-1")


async def test_sncf_answers_are_verified_then_applied_once(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened(category="rail_travel")
    referral_id = await send_referral(harness, case, "sncf", referral_requested)
    await harness.deliver()
    answer = {
        "referral_id": referral_id,
        "status": "done",
        "outcome": "resolved",
        "at": "2026-11-28T10:00:00+01:00",
        "ticket": "T-9",
    }
    body = json.dumps(answer).encode()

    forged = await harness.post("sncf", body, signed(body, secret="guessed"))
    stale = await harness.post("sncf", body, signed(body, at=NOW - timedelta(minutes=6)))
    unsigned = await harness.post("sncf", body, {"Content-Type": "application/json"})
    assert [r.status_code for r in (forged, stale, unsigned)] == [401, 401, 401]
    assert harness.reports("status_reported") == []  # nothing recorded

    with capture_logs() as logs:
        accepted = await harness.post("sncf", body, signed(body, secret=SNCF_PREVIOUS))
        again = await harness.post("sncf", body, signed(body))
    assert (accepted.status_code, again.status_code) == (202, 202)
    [report] = harness.reports("status_reported")
    assert (report["referral_id"], report["status"], report["outcome"]) == (
        referral_id,
        "completed",
        "resolved",
    )
    unknown = [e for e in logs if e["event"] == "partner.unknown_fields"]
    assert [(e["partner_id"], e["fields"]) for e in unknown] == [("sncf", ["ticket"])]
    assert "T-9" not in json.dumps(logs, default=str)

    bad = json.dumps({"referral_id": referral_id, "status": "lost", "at": "x"}).encode()
    malformed = await harness.post("sncf", bad, signed(bad))
    assert malformed.status_code == 400
    assert malformed.json()["errors"][0]["reason"] == "schema_invalid"
    other = json.dumps({**answer, "referral_id": "00000000-0000-4000-8000-000000000000"}).encode()
    assert (await harness.post("sncf", other, signed(other))).status_code == 404
    assert (await harness.post("edf", body, signed(body))).status_code == 404
    huge = b'{"x": "' + b"a" * 70_000 + b'"}'
    assert (await harness.post("sncf", huge, signed(huge))).status_code == 413
    assert len(harness.reports("status_reported")) == 1


async def test_sncf_cannot_answer_for_a_banque_postale_referral(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened(category="micro_credit")
    referral_id = await send_referral(harness, case, "banque-postale", referral_requested)
    await harness.deliver()
    body = json.dumps(
        {"referral_id": referral_id, "status": "received", "at": "2026-11-28T10:00:00+01:00"}
    ).encode()
    assert (await harness.post("sncf", body, signed(body))).status_code == 404
    headers = signed(body, secret=BP_SECRET)
    assert (await harness.post("banque-postale", body, headers)).status_code == 202
    assert [r["partner_id"] for r in harness.reports("status_reported")] == ["banque-postale"]


# --- orange, by data alone, on Kafka ---


async def test_orange_gets_its_mapped_referral_and_its_answers_are_read(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    case = case_opened(category="telecom", urgency="normal")
    referral_id = await send_referral(harness, case, "orange", referral_requested)
    [sent] = harness.of(ORANGE_FEED)
    assert sent.key == referral_id
    assert sent.json["reference"] == referral_id
    assert sent.json["categorie"] == "TELECOM"
    assert sent.json["priorite"] == "P2"
    answer = {
        "reference": referral_id,
        "statut": "RESOLUE",
        "horodatage": "2026-11-28T10:00:00+01:00",
        "canal": "x",
    }
    with capture_logs() as logs:
        await harness.answer(ORANGE_ANSWERS, json.dumps(answer).encode(), key=referral_id)
        await harness.answer(ORANGE_ANSWERS, json.dumps(answer).encode(), key=referral_id)
    reports = harness.reports("status_reported")
    assert [(r["status"], r["outcome"]) for r in reports] == [("completed", "resolved")] * 2
    unknown = [e for e in logs if e["event"] == "partner.unknown_fields"]
    assert [(e["partner_id"], e["fields"]) for e in unknown] == [("orange", ["canal"])]


# --- the prefecture, now that referrals holds incomplete files ---

COMPLETE_FILE = (
    "id_card",
    "birth_certificate",
    "proof_of_address",
    "tax_notices",
    "language_diploma",
)


async def test_a_released_file_waits_for_its_documents_to_reach_the_dossier(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    """Referrals releases a naturalisation file once its documents came; the gateway may hear
    of the release before the dossier hears of the documents (two topics): it waits."""
    case = case_opened(category="naturalisation", documents=("id_card",))
    await harness.publish(topics.INTAKE_CASES, case, key=str(case.case_id))
    requested = referral_requested(case, "prefecture-69")
    await harness.publish(topics.CASES, requested, key=str(case.case_id))
    assert harness.of(PREFECTURE_FEED) == []
    added = IntakeDocumentsAdded(
        case_id=case.case_id,
        case_reference=case.case_reference,
        added=COMPLETE_FILE[1:],
        documents=COMPLETE_FILE,
        added_at=NOW,
    )
    await harness.publish(topics.INTAKE_CASES, added, key=str(case.case_id))
    [sent] = harness.of(PREFECTURE_FEED)
    assert sent.json["piecesFournies"] == list(COMPLETE_FILE)
    assert sent.json["complet"] is True


async def test_forwarded_documents_send_the_prefecture_its_file_again(
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    monkeypatch.setattr(registry, "REFERRALS_HOLDS_INCOMPLETE_FILES", True)
    platform, runtime = await _harness(tmp_path, database_url, FakeEndpoint())
    async with TestKafkaBroker(runtime.broker) as test_broker:
        platform.broker = test_broker
        case = case_opened(category="naturalisation", documents=COMPLETE_FILE)
        referral_id = await send_referral(platform, case, "prefecture-69", referral_requested)
        from uuid import UUID

        forwarded = ReferralDocumentsForwarded(
            case_id=case.case_id,
            case_reference=case.case_reference,
            site_id=case.site_id,
            occurred_at=NOW,
            referral_id=UUID(referral_id),
            partner_id="prefecture-69",
            documents=("marriage_certificate", "work_contract"),
            missing_documents=("payslips",),
        )
        await platform.publish(topics.CASES, forwarded, key=str(case.case_id))
    await runtime.database.dispose()
    first, again = platform.of(PREFECTURE_FEED)
    assert first.json["piecesFournies"] == list(COMPLETE_FILE)
    assert first.json["complet"] is True
    assert again.json["piecesFournies"] == [*COMPLETE_FILE, "marriage_certificate", "work_contract"]
    assert again.key == referral_id
    assert [r["kind"] for r in platform.reports("delivered")] == ["referral"]


# --- the directory, reloaded ---


async def test_a_changed_directory_is_used_and_a_bad_one_refused_keeping_the_last_good(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    path = harness.gateway.directory.path
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("http://127.0.0.1:8787/pimms/referrals", "http://sncf.test/v2"), "utf-8"
    )
    assert harness.gateway.directory.check()
    case = case_opened(category="rail_travel")
    await send_referral(harness, case, "sncf", referral_requested)
    await harness.deliver()
    assert str(harness.endpoint.requests[0].url) == "http://sncf.test/v2"

    with capture_logs() as logs:
        path.write_text(text.replace('territory = ["69"]', 'territory = ["6"]', 1), "utf-8")
        assert not harness.gateway.directory.check()
    [refused] = [e for e in logs if e["event"] == "config.refused"]
    assert "'eau-grand-lyon'" in refused["error"]
    assert "territory" in refused["error"]
    assert harness.gateway.partners.directory().get("sncf").transport.url == "http://sncf.test/v2"  # type: ignore[union-attr]


# --- webhook outages: a durable schedule, and other partners keep flowing ---


async def _sncf_effect(harness: Harness) -> Any:
    async with harness.runtime.database.transaction() as session:
        rows = (
            await session.execute(select(effects).where(effects.c.destination == "partner:sncf"))
        ).all()
    [row] = rows
    return row


async def test_a_restarted_gateway_continues_the_webhook_retry_schedule(
    tmp_path: Path,
    database_url: str,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    endpoint = FakeEndpoint(statuses=[503, 503, 503])
    first, runtime = await _harness(tmp_path, database_url, endpoint)
    async with TestKafkaBroker(runtime.broker) as test_broker:
        first.broker = test_broker
        referral_id = await send_referral(
            first, case_opened(category="rail_travel"), "sncf", referral_requested
        )
        await first.deliver()
        for _ in range(2):  # two more tries, each when the schedule says
            row = await _sncf_effect(first)
            first.clock.advance(row.next_attempt_at - first.clock.now())
            await first.deliver()
        before = await _sncf_effect(first)
        stopped_at = first.clock.now()
    for destination in first.gateway.destinations.values():
        close = getattr(destination, "aclose", None)
        if close is not None:
            await close()
    await runtime.database.dispose()
    assert len(endpoint.requests) == 3
    assert before.attempts == 3
    assert before.done_at is None
    # the fourth try is due 4 s (±20 %) after the third, not 1 s as for a first retry
    assert before.next_attempt_at - stopped_at > timedelta(seconds=3)

    second, runtime = await _harness(tmp_path, database_url, endpoint)  # a new process
    async with TestKafkaBroker(runtime.broker) as test_broker:
        second.broker = test_broker
        second.clock.advance(stopped_at - second.clock.now() + timedelta(seconds=2))
        await second.deliver()
        assert len(endpoint.requests) == 3  # not yet due: the schedule survived the restart
        second.clock.advance(before.next_attempt_at - second.clock.now())
        await second.deliver()
        assert len(endpoint.requests) == 4  # due now: tried, answered 200
        after = await _sncf_effect(second)
        delivered = second.reports("delivered")
        for destination in second.gateway.destinations.values():
            close = getattr(destination, "aclose", None)
            if close is not None:
                await close()
    await runtime.database.dispose()
    assert after.attempts == 4
    assert after.done_at is not None
    assert [d["referral_id"] for d in delivered] == [referral_id]
    ids = {r.headers["X-PIMMS-Delivery"] for r in endpoint.requests}
    assert ids == {delivery_id(partner_id="sncf", referral_id=referral_id, kind="referral")}


@dataclass
class SncfDown(FakeEndpoint):
    """SNCF answers 503 to everything; La Banque Postale answers 200."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = 503 if request.url.port == 8787 else 200
        return httpx.Response(status, json={"ok": status < 300})


async def test_sncf_down_never_holds_back_the_other_partners(
    tmp_path: Path,
    database_url: str,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    endpoint = SncfDown()
    harness, runtime = await _harness(tmp_path, database_url, endpoint)
    async with TestKafkaBroker(runtime.broker) as test_broker:
        harness.broker = test_broker
        for _ in range(3):  # SNCF's queue fills with referrals it cannot take
            await send_referral(
                harness, case_opened(category="rail_travel"), "sncf", referral_requested
            )
        others = {
            partner: await send_referral(
                harness, case_opened(category=category), partner, referral_requested
            )
            for partner, category in (
                ("banque-postale", "micro_credit"),
                ("edf", "energy_bill"),
                ("eau-grand-lyon", "water_bill"),
            )
        }
        harness.clock.advance(timedelta(minutes=1))  # the next export slot of the file drop
        await harness.deliver()
        delivered = {d["partner_id"]: d["referral_id"] for d in harness.reports("delivered")}
        sncf_tries = [r for r in endpoint.requests if r.url.port == 8787]
        for destination in harness.gateway.destinations.values():
            close = getattr(destination, "aclose", None)
            if close is not None:
                await close()
    await runtime.database.dispose()
    assert delivered == others  # every other partner has its referral; SNCF none yet
    assert len(sncf_tries) >= 3  # each SNCF referral was tried and will be again
    assert not harness.reports("delivery_failed")


async def test_a_webhook_partner_added_to_the_file_gets_its_dispatcher_without_restart(
    harness: Harness, case_opened: Callable[..., IntakeCaseOpened], referral_requested: Any
) -> None:
    path = harness.gateway.directory.path
    text = path.read_text(encoding="utf-8")
    sncf = "[[partner]]" + text.split("[[partner]]")[4]
    assert 'id = "sncf"' in sncf
    fret = sncf.replace('id = "sncf"', 'id = "sncf-fret"').replace(
        "/pimms/referrals", "/pimms/fret"
    )
    path.write_text(text + "\n" + fret, encoding="utf-8")
    assert harness.gateway.directory.check()
    added = harness.gateway.destinations["partner:sncf-fret"]  # its own dispatcher, built now
    added._transport = httpx.MockTransport(harness.endpoint.handler)  # type: ignore[attr-defined]
    case = case_opened(category="rail_travel")
    referral_id = await send_referral(harness, case, "sncf-fret", referral_requested)
    await harness.deliver()
    [request] = harness.endpoint.requests
    assert str(request.url) == "http://127.0.0.1:8787/pimms/fret"
    assert json.loads(request.content)["referral_id"] == referral_id
    assert verify(
        headers=dict(request.headers),
        body=request.content,
        secrets=(SNCF_SECRET.encode(),),
        now=harness.clock.now(),
    ).ok
    assert [(d["partner_id"], d["referral_id"]) for d in harness.reports("delivered")] == [
        ("sncf-fret", referral_id)
    ]
    assert not harness.reports("delivery_failed")
