"""Notifications people actually receive, end to end: the real service on a real broker, a real
local HTTP server playing the SMS provider (posting its delivery reports back to the service's
endpoint) and a real local SMTP server (aiosmtpd), all started by the test. Platform time is a
`ManualClock` the test steers (moments end, quiet hours begin and end)."""

from __future__ import annotations

import asyncio
import email
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.v1.frontoffice import ContactConsent
from pimms_contracts.v1.internal import IntakeCaseOpened, SharedNeed, SharedVisitor
from pimms_contracts.v1.lifecycle import CaseClosed, ReferralAccepted, ReferralCompleted
from pimms_notifications.app import build_runtime
from pimms_notifications.settings import NotificationsSettings
from pimms_servicekit.clock import ManualClock
from pimms_servicekit.runtime import ServiceRuntime
from pimms_servicekit.tables import effects
from pimms_servicekit.testing import KafkaEndpoint, Record, TopicWatcher, event_message, produce
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

pytestmark = pytest.mark.integration

API_KEY = "xkeysib-test-key"
TOKEN = "report-token-0123456789"
MAIL_FROM = "PIMMS <notifications@pimms.example>"
START = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)  # 10:30 in Paris
MOMENT = timedelta(seconds=3)  # past the 2 s window
SENT = "fr.pimms.notification.sent.v1"
FAILED = "fr.pimms.notification.failed.v1"

FRENCH_PHONE = "+33612345601"
ARABIC_PHONE = "+33612345603"
BOUNCING_PHONE = "+33612345605"
REFUSED_PHONE = "+33612345607"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
    return port


@dataclass
class FakeProvider:
    """Brevo's transactional SMS API: answers a messageId, then reports to the `webUrl`."""

    bouncing: set[str]
    refused: set[str] = field(default_factory=set)
    """Numbers the provider answers 400 (an invalid number): never sent, no report."""
    received: list[dict[str, Any]] = field(default_factory=list)
    reports: list[int | str] = field(default_factory=list)
    next_id: int = 1511882900176220

    async def send(self, request: Request) -> Response:
        if request.headers.get("api-key") != API_KEY:
            return JSONResponse({"code": "unauthorized"}, 401)
        body = await request.json()
        if body["recipient"] in self.refused:
            return JSONResponse({"code": "invalid_parameter", "message": "Invalid number"}, 400)
        self.received.append(body)
        self.next_id += 1
        status = "hardBounce" if body["recipient"] in self.bouncing else "delivered"
        report = {"messageId": self.next_id, "msg_status": status, "tag": body["tag"]}
        asyncio.get_running_loop().create_task(self._report(body["webUrl"], report))
        return JSONResponse({"reference": "ref", "messageId": self.next_id, "smsCount": 1}, 201)

    async def _report(self, url: str, report: dict[str, Any]) -> None:
        # A real report comes seconds after the send (were it first, the service would still fail
        # the SMS and fall back, without announcing it sent).
        await asyncio.sleep(0.5)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                response = await client.post(url, json=report)
        except httpx.HTTPError as exc:
            self.reports.append(type(exc).__name__)
        else:
            self.reports.append(response.status_code)

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [body for body in self.received if body["recipient"] == phone.lstrip("+")]


@dataclass
class Mailbox:
    """An SMTP server's mailbox."""

    received: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = email.message_from_bytes(envelope.original_content or b"", policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]


@dataclass
class World:
    kafka: KafkaEndpoint
    runtime: ServiceRuntime[Any]
    clock: ManualClock
    provider: FakeProvider
    mailbox: Mailbox
    watcher: TopicWatcher
    service_url: str
    data_dir: Path

    async def send(self, *messages: tuple[str, bytes, bytes, list[tuple[str, bytes]]]) -> None:
        handled = self.runtime.pipeline.stats.messages + self.runtime.pipeline.stats.duplicates
        await produce(self.kafka.bootstrap_servers, list(messages))
        await until(
            lambda: (
                self.runtime.pipeline.stats.messages + self.runtime.pipeline.stats.duplicates
                >= handled + len(messages)
            ),
            "the service to read the messages",
        )

    async def told(self, case: IntakeCaseOpened, *, count: int = 1) -> list[Record]:
        """What was announced about `case` (at least `count` events)."""
        deadline = time.monotonic() + 30
        while True:
            await self.runtime.relay.drain()
            await self.watcher.poll()
            found = [r for r in self.watcher.records if r.json["case_id"] == str(case.case_id)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


def visitor(
    *,
    reference: str,
    language: str,
    phone: str | None = None,
    address: str | None = None,
) -> IntakeCaseOpened:
    return IntakeCaseOpened(
        case_id=uuid.uuid4(),
        case_reference=reference,
        submission_id=uuid.uuid4(),
        site_id="lyon-8",
        mediator_id="m-042",
        channel="front_desk",
        submitted_at=START,
        opened_at=START,
        visitor=SharedVisitor(
            first_name="Amina",
            last_name="Benali",
            phone=phone,
            email=address,
            postal_code="69008",
            language=language,
            contact_consent=ContactConsent(sms=phone is not None, email=address is not None),
        ),
        need=SharedNeed(category="energy_bill", summary="Facture", urgency="high", documents=()),
    )


def on(topic: str, event: Event, case: IntakeCaseOpened) -> Any:
    return event_message(topic, event, key=str(case.case_id), source="urn:pimms:referrals")


def referral(case: IntakeCaseOpened, at: datetime) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "case_reference": case.case_reference,
        "site_id": case.site_id,
        "occurred_at": at,
        "referral_id": uuid.uuid5(case.case_id, "edf"),
        "partner_id": "edf",
    }


async def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def world(kafka: KafkaEndpoint, database_url: str, tmp_path: Path) -> AsyncIterator[World]:
    provider = FakeProvider(
        bouncing={BOUNCING_PHONE.lstrip("+")}, refused={REFUSED_PHONE.lstrip("+")}
    )
    provider_app = Starlette(
        routes=[Route("/v3/transactionalSMS/send", provider.send, methods=["POST"])]
    )
    provider_socket = free_socket()
    provider_server = uvicorn.Server(
        uvicorn.Config(provider_app, log_level="warning", lifespan="off")
    )
    provider_task = asyncio.create_task(provider_server.serve(sockets=[provider_socket]))
    await until(lambda: provider_server.started, "the SMS provider")
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    service_port = free_port()
    service_url = f"http://127.0.0.1:{service_port}"
    settings = NotificationsSettings(
        data_dir=tmp_path,
        database_url=database_url,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        # Loops woken by each commit anyway; fewer idle polls, fewer queries cut by the shutdown.
        relay_poll_interval_s=0.2,
        http_port=service_port,
        public_url=service_url,
        sms_api_url=f"http://127.0.0.1:{provider_socket.getsockname()[1]}",
        sms_api_key=API_KEY,
        sms_sender="PIMMS",
        sms_report_token=TOKEN,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
        mail_from=MAIL_FROM,
        job_interval_s=0.1,
    )
    clock = ManualClock(START)
    runtime = build_runtime(settings, clock=clock)
    app = runtime.build_app()
    await app.start()
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.NOTIFICATIONS]).start()
    try:
        yield World(kafka, runtime, clock, provider, mailbox, watcher, service_url, tmp_path)
    finally:
        await watcher.stop()
        await stop(app)
        smtp.stop()
        provider_server.should_exit = True
        await provider_task


async def stop(app: Any) -> None:
    """Stop the service; if it hangs, show where (a test must fail, not hang)."""
    try:
        await asyncio.wait_for(asyncio.shield(app.stop()), timeout=60)
    except TimeoutError:
        for task in asyncio.all_tasks():
            if task.cancelling():
                print(f"stuck while cancelled: {task.get_name()}: {' <- '.join(awaiting(task))}")
        raise


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where a task waits: its chain of awaited coroutines, outermost first."""
    chain, current = [], task.get_coro()
    while current is not None:
        frame = getattr(current, "cr_frame", None) or getattr(current, "ag_frame", None)
        if frame is not None:
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        current = getattr(current, "cr_await", None) or getattr(current, "ag_await", None)
    return chain


def kinds(records: list[Record]) -> list[tuple[str, str, str | None, str]]:
    return sorted(
        (
            "sent" if r.ce_type == SENT else "failed",
            r.json["audience"],
            r.json["channel"],
            r.json["template"],
        )
        for r in records
    )


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


async def test_each_visitor_gets_what_they_agreed_to_in_their_language(world: World) -> None:
    french = visitor(reference="LYON8-2026-000801", language="fr", phone=FRENCH_PHONE)
    english = visitor(reference="LYON8-2026-000802", language="en", address="en@example.org")
    arabic = visitor(
        reference="LYON8-2026-000803",
        language="ar",
        phone=ARABIC_PHONE,
        address="ar@example.org",
    )
    silent = visitor(reference="LYON8-2026-000804", language="fr")
    bouncing = visitor(
        reference="LYON8-2026-000805",
        language="fr",
        phone=BOUNCING_PHONE,
        address="bounce@example.org",
    )
    cases = (french, english, arabic, silent, bouncing)
    await world.send(*(on(topics.INTAKE_CASES, case, case) for case in cases))
    world.clock.advance(MOMENT)  # the moment is over: the messages go

    await until(
        lambda: len(world.provider.received) == 3 and len(world.mailbox.received) == 2,
        "three SMS and two e-mails",
    )
    # French, SMS consent: one SMS in French, folded to GSM-7 (160 characters, not 70).
    [sms] = world.provider.to(FRENCH_PHONE)
    assert sms["sender"] == "PIMMS"
    assert sms["type"] == "transactional"
    assert sms["content"].startswith("PIMMS : Bonjour Amina")
    assert "LYON8-2026-000801" in sms["content"]
    assert "unicodeEnabled" not in sms
    assert sms["webUrl"] == f"{world.service_url}/sms/delivery-reports?token={TOKEN}"
    # English, e-mail only: one e-mail in English, text and HTML.
    [mail] = world.mailbox.to("en@example.org")
    assert mail["From"] == MAIL_FROM
    assert "LYON8-2026-000802" in mail["Subject"]
    assert "Hello Amina" in text_of(mail)
    assert mail.get_body(("html",)) is not None
    # Arabic, both: SMS only (one channel), in Arabic, sent as Unicode.
    [arabic_sms] = world.provider.to(ARABIC_PHONE)
    assert "مرحبًا" in arabic_sms["content"]
    assert arabic_sms["unicodeEnabled"] is True
    assert world.mailbox.to("ar@example.org") == []
    # The provider reports the bouncing number's SMS failed: the visitor gets the e-mail instead.
    [fallback] = world.mailbox.to("bounce@example.org")
    assert "Bonjour Amina" in text_of(fallback)
    assert "LYON8-2026-000805" in text_of(fallback)
    await until(lambda: len(world.provider.reports) == 3, "the delivery reports")
    assert world.provider.reports == [200, 200, 200]

    bounced = await world.told(bouncing, count=3)
    assert kinds(bounced) == [
        ("failed", "visitor", "sms", "case_opened"),
        ("sent", "visitor", "email", "case_opened"),
        ("sent", "visitor", "sms", "case_opened"),
    ]
    [failure] = [r for r in bounced if r.ce_type == FAILED]
    assert failure.json["reason"] == "sms_hard_bounce"
    # No consent: nothing to the visitor, the mediator is told once.
    assert kinds(await world.told(silent, count=2)) == [
        ("failed", "visitor", None, "case_opened"),
        ("sent", "mediator", "mediator_inbox", "visitor_unreachable"),
    ]
    inbox = world.data_dir / "notifications" / "mediator_inbox" / "lyon-8" / "m-042"
    assert len(list(inbox.iterdir())) == 1
    for case in (french, english, arabic):
        [told] = await world.told(case)
        assert told.ce_type == SENT
        assert told.json["language"] == case.visitor.language


async def test_a_completed_single_referral_case_is_one_sms_and_nothing_goes_twice(
    world: World,
) -> None:
    french = visitor(reference="LYON8-2026-000811", language="fr", phone=FRENCH_PHONE)
    opened = on(topics.INTAKE_CASES, french, french)
    await world.send(opened)
    world.clock.advance(MOMENT)
    await until(lambda: len(world.provider.received) == 1, "the case's reference")

    at = world.clock.now()
    completed = on(
        topics.CASES, ReferralCompleted(**referral(french, at), outcome="resolved"), french
    )
    closed_event = CaseClosed(
        case_id=french.case_id,
        case_reference=french.case_reference,
        site_id=french.site_id,
        occurred_at=at,
        outcome="resolved",
    )
    closed = on(topics.CASES, closed_event, french)
    await world.send(completed, closed)
    world.clock.advance(MOMENT)
    await until(lambda: len(world.provider.received) == 2, "the outcome")
    last = world.provider.received[-1]["content"]
    assert "EDF a traité votre demande : une solution a été trouvée." in last
    assert "Dossier clos : votre demande a été résolue." in last
    await until(lambda: len(world.provider.reports) == 2, "the delivery reports")

    # Every event of the case, delivered again (Kafka redelivers): nothing is sent twice.
    await world.send(opened, completed, closed, opened, completed, closed)
    world.clock.advance(MOMENT)
    await asyncio.sleep(1.5)  # the jobs look every 100 ms, the dispatchers every 200 ms
    assert len(world.provider.received) == 2
    told = await world.told(french, count=3)
    assert kinds(told) == [
        ("sent", "mediator", "mediator_inbox", "combined"),
        ("sent", "visitor", "sms", "case_opened"),
        ("sent", "visitor", "sms", "combined"),
    ]


async def test_an_sms_due_at_night_goes_at_eight_but_an_email_at_once(world: World) -> None:
    french = visitor(reference="LYON8-2026-000821", language="fr", phone=FRENCH_PHONE)
    english = visitor(reference="LYON8-2026-000822", language="en", address="en@example.org")
    await world.send(*(on(topics.INTAKE_CASES, c, c) for c in (french, english)))
    world.clock.advance(MOMENT)
    await until(
        lambda: len(world.provider.received) == 1 and len(world.mailbox.received) == 1,
        "the references",
    )

    night = datetime(2026, 11, 27, 21, 30, tzinfo=UTC)  # 22:30 in Paris
    world.clock.advance(night - world.clock.now())
    await world.send(
        *(on(topics.CASES, ReferralAccepted(**referral(c, night)), c) for c in (french, english))
    )
    world.clock.advance(MOMENT)
    await until(lambda: len(world.mailbox.received) == 2, "the e-mail, not deferred")
    assert "has been taken up by EDF" in text_of(world.mailbox.received[-1])
    await asyncio.sleep(1.0)
    assert len(world.provider.received) == 1  # the SMS waits for the morning

    async with world.runtime.database.sessions() as session:
        waiting = (
            (
                await session.execute(
                    select(effects.c.next_attempt_at).where(
                        effects.c.destination == "sms", effects.c.done_at.is_(None)
                    )
                )
            )
            .scalars()
            .all()
        )
    eight_in_paris = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    assert waiting == [eight_in_paris]

    world.clock.advance(eight_in_paris - world.clock.now() - timedelta(minutes=1))
    await asyncio.sleep(1.0)
    assert len(world.provider.received) == 1  # 07:59 in Paris: not yet
    world.clock.advance(timedelta(minutes=1))
    await until(lambda: len(world.provider.received) == 2, "the SMS at 08:00")
    assert "est prise en charge par EDF" in world.provider.received[-1]["content"]


async def test_the_report_endpoint_refuses_strangers_and_ignores_the_unknown(
    world: World,
) -> None:
    url = f"{world.service_url}/sms/delivery-reports"
    report = {"messageId": 42, "msg_status": "hardBounce"}
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, json=report)).status_code == 401
        assert (
            await client.post(f"{url}?token=wrong-token-000000", json=report)
        ).status_code == 401
        authorised = f"{url}?token={TOKEN}"
        assert (await client.post(authorised, content=b"{not json")).status_code == 400
        assert (await client.post(authorised, json={"msg_status": "delivered"})).status_code == 400
        assert (await client.post(authorised, json=report)).status_code == 200


async def test_an_sms_the_provider_refuses_falls_back_to_email(world: World) -> None:
    refused = visitor(
        reference="LYON8-2026-000831",
        language="fr",
        phone=REFUSED_PHONE,
        address="refused@example.org",
    )
    await world.send(on(topics.INTAKE_CASES, refused, refused))
    world.clock.advance(MOMENT)
    await until(lambda: len(world.mailbox.to("refused@example.org")) == 1, "the e-mail instead")
    [mail] = world.mailbox.to("refused@example.org")
    assert "Bonjour Amina" in text_of(mail)
    assert "LYON8-2026-000831" in text_of(mail)
    assert world.provider.received == []
    told = await world.told(refused, count=2)
    assert kinds(told) == [
        ("failed", "visitor", "sms", "case_opened"),
        ("sent", "visitor", "email", "case_opened"),
    ]
    [failure] = [r for r in told if r.ce_type == FAILED]
    assert failure.json["reason"] == "sms_http_400_invalid_parameter"
