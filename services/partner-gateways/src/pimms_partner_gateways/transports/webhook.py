"""Signed webhooks, outbound: a partner's dispatcher POSTs each message to its URL with httpx.

One `WebhookDestination` per partner (`partner:<id>`), so one partner being down never slows the
others. Each POST is signed with the current secret at the platform time
(`webhook_signature.signed_headers`); its `X-PIMMS-Delivery` is derived from the message's
idempotency key, so it is the same on every retry and new for each reminder. 2xx is delivered;
5xx, 429, timeouts and connection errors are retried after `domain.backoff.retry_delay` (1 s,
doubling, ±20 %, at most 1 h apart), durably through the dispatcher's rows, for 24 h; any other
answer fails at once (`http_<code>`), and the delivery hook reports it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from datetime import timedelta

import httpx
from pimms_contracts.partners import PartnerDirectory, WebhookTransport
from pimms_servicekit.clock import Clock, SystemClock, is_steered
from pimms_servicekit.effects import (
    Delivered,
    DeliveryResult,
    Effect,
    Failed,
    RetryLater,
    RetryPolicy,
)
from pimms_servicekit.logging import get_logger

from pimms_partner_gateways.adapters.webhook_signature import delivery_id, signed_headers
from pimms_partner_gateways.domain.backoff import (
    FIRST_RETRY,
    GIVE_UP_AFTER,
    JITTER,
    MAX_GAP,
    classify,
    next_try_at,
)
from pimms_partner_gateways.transports.base import parse_idempotency_key
from pimms_partner_gateways.transports.dispatched import partner_destination

log = get_logger("pimms.partner_gateways.webhook")

SECRET_MISSING_RETRY = timedelta(minutes=1)


def webhook_policy(*, timeout: float) -> RetryPolicy:
    """The specification's schedule; attempts are bounded by the 24 hours, not by a count."""
    return RetryPolicy(
        first_delay=FIRST_RETRY,
        max_delay=MAX_GAP,
        max_attempts=1_000_000,
        give_up_after=GIVE_UP_AFTER,
        concurrency=8,
        attempt_timeout=timeout + 5.0,
        jitter=JITTER,
    )


class WebhookDestination:
    """POSTs one partner's messages to its URL, signed."""

    def __init__(
        self,
        *,
        partner_id: str,
        directory: Callable[[], PartnerDirectory],
        clock: Clock,
        environ: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.partner_id = partner_id
        self.name = partner_destination(partner_id)
        self.policy = webhook_policy(timeout=timeout)
        self._directory = directory
        # Signatures and their time window are about real-world time: a steered platform clock
        # (pimms dev --time-scale) does not apply to them. An injected test clock does.
        self._clock = SystemClock() if is_steered(clock) else clock
        self._environ = os.environ if environ is None else environ
        self._timeout = timeout
        self._transport = transport
        self._rng = rng
        self._client: httpx.AsyncClient | None = None

    def _webhook(self) -> WebhookTransport | None:
        partner = self._directory().get(self.partner_id)
        transport = partner.transport if partner is not None else None
        return transport if isinstance(transport, WebhookTransport) else None

    @property
    def client(self) -> httpx.AsyncClient:
        """One connection pool per partner, opened at the first delivery."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport, follow_redirects=False
            )
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def deliver(self, effect: Effect) -> DeliveryResult:
        """POST the payload, signed; say whether it is delivered, to retry, or failed."""
        webhook = self._webhook()
        if webhook is None:
            return Failed(reason="no_webhook")
        secret = self._environ.get(webhook.secret_env)
        if not secret:
            log.warning(
                "webhook.secret_missing", partner_id=self.partner_id, variable=webhook.secret_env
            )
            return RetryLater(reason="secret_missing", after=SECRET_MISSING_RETRY)
        reference, kind, number = parse_idempotency_key(effect.idempotency_key)
        headers = signed_headers(
            secret=secret.encode(),
            body=effect.payload,
            at=self._clock.now(),
            delivery_id=delivery_id(
                partner_id=self.partner_id, referral_id=reference, kind=kind, number=number
            ),
        )
        status: int | None
        try:
            response = await self.client.post(webhook.url, content=effect.payload, headers=headers)
            status, why = response.status_code, f"http_{response.status_code}"
        except httpx.TimeoutException:
            status, why = None, "timeout"
        except httpx.TransportError as exc:
            status, why = None, f"connection_error:{type(exc).__name__}"[:40]
        verdict = classify(status)
        if verdict == "delivered":
            return Delivered(receipt=why)
        if verdict == "failed":
            return Failed(reason=why)
        now = self._clock.now()
        retry_at = next_try_at(
            first_tried_at=effect.created_at,
            failed_at=now,
            attempt=effect.attempts + 1,
            random=self._rng,
        )
        if retry_at is None:  # the next try would be more than 24 h after the first
            return Failed(reason=f"gave_up:{why}"[:40])
        return RetryLater(reason=why, after=retry_at - now)
