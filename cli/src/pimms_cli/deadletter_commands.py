"""`pimms dead-letters list | show | replay`: read, show (masked) and replay dead letters."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pimms_servicekit.clock import paris_time
from pimms_servicekit.kafka import broker_reachable
from pimms_servicekit.logging import scrub_text
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from pimms_cli.config import DEFAULT_BOOTSTRAP, configured_bootstrap
from pimms_cli.deadletter_io import fetch, publish_replays, read_dead_letters, read_replays
from pimms_cli.deadletters import (
    DeadLetter,
    DltId,
    DltIdError,
    Replay,
    dlt_topic,
    last_replays,
    parse_since,
    select,
)
from pimms_cli.masking import mask_payload
from pimms_cli.terminal import console, table
from pimms_cli.trace import CaseRef, case_refs


def _stamp(value: datetime) -> str:
    return paris_time(value).strftime("%m-%d %H:%M:%S")


def letters_table(
    letters: Sequence[DeadLetter],
    *,
    replays: Mapping[str, Replay],
    refs: Mapping[str, CaseRef],
) -> Table:
    """One row per dead letter, in two lines: where it is and came from, why, whose, replayed."""
    grid = table("Dead letter  (original position, failed at)", "Reason", "Case", "Replayed")
    grid.columns[0].overflow = "fold"
    grid.columns[1].overflow = "fold"
    grid.columns[2].overflow = "fold"
    grid.columns[3].no_wrap = True
    for letter in letters:
        where = Text(str(letter.id))
        where.append(f"\n{letter.original_position}, {_stamp(letter.failed_at)}", style="dim")
        reason = Text(letter.reason, style="yellow")
        reason.append("\n" + letter.service, style="dim")
        ref = refs.get(letter.key_text or "")
        replay = replays.get(str(letter.id))
        grid.add_row(
            where,
            reason,
            (ref.reference or ref.case_id) if ref else "-",
            Text(_stamp(replay.replayed_at).replace(" ", "\n"), style="green") if replay else "-",
        )
    return grid


def letter_as_json(
    letter: DeadLetter, *, replay: Replay | None, ref: CaseRef | None
) -> dict[str, object]:
    """What `list --json` prints for one dead letter (no payload)."""
    return {
        "id": str(letter.id),
        "failed_at": letter.failed_at.isoformat(),
        "topic": letter.original_topic,
        "reason": letter.reason,
        "service": letter.service,
        "original_position": letter.original_position,
        "key": scrub_text(letter.key_text) if letter.key_text else None,
        "case_id": ref.case_id if ref else None,
        "case_reference": ref.reference if ref else None,
        "replayed_at": replay.replayed_at.isoformat() if replay else None,
    }


def letter_view(letter: DeadLetter, *, replay: Replay | None, ref: CaseRef | None) -> Group:
    """Everything about one dead letter, its payload masked."""
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    facts.add_row("reason", Text(letter.reason, style="yellow"))
    facts.add_row("error", scrub_text(letter.error) or "-")
    facts.add_row("service", letter.service)
    facts.add_row("failed at", f"{paris_time(letter.failed_at).isoformat(timespec='seconds')}")
    facts.add_row("original", f"{letter.original_topic} {letter.original_position}")
    facts.add_row("key", scrub_text(letter.key_text) if letter.key_text else "(none)")
    if ref:
        facts.add_row("case", f"{ref.reference or '-'} (case id {ref.case_id})")
    facts.add_row(
        "replayed",
        Text(replay.replayed_at.isoformat(timespec="seconds"), style="green") if replay else "no",
    )
    headers = Table.grid(padding=(0, 2))
    headers.add_column(style="dim", no_wrap=True)
    headers.add_column(overflow="fold")
    for name, value in letter.headers:
        headers.add_row(name, scrub_text(value.decode(errors="replace")))
    payload = mask_payload(letter.value)
    parts: list[RenderableType] = [
        Text(f"Dead letter {letter.id}", style="bold"),
        facts,
        Text("\nHeaders", style="bold"),
        headers,
        Text(f"\nPayload ({payload.kind}, personal data masked)", style="bold"),
        Text(payload.text or "(empty)", overflow="fold"),
    ]
    return Group(*parts)


def _bootstrap() -> str:
    return configured_bootstrap() or DEFAULT_BOOTSTRAP


async def _broker_or_say(bootstrap: str) -> bool:
    if await broker_reachable(bootstrap):
        return True
    print(
        f"pimms dead-letters: no Kafka broker answers at {bootstrap} (set KAFKA_BOOTSTRAP_SERVERS)",
        file=sys.stderr,
    )
    return False


async def run_list(
    *,
    topic: str | None = None,
    reason: str | None = None,
    since: str | None = None,
    as_json: bool = False,
) -> int:
    """Print the dead letters passing the filters; exit 2 when the broker cannot be read."""
    bootstrap = _bootstrap()
    try:
        after = parse_since(since, now=datetime.now(UTC)) if since else None
    except ValueError as exc:
        print(f"pimms dead-letters: {exc}", file=sys.stderr)
        return 2
    if not await _broker_or_say(bootstrap):
        return 2
    letters = await read_dead_letters(bootstrap, only=dlt_topic(topic) if topic else None)
    chosen = select(letters, topic=topic, reason=reason, since=after)
    latest = last_replays(await read_replays(bootstrap))
    refs = await case_refs(x.key_text for x in chosen if x.key_text)
    if as_json:
        for letter in chosen:
            row = letter_as_json(
                letter, replay=latest.get(str(letter.id)), ref=refs.get(letter.key_text or "")
            )
            print(json.dumps(row, ensure_ascii=False))
        return 0
    out = console()
    if not chosen:
        out.print("No dead letters" + (" matching the filters." if letters else "."))
        return 0
    out.print(letters_table(chosen, replays=latest, refs=refs))
    waiting = sum(1 for x in chosen if str(x.id) not in latest)
    out.print(
        f"{len(chosen)} dead letter(s), {waiting} never replayed. "
        "`pimms dead-letters show <id>` for one."
    )
    return 0


def _parse_ids(texts: Sequence[str]) -> list[DltId] | None:
    try:
        return [DltId.parse(t) for t in texts]
    except DltIdError as exc:
        print(f"pimms dead-letters: {exc}", file=sys.stderr)
        return None


async def run_show(text: str) -> int:
    """Print one dead letter, masked; exit 1 when there is none at that id."""
    ids = _parse_ids([text])
    if ids is None:
        return 2
    bootstrap = _bootstrap()
    if not await _broker_or_say(bootstrap):
        return 2
    found = (await fetch(bootstrap, ids)).get(ids[0])
    if found is None:
        print(f"No dead letter at {ids[0]}.")
        return 1
    replays = await read_replays(bootstrap)
    refs = await case_refs([found.key_text] if found.key_text else [])
    console().print(
        letter_view(
            found,
            replay=last_replays(replays).get(str(found.id)),
            ref=refs.get(found.key_text or ""),
        )
    )
    return 0


async def run_replay(
    texts: Sequence[str],
    *,
    topic: str | None = None,
    reason: str | None = None,
    again: bool = False,
) -> int:
    """Replay the dead letters named, or those passing the filters (not replayed yet)."""
    if not texts and topic is None and reason is None:
        print("pimms dead-letters replay: give ids, or --topic and/or --reason", file=sys.stderr)
        return 2
    ids = _parse_ids(texts)
    if ids is None:
        return 2
    bootstrap = _bootstrap()
    if not await _broker_or_say(bootstrap):
        return 2
    if ids:
        found = await fetch(bootstrap, ids)
        missing = [str(i) for i in ids if i not in found]
        if missing:
            print(f"No dead letter at {', '.join(missing)}; nothing replayed.", file=sys.stderr)
            return 1
        chosen = [found[i] for i in ids]
    else:
        letters = await read_dead_letters(bootstrap, only=dlt_topic(topic) if topic else None)
        done = last_replays(await read_replays(bootstrap))
        chosen = [
            x for x in select(letters, topic=topic, reason=reason) if again or str(x.id) not in done
        ]
    if not chosen:
        print("Nothing to replay (already replayed ones need --again).")
        return 0
    refs = await case_refs(x.key_text for x in chosen if x.key_text)
    replayed = await publish_replays(
        bootstrap,
        chosen,
        at=datetime.now(UTC),
        case_ids={k: r.case_id for k, r in refs.items()},
    )
    out = console()
    for replay in replayed:
        out.print(f"replayed {replay.dlt_id} -> {replay.original_topic}")
    out.print(f"{len(replayed)} dead letter(s) replayed; each replay is on pimms.ops.replays.v1.")
    return 0
