"""The SMS channel against a real local HTTP server playing the provider (Brevo's API shape).

The fake provider answers what the test scripts, records what it received, and, like the real
one, posts a delivery report to the `webUrl` it was given; a small receiver shaped like the
service's endpoint checks the token and parses the report with the service's functions.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from pimms_notifications.channels import (
    Delivered,
    OutgoingMessage,
    PermanentFailure,
    TransientFailure,
)
from pimms_notifications.channels.brevo import (
    BrevoSmsChannel,
    DeliveryReportError,
    SmsDeliveryReport,
    delivery_report_url,
    parse_delivery_report,
    report_token_valid,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

pytestmark = pytest.mark.integration

API_KEY = "xkeysib-test-key"
TOKEN = "report-token-0123456789"
AT = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


@dataclass
class FakeProvider:
    """Answers the scripted replies in turn (then 201), records each request."""

    replies: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    report_status: str | None = None
    next_id: int = 1511882900176220

    async def send(self, request: Request) -> Response:
        body = await request.json()
        self.received.append((dict(request.headers), body))
        if request.headers.get("api-key") != API_KEY:
            return JSONResponse({"code": "unauthorized", "message": "Key not found"}, 401)
        if self.replies:
            status, payload, headers = self.replies.pop(0)
            return JSONResponse(payload, status, headers=headers)
        self.next_id += 1
        message_id = self.next_id
        if self.report_status is not None:
            report = {"messageId": message_id, "msg_status": self.report_status, "tag": body["tag"]}
            asyncio.get_running_loop().create_task(self._report(body["webUrl"], report))
        return JSONResponse({"reference": "ref", "messageId": message_id, "smsCount": 1}, 201)

    async def _report(self, url: str, report: dict[str, Any]) -> None:
        async with httpx.AsyncClient() as client:
            await client.post(url, json=report)


@dataclass
class ReportReceiver:
    """The shape of the service's `POST /sms/delivery-reports` (token, 200 for what it ignores)."""

    reports: list[SmsDeliveryReport] = field(default_factory=list)
    refused: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def receive(self, request: Request) -> Response:
        if not report_token_valid(given=request.query_params.get("token"), expected=TOKEN):
            self.refused += 1
            return Response(status_code=401)
        try:
            self.reports.append(parse_delivery_report(await request.body()))
        except DeliveryReportError:
            return Response(status_code=400)
        self.arrived.set()
        return Response(status_code=200)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a free port, held until the server takes it
    return sock


@dataclass
class Servers:
    provider: FakeProvider
    receiver: ReportReceiver
    provider_url: str
    public_url: str


async def serve(app: Starlette) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    sock = bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    provider, receiver = FakeProvider(), ReportReceiver()
    provider_app = Starlette(
        routes=[Route("/v3/transactionalSMS/send", provider.send, methods=["POST"])]
    )
    receiver_app = Starlette(
        routes=[Route("/sms/delivery-reports", receiver.receive, methods=["POST"])]
    )
    running = [await serve(provider_app), await serve(receiver_app)]
    try:
        yield Servers(provider, receiver, running[0][2], running[1][2])
    finally:
        for server, task, _ in running:
            server.should_exit = True
            await task


@pytest.fixture
async def channel(servers: Servers) -> AsyncIterator[BrevoSmsChannel]:
    sms = BrevoSmsChannel(
        api_url=servers.provider_url,
        api_key=API_KEY,
        sender="PIMMS",
        report_url=delivery_report_url(servers.public_url, token=TOKEN),
    )
    yield sms
    await sms.aclose()


def message(**changes: Any) -> OutgoingMessage:
    base: dict[str, Any] = {
        "notification_id": uuid.UUID("00000000-0000-5000-8000-000000000042"),
        "to": "+33612345678",
        "site_id": "lyon-8",
        "subject": None,
        "body": "PIMMS : Bonjour Marie, votre demande est prise en charge par La Poste.\n",
        "sent_at": AT,
        "language": "fr",
    }
    return OutgoingMessage(**{**base, **changes})


async def test_the_provider_receives_the_sms_and_reports_its_delivery(
    servers: Servers, channel: BrevoSmsChannel
) -> None:
    servers.provider.report_status = "delivered"
    result = await channel.deliver(message())
    assert result == Delivered(provider_message_id="1511882900176221")
    [(headers, body)] = servers.provider.received
    assert headers["api-key"] == API_KEY
    assert headers["content-type"] == "application/json"
    assert body == {
        "sender": "PIMMS",
        "recipient": "33612345678",
        "content": "PIMMS : Bonjour Marie, votre demande est prise en charge par La Poste.",
        "type": "transactional",
        "tag": "00000000-0000-5000-8000-000000000042",
        "webUrl": f"{servers.public_url}/sms/delivery-reports?token={TOKEN}",
    }
    await asyncio.wait_for(servers.receiver.arrived.wait(), timeout=5)
    [report] = servers.receiver.reports
    assert (report.message_id, report.tag, report.outcome) == (
        "1511882900176221",
        "00000000-0000-5000-8000-000000000042",
        "delivered",
    )


async def test_a_hard_bounce_report_is_a_failure_to_fall_back_from(
    servers: Servers, channel: BrevoSmsChannel
) -> None:
    servers.provider.report_status = "hardBounce"
    assert isinstance(await channel.deliver(message()), Delivered)
    await asyncio.wait_for(servers.receiver.arrived.wait(), timeout=5)
    [report] = servers.receiver.reports
    assert (report.outcome, report.reason) == ("failed", "sms_hard_bounce")


async def test_a_report_without_the_token_is_refused(servers: Servers) -> None:
    async with httpx.AsyncClient() as client:
        for url in (
            f"{servers.public_url}/sms/delivery-reports",
            f"{servers.public_url}/sms/delivery-reports?token=guess",
        ):
            response = await client.post(url, json={"messageId": 1, "msg_status": "delivered"})
            assert response.status_code == 401
    assert servers.receiver.refused == 2
    assert servers.receiver.reports == []


async def test_arabic_goes_as_unicode(servers: Servers, channel: BrevoSmsChannel) -> None:
    await channel.deliver(message(body="PIMMS: مرحبًا أمينة، تم إغلاق ملفك.\n", language="ar"))
    [(_, body)] = servers.provider.received
    assert body["unicodeEnabled"] is True
    assert body["content"] == "PIMMS: مرحبًا أمينة، تم إغلاق ملفك."


async def test_a_redelivery_carries_the_same_tag(
    servers: Servers, channel: BrevoSmsChannel
) -> None:
    await channel.deliver(message())
    await channel.deliver(message())
    tags = [body["tag"] for _, body in servers.provider.received]
    assert tags == ["00000000-0000-5000-8000-000000000042"] * 2


Reply = tuple[int, dict[str, Any], dict[str, str], object]


@pytest.mark.parametrize(
    "reply",
    [
        (500, {"message": "internal"}, {}, TransientFailure("sms_http_500")),
        (503, {}, {}, TransientFailure("sms_http_503")),
        (
            429,
            {"message": "too many"},
            {"Retry-After": "12"},
            TransientFailure("sms_http_429", retry_after=timedelta(seconds=12)),
        ),
        (
            400,
            {"code": "invalid_parameter", "message": "recipient is invalid"},
            {},
            PermanentFailure("sms_http_400_invalid_parameter"),
        ),
    ],
    ids=["500", "503", "429", "400"],
)
async def test_the_providers_refusals_are_transient_or_permanent(
    servers: Servers, channel: BrevoSmsChannel, reply: Reply
) -> None:
    status, payload, headers, expected = reply
    servers.provider.replies.append((status, payload, headers))
    assert await channel.deliver(message()) == expected
    assert len(servers.provider.received) == 1


async def test_a_wrong_key_is_retried_not_fallen_back_from(servers: Servers) -> None:
    wrong = BrevoSmsChannel(
        api_url=servers.provider_url, api_key="wrong", sender="PIMMS", report_url="http://x"
    )
    try:
        assert await wrong.deliver(message()) == TransientFailure("sms_http_401")
    finally:
        await wrong.aclose()


async def test_a_provider_too_slow_is_a_timeout(servers: Servers) -> None:
    async def slow(request: Request) -> Response:
        await asyncio.sleep(1)
        return JSONResponse({"messageId": 1}, 201)

    server, task, url = await serve(
        Starlette(routes=[Route("/v3/transactionalSMS/send", slow, methods=["POST"])])
    )
    sms = BrevoSmsChannel(
        api_url=url, api_key=API_KEY, sender="PIMMS", report_url="http://x", timeout_s=0.2
    )
    try:
        assert await sms.deliver(message()) == TransientFailure("sms_timeout")
    finally:
        await sms.aclose()
        server.should_exit = True
        await task


async def test_a_provider_not_listening_is_unreachable() -> None:
    sock = bound_socket()  # bound, never listening: the connection is refused
    port = sock.getsockname()[1]
    sms = BrevoSmsChannel(
        api_url=f"http://127.0.0.1:{port}", api_key=API_KEY, sender="PIMMS", report_url="http://x"
    )
    try:
        assert await sms.deliver(message()) == TransientFailure("sms_unreachable")
    finally:
        await sms.aclose()
        sock.close()
