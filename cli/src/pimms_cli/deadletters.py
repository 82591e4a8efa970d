"""Dead letters as support staff see them: read from every `*.dlt` topic, shown, replayed.

A dead letter is named by where it sits: `<dlt topic>:<partition>:<offset>`, stable for as long
as the topic keeps it. A replay re-publishes it to its original topic with the same key, its
original headers (the `pimms_dlt_*` ones dropped) and a marker (`pimms_replay_of`,
`pimms_replayed_at`); every replay is recorded on `pimms.ops.replays.v1`, keyed by the dead
letter's id, so the list can say "replayed" and `pimms trace` can show it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pimms_contracts import topics
from pimms_contracts.topics import dead_letters

# Header names of specs/front-office.md ("Support tools read these names"), from the contracts.
DLT_PREFIX = "pimms_dlt_"
H_REASON = topics.DLT_REASON
H_ERROR = topics.DLT_ERROR
H_SERVICE = topics.DLT_SERVICE
H_ORIGINAL_TOPIC = topics.DLT_ORIGINAL_TOPIC
H_ORIGINAL_PARTITION = topics.DLT_ORIGINAL_PARTITION
H_ORIGINAL_OFFSET = topics.DLT_ORIGINAL_OFFSET
H_FAILED_AT = topics.DLT_FAILED_AT
# The replay marker: the services re-process a replayed message whose inbox outcome was
# `dead_lettered`, and deduplicate it otherwise.
H_REPLAY_OF = topics.REPLAY_OF
H_REPLAYED_AT = topics.REPLAYED_AT
REPLAY_PREFIX = "pimms_replay"

REPLAYS_TOPIC = topics.OPS_REPLAYS
DLT_SUFFIX = ".dlt"


class DltIdError(ValueError):
    """Text that is not a dead letter id."""


@dataclass(frozen=True, order=True)
class DltId:
    """Where a dead letter sits: `<dlt topic>:<partition>:<offset>`."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> DltId:
        """Read `pimms.intake.needs.v1.dlt:3:12`; raise DltIdError saying what is wrong."""
        parts = text.strip().rsplit(":", 2)
        if len(parts) != 3 or not all(parts):
            raise DltIdError(f"{text!r} is not a dead letter id (<topic>.dlt:<partition>:<offset>)")
        topic, partition, offset = parts
        if not topic.endswith(DLT_SUFFIX):
            raise DltIdError(f"{topic!r} is not a dead letter topic (it ends with {DLT_SUFFIX})")
        if not (partition.isdigit() and offset.isdigit()):
            raise DltIdError(f"{text!r}: partition and offset are whole numbers")
        return cls(topic, int(partition), int(offset))

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class DeadLetter:
    """One record of a `*.dlt` topic."""

    id: DltId
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    def header(self, name: str) -> str | None:
        """A header's text (the last one of that name)."""
        found = [v for k, v in self.headers if k == name]
        return found[-1].decode(errors="replace") if found else None

    @property
    def reason(self) -> str:
        """The stable reason code."""
        return self.header(H_REASON) or "?"

    @property
    def error(self) -> str:
        """The human message."""
        return self.header(H_ERROR) or ""

    @property
    def service(self) -> str:
        """The service that dead-lettered it."""
        return self.header(H_SERVICE) or "?"

    @property
    def original_topic(self) -> str:
        """Where it came from (the dead letter topic without `.dlt` when the header is lost)."""
        return self.header(H_ORIGINAL_TOPIC) or self.id.topic.removesuffix(DLT_SUFFIX)

    @property
    def original_position(self) -> str:
        """`p<partition>@<offset>` on the original topic."""
        partition = self.header(H_ORIGINAL_PARTITION) or "?"
        offset = self.header(H_ORIGINAL_OFFSET) or "?"
        return f"p{partition}@{offset}"

    @property
    def failed_at(self) -> datetime:
        """When it failed (the header, else the record's time)."""
        text = self.header(H_FAILED_AT)
        if text:
            try:
                parsed = datetime.fromisoformat(text)
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except ValueError:
                pass
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    @property
    def key_text(self) -> str | None:
        """The key as text (a submission id, a referral reference, a case id)."""
        return self.key.decode(errors="replace") if self.key is not None else None

    def replay_headers(self, *, at: datetime) -> list[tuple[str, bytes]]:
        """The original headers, without the dead letter's and any earlier replay's, marked."""
        kept = [(k, v) for k, v in self.headers if not k.startswith((DLT_PREFIX, REPLAY_PREFIX))]
        return [
            *kept,
            (H_REPLAY_OF, str(self.id).encode()),
            (H_REPLAYED_AT, at.isoformat(timespec="milliseconds").encode()),
        ]


def dlt_topic(topic: str) -> str:
    """`--topic` as given (original or dead letter topic) -> the dead letter topic."""
    return topic if topic.endswith(DLT_SUFFIX) else dead_letters(topic)


def matches(
    letter: DeadLetter,
    *,
    topic: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
) -> bool:
    """True when the dead letter passes the filters given."""
    if topic is not None and letter.id.topic != dlt_topic(topic):
        return False
    if reason is not None and letter.reason != reason:
        return False
    return since is None or letter.failed_at >= since


_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime) -> datetime:
    """`30m`, `2h`, `7d` (ago) or an ISO date or time (UTC when it has no offset)."""
    ago = _AGO.match(text.strip())
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2)]: int(ago.group(1))})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration (30m, 2h, 7d) or a date (2026-11-27T09:00)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Replay:
    """A replay as recorded on `pimms.ops.replays.v1`."""

    dlt_id: str
    original_topic: str
    reason: str
    service: str
    key: str | None
    case_id: str | None
    replayed_at: datetime

    def to_json(self) -> bytes:
        """The record's value."""
        return json.dumps(
            {
                "dlt_id": self.dlt_id,
                "original_topic": self.original_topic,
                "reason": self.reason,
                "service": self.service,
                "key": self.key,
                "case_id": self.case_id,
                "replayed_at": self.replayed_at.isoformat(timespec="milliseconds"),
            }
        ).encode()

    @classmethod
    def from_json(cls, value: bytes | None) -> Replay | None:
        """Read a record back (None when it is not one)."""
        try:
            data: Any = json.loads(value or b"")
            return cls(
                dlt_id=str(data["dlt_id"]),
                original_topic=str(data["original_topic"]),
                reason=str(data.get("reason", "?")),
                service=str(data.get("service", "?")),
                key=data.get("key"),
                case_id=data.get("case_id"),
                replayed_at=datetime.fromisoformat(data["replayed_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def replay_of(letter: DeadLetter, *, at: datetime, case_id: str | None = None) -> Replay:
    """The record of replaying `letter` now."""
    return Replay(
        dlt_id=str(letter.id),
        original_topic=letter.original_topic,
        reason=letter.reason,
        service=letter.service,
        key=letter.key_text,
        case_id=case_id,
        replayed_at=at,
    )


def last_replays(replays: Iterable[Replay]) -> dict[str, Replay]:
    """The latest replay of each dead letter id."""
    latest: dict[str, Replay] = {}
    for replay in replays:
        known = latest.get(replay.dlt_id)
        if known is None or replay.replayed_at >= known.replayed_at:
            latest[replay.dlt_id] = replay
    return latest


def select(
    letters: Sequence[DeadLetter],
    *,
    topic: str | None,
    reason: str | None,
    since: datetime | None = None,
) -> list[DeadLetter]:
    """The dead letters passing the filters, oldest first."""
    chosen = [x for x in letters if matches(x, topic=topic, reason=reason, since=since)]
    return sorted(chosen, key=lambda x: (x.failed_at, x.id))
