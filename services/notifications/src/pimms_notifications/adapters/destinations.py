"""The notification channels as effect destinations, delivered after the commit.

The effect payload is the rendered message itself (address, subject, text), so a delivery reads
no database. A channel whose `send` blocks (the file channels write and fsync) runs on a thread
pool of its own destination: a channel that hangs holds its own threads, never the event loop nor
the other channels' threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from pimms_contracts.v1.notifications import NotificationChannel
from pimms_servicekit.effects import (
    Delivered,
    DeliveryResult,
    Effect,
    Failed,
    RetryLater,
    RetryPolicy,
)

from pimms_notifications import channels
from pimms_notifications.channels import Channel, DeliveryChannel, OutgoingMessage

CHANNEL_POLICY = RetryPolicy(
    first_delay=timedelta(seconds=5),
    max_delay=timedelta(hours=1),
    max_attempts=12,
    concurrency=8,
    attempt_timeout=30.0,
)
"""A message is tried for about half a day (12 attempts, backoff capped at one hour)."""

FILE_POLICY = dataclasses.replace(CHANNEL_POLICY, concurrency=64)
"""Message files: a round of up to 256 (four times the concurrency) is written by one thread hop
and made durable by one sync of the file system (`BatchDeliveryDestination`)."""

# Errors that retrying cannot fix: the channel is misconfigured for this message.
_PERMANENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.EINVAL,
    }
)


def encode_message(message: OutgoingMessage) -> bytes:
    """The effect payload of a message (it holds an address and a text: never log it)."""
    return json.dumps(
        {
            "notification_id": str(message.notification_id),
            "to": message.to,
            "site_id": message.site_id,
            "subject": message.subject,
            "body": message.body,
            "sent_at": message.sent_at.isoformat(),
            "language": message.language,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


def decode_message(payload: bytes) -> OutgoingMessage:
    """The message an effect payload holds; ValueError when it is not one."""
    try:
        data = json.loads(payload)
        return OutgoingMessage(
            notification_id=UUID(data["notification_id"]),
            to=str(data["to"]),
            site_id=str(data["site_id"]),
            subject=data["subject"],
            body=str(data["body"]),
            sent_at=datetime.fromisoformat(data["sent_at"]),
            language=str(data["language"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a notification payload ({type(exc).__name__})") from None


def outcome_of(error: OSError) -> RetryLater | Failed:
    """A channel's OSError as a delivery result: permanent for a misconfiguration, else retry."""
    code = errno.errorcode.get(error.errno or 0, "") if error.errno else ""
    reason = f"{type(error).__name__}:{code}" if code else type(error).__name__
    if error.errno in _PERMANENT_ERRNOS:
        return Failed(reason=reason)
    return RetryLater(reason=reason)


def effect_result(result: channels.DeliveryResult) -> DeliveryResult:
    """A channel's answer as the dispatcher's: delivered with the receipt, retry, or failed."""
    match result:
        case channels.Delivered():
            return Delivered(receipt=result.provider_message_id)
        case channels.TransientFailure():
            return RetryLater(reason=result.reason, after=result.retry_after)
        case channels.PermanentFailure():
            return Failed(reason=result.reason)


class DeliveryDestination:
    """A delivery channel (the SMS provider, SMTP, files) as an effect destination."""

    def __init__(
        self,
        *,
        name: NotificationChannel,
        channel: DeliveryChannel,
        policy: RetryPolicy = CHANNEL_POLICY,
    ) -> None:
        self.name: NotificationChannel = name
        self.policy = policy
        self.channel = channel

    def __repr__(self) -> str:
        return f"DeliveryDestination(name={self.name!r}, channel={self.channel!r})"

    async def deliver(self, effect: Effect) -> DeliveryResult:
        """Deliver the message the effect holds; the same notification id never adds one."""
        try:
            message = decode_message(effect.payload)
        except ValueError as exc:
            return Failed(reason=str(exc))
        return effect_result(await self.channel.deliver(message))

    async def aclose(self) -> None:
        """Close the channel's connections (the SMS provider's HTTP client), if it has any."""
        close = getattr(self.channel, "aclose", None)
        if close is not None:
            await close()


class BatchChannel(DeliveryChannel, Protocol):
    """A channel that delivers a round at once (the message files)."""

    async def deliver_many(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[channels.DeliveryResult]:
        """One result per message, in order."""
        ...

    def close(self) -> None:
        """Let its thread go."""
        ...


class BatchDeliveryDestination(DeliveryDestination):
    """A batch channel as an effect destination: the dispatcher hands it a whole round."""

    def __init__(
        self, *, name: NotificationChannel, channel: BatchChannel, policy: RetryPolicy = FILE_POLICY
    ) -> None:
        super().__init__(name=name, channel=channel, policy=policy)
        self.batch_channel = channel

    async def deliver_batch(self, batch: Sequence[Effect]) -> list[DeliveryResult]:
        """Deliver the round's messages together; a payload that is not a message fails alone."""
        results: list[DeliveryResult | None] = []
        messages: list[OutgoingMessage] = []
        for effect in batch:
            try:
                messages.append(decode_message(effect.payload))
                results.append(None)
            except ValueError as exc:
                results.append(Failed(reason=str(exc)))
        delivered = iter(await self.batch_channel.deliver_many(messages) if messages else ())
        return [
            result if result is not None else effect_result(next(delivered)) for result in results
        ]

    async def aclose(self) -> None:
        """Let the channel's thread go."""
        self.batch_channel.close()


class ChannelDestination:
    """One notification channel (`sms`, `email`, `mediator_inbox`) as an effect destination."""

    def __init__(
        self,
        *,
        name: NotificationChannel,
        channel: Channel,
        blocking: bool,
        policy: RetryPolicy = CHANNEL_POLICY,
    ) -> None:
        self.name: NotificationChannel = name
        self.policy = policy
        self.channel = channel
        self._threads = (
            ThreadPoolExecutor(max_workers=policy.concurrency, thread_name_prefix=f"notify-{name}")
            if blocking
            else None
        )

    async def deliver(self, effect: Effect) -> DeliveryResult:
        """Send the message the effect holds; the same notification id again never adds one."""
        try:
            message = decode_message(effect.payload)
        except ValueError as exc:
            return Failed(reason=str(exc))
        try:
            if self._threads is None:
                await self.channel.send(message)
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._threads, _run_here, self.channel.send, message)
        except OSError as exc:
            return outcome_of(exc)
        return Delivered()

    def close(self) -> None:
        """Let the threads go once their current message is done."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)


_thread_state = threading.local()


def _run_here(
    send: Callable[[OutgoingMessage], Coroutine[Any, Any, None]], message: OutgoingMessage
) -> None:
    """Run a blocking channel's `send` to its end on this worker thread's own event loop."""
    loop: asyncio.AbstractEventLoop | None = getattr(_thread_state, "loop", None)
    if loop is None:
        loop = asyncio.new_event_loop()
        _thread_state.loop = loop
    loop.run_until_complete(send(message))
