"""Signed webhooks, inbound: `POST /partners/<partner id>/responses` on the gateway's HTTP server.

In this order: a partner not on a webhook -> 404; a body over the limit -> 413; a missing or bad
signature, or a timestamp more than 5 minutes off the platform clock -> 401, nothing recorded
(checked in constant time against the current and the previous secret); a body the partner's
format cannot read -> 400 with the errors; a reference never sent to this partner -> 404;
otherwise 202. Applying the answer is the caller's (`apply`): the same body twice has one effect.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from pimms_contracts import topics
from pimms_contracts.partners import WebhookTransport
from pimms_servicekit.clock import Clock, SystemClock, is_steered
from pimms_servicekit.dead_letters import Original
from pimms_servicekit.logging import get_logger
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pimms_partner_gateways.adapters.base import BadPartnerMessage
from pimms_partner_gateways.adapters.registry import PartnerNetwork
from pimms_partner_gateways.adapters.webhook_signature import (
    DELIVERY_HEADER,
    secrets_from_env,
    verify,
)
from pimms_partner_gateways.domain.model import ReadAnswer

log = get_logger("pimms.partner_gateways.webhook")

RESPONSES_PATH = "/partners/{partner_id}/responses"
DEFAULT_BODY_LIMIT = 64 * 1024

Applied = Literal["applied", "duplicate", "unknown_reference"]
Apply = Callable[[str, ReadAnswer, bytes, Original], Awaitable[Applied]]


def responses_path(partner_id: str) -> str:
    """Where a webhook partner POSTs its answers."""
    return RESPONSES_PATH.replace("{partner_id}", partner_id)


class BodyTooLarge(Exception):
    """The request body is over the limit."""


class WebhookResponses:
    """The Starlette endpoint of webhook partners' answers."""

    def __init__(
        self,
        *,
        partners: Callable[[], PartnerNetwork],
        apply: Apply,
        clock: Clock,
        environ: Mapping[str, str] | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ) -> None:
        self._partners = partners
        self._apply = apply
        # Signatures and their time window are about real-world time: a steered platform clock
        # (pimms dev --time-scale) does not apply to them. An injected test clock does.
        self._clock = SystemClock() if is_steered(clock) else clock
        self._environ = os.environ if environ is None else environ
        self.body_limit = body_limit

    async def endpoint(self, request: Request) -> Response:
        """Verify, read and apply one answer."""
        partner_id = str(request.path_params.get("partner_id", ""))
        network = self._partners()
        partner = network.directory.get(partner_id)
        adapter = network.adapter(partner_id)
        on_webhook = partner is not None and isinstance(partner.transport, WebhookTransport)
        if partner is None or not on_webhook or adapter is None:
            return _error(404, "unknown_partner", "no webhook partner has this path")
        try:
            body = await self._body(request)
        except BodyTooLarge:
            log.warning("webhook.body_too_large", partner_id=partner_id, limit=self.body_limit)
            return _error(413, "body_too_large", f"the body is over {self.body_limit} bytes")
        assert isinstance(partner.transport, WebhookTransport)
        secrets = secrets_from_env(self._environ, secret_env=partner.transport.secret_env)
        verification = verify(
            headers=dict(request.headers), body=body, secrets=secrets, now=self._clock.now()
        )
        if not verification.ok:
            log.warning(
                "webhook.refused",
                partner_id=partner_id,
                why=verification.refusal if secrets else "no_secret_configured",
            )
            return _error(401, "unauthorized", "bad or missing signature, or stale timestamp")
        if verification.secret_index == 1:
            log.info("webhook.previous_secret_used", partner_id=partner_id)
        try:
            read = adapter.read_response(body)
        except BadPartnerMessage as bad:
            log.warning("webhook.bad_answer", partner_id=partner_id, reason=bad.reason)
            return JSONResponse(
                {"errors": [{"reason": bad.reason, "error": bad.error}]}, status_code=400
            )
        original = Original(
            topic=topics.partner_responses(partner_id),
            partition=0,
            offset=0,
            key=read.answer.reference.encode(),
            value=body,
            headers=((DELIVERY_HEADER.lower(), request.headers.get(DELIVERY_HEADER, "").encode()),),
        )
        applied = await self._apply(partner_id, read, body, original)
        if applied == "unknown_reference":
            return _error(404, "unknown_referral", f"no such referral was sent to {partner_id}")
        return JSONResponse({"status": "accepted", "duplicate": applied == "duplicate"}, 202)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.body_limit:
            raise BodyTooLarge
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.body_limit:
                raise BodyTooLarge
        return bytes(body)


def _error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": code, "message": message}, status_code=status)
