"""End to end, the closed loop on a steered clock: the four services as `pimms dev` runs them.

Platform time runs 43,200 times faster (`pimms dev --time-scale 43200`: twelve hours a second),
so EDF's ladder (reminder at 48 h, escalation at 96 h, expiry at 15 days after transmission)
takes about half a minute of real time. The broker is real; nothing is mocked.

- A silent EDF gets its `relance` on its own feed, in its own format; the mediator's inbox
  (`pimms inbox`) shows the reminder and the escalation; the referral expires, the case closes and
  the visitor and the mediator are told. The referrals process is killed (SIGKILL) and started
  again between the reminder and the escalation: each step still happens, once.
- An incomplete naturalisation file (prefecture-69) is held: nothing on the prefecture's feed, the
  visitor and the mediator told which documents are missing; `need.documents_added` that completes
  it releases it to the prefecture, complete.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pimms_cli.config import SERVICES
from pimms_cli.devtime import time_environment
from pimms_cli.inbox import run_inbox
from pimms_cli.platform import Platform
from pimms_contracts import topics
from pimms_contracts.envelope import Envelope
from pimms_contracts.examples import need_submitted
from pimms_servicekit.testing import (
    KafkaEndpoint,
    Record,
    TopicWatcher,
    fresh_postgres_database,
    produce,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TIME_SCALE = 43_200  # 12 h of platform time per real second
# The scheduler looks for due timers every half real second (6 h of platform time): the steps of
# the ladder, two days apart for EDF, fire in separate passes.
TIMER_INTERVAL_S = "0.5"
LADDER_TIMEOUT_S = 120.0  # real seconds; EDF's 15 days are 30 s at this scale, on a busy machine
CHECKLIST = ["id_card", "birth_certificate", "proof_of_address", "tax_notices", "language_diploma"]


@dataclass
class Running:
    platform: Platform
    kafka: KafkaEndpoint
    data_dir: Path
    watcher: TopicWatcher
    suffix: str

    def site(self, base: str) -> str:
        return base + self.suffix


def desk_headers(ce_type: str, site: str) -> list[tuple[str, bytes]]:
    return Envelope(
        id=str(uuid.uuid4()),
        source=f"urn:pimms:site:{site}:frontdesk",
        type=ce_type,
        time=datetime.now(UTC),
    ).to_headers()


async def send(running: Running, ce_type: str, body: dict[str, Any], *, site: str) -> None:
    await produce(
        running.kafka.bootstrap_servers,
        [
            (
                topics.INTAKE_NEEDS,
                str(body["submission_id"]).encode(),
                json.dumps(body, ensure_ascii=False).encode(),
                desk_headers(ce_type, site),
            )
        ],
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def running(
    request: pytest.FixtureRequest, kafka: KafkaEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    data_dir = tmp_path_factory.mktemp(f"closed-loop-{request.param}")
    # What `pimms dev --time-scale 43200` gives every service: one clock, anchored once.
    clock = time_environment(scale=TIME_SCALE, start=None, environ={}, now=time.time())
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if request.param == "postgresql":
            for spec in SERVICES:
                urls[spec.name] = await stack.enter_async_context(fresh_postgres_database())
        platform = Platform(
            data_dir=data_dir,
            bootstrap=kafka.bootstrap_servers,
            echo=False,
            database_urls=urls,
            extra_env={**clock, "PIMMS_REFERRALS_TIMER_INTERVAL_S": TIMER_INTERVAL_S},
        )
        # Both runs share one broker: distinct sites give distinct case references.
        suffix = "" if request.param == "sqlite" else "-2"
        async with running_platform(platform, kafka) as (ready, watcher):
            yield Running(ready, kafka, data_dir, watcher, suffix)


@asynccontextmanager
async def running_platform(
    platform: Platform, kafka: KafkaEndpoint
) -> AsyncIterator[tuple[Platform, TopicWatcher]]:
    await platform.start()
    try:
        await platform.wait_ready(timeout=180)
        watcher = await TopicWatcher(
            kafka.bootstrap_servers,
            [
                topics.INTAKE_FEEDBACK,
                topics.CASES,
                topics.NOTIFICATIONS,
                topics.partner_referrals("edf"),
                topics.partner_referrals("prefecture-69"),
            ],
        ).start()
        try:
            yield platform, watcher
        finally:
            await watcher.stop()
    finally:
        await platform.stop()


async def accepted(running: Running, submission_id: str) -> dict[str, Any]:
    def mine() -> list[Record]:
        return [
            r
            for r in running.watcher.of(topics.INTAKE_FEEDBACK, "fr.pimms.need.accepted.v1")
            if r.json["submission_id"] == submission_id
        ]

    await running.watcher.wait_for(lambda _: bool(mine()), timeout=60, what="need.accepted")
    return mine()[0].json


def case_events(running: Running, case_id: str, ce_type: str) -> list[dict[str, Any]]:
    records = running.watcher.of(topics.CASES, ce_type)
    return [r.json for r in records if r.json["case_id"] == case_id]


async def case_event(
    running: Running, case_id: str, ce_type: str, *, timeout: float = 60.0
) -> dict[str, Any]:
    await running.watcher.wait_for(
        lambda _: bool(case_events(running, case_id, ce_type)),
        timeout=timeout,
        what=f"{ce_type} for case {case_id}",
    )
    return case_events(running, case_id, ce_type)[0]


def notifications(running: Running, case_id: str, audience: str) -> list[dict[str, Any]]:
    return [
        r.json
        for r in running.watcher.of(topics.NOTIFICATIONS, "fr.pimms.notification.sent.v1")
        if r.json["case_id"] == case_id and r.json["audience"] == audience
    ]


async def told(
    running: Running, case_id: str, audience: str, template: str, *, timeout: float = 60.0
) -> dict[str, Any]:
    """The notification of `template` to `audience`, or the combined one saying it with more."""

    def matching() -> list[dict[str, Any]]:
        return [
            n
            for n in notifications(running, case_id, audience)
            if n["template"] in {template, "combined"}
        ]

    await running.watcher.wait_for(
        lambda _: bool(matching()), timeout=timeout, what=f"{audience} told {template}"
    )
    return matching()[0]


def inbox(running: Running, site: str) -> list[dict[str, Any]]:
    """`pimms inbox <site> --json`, as a mediator runs it."""
    out = io.StringIO()
    run_inbox(site, as_json_lines=True, base=running.data_dir, out=out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def inbox_shows(running: Running, site: str, reference: str, words: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        subjects = [e["subject"] for e in inbox(running, site) if e["case_reference"] == reference]
        if any(words in subject for subject in subjects):
            return
        await asyncio.sleep(0.3)  # the notifications service writes its files as it goes
    raise AssertionError(f"the inbox of {site} never showed {words!r} for {reference}: {subjects}")


async def test_a_silent_edf_is_reminded_escalated_and_its_case_expires(running: Running) -> None:
    site = running.site("lyon-3")
    need = need_submitted(site_id=site, visitor__contact_consent={"sms": True, "email": False})
    await send(running, "fr.pimms.need.submitted.v1", need, site=site)
    answer = await accepted(running, need["submission_id"])
    case_id, reference = answer["case_id"], answer["case_reference"]

    def on_edf_feed() -> list[Record]:
        return [
            r
            for r in running.watcher.of(topics.partner_referrals("edf"))
            if r.json.get("dossierPimms") == reference
        ]

    await running.watcher.wait_for(
        lambda _: len(on_edf_feed()) >= 2, timeout=LADDER_TIMEOUT_S, what="EDF's relance"
    )
    referral, reminder = on_edf_feed()[:2]
    assert "relance" not in referral.json
    # The referral message again with "relance": 1 added, keyed by the reference, without headers.
    assert reminder.json == {**referral.json, "relance": 1}
    assert list(reminder.json) == [*referral.json, "relance"]
    assert reminder.key == referral.key == referral.json["reference"]
    assert reminder.headers == {}

    reminded = await case_event(running, case_id, "fr.pimms.referral.reminded.v1")
    assert (reminded["partner_id"], reminded["reminder"]) == ("edf", 1)
    # A crash between the steps loses no timer and fires none twice: the ladder's rows are
    # durable, and the new process reads the same platform clock (the same PIMMS_TIME_*).
    await running.platform.kill("referrals")
    await running.platform.restart("referrals")
    escalated = await case_event(
        running, case_id, "fr.pimms.referral.escalated.v1", timeout=LADDER_TIMEOUT_S
    )
    assert escalated["partner_id"] == "edf"
    await told(running, case_id, "mediator", "partner_reminded")
    await told(running, case_id, "mediator", "referral_escalated")
    await inbox_shows(running, site, reference, "Relance 1 envoyée à")
    await inbox_shows(running, site, reference, "ne répond pas")

    expired = await case_event(
        running, case_id, "fr.pimms.referral.expired.v1", timeout=LADDER_TIMEOUT_S
    )
    assert expired["partner_id"] == "edf"
    closed = await case_event(running, case_id, "fr.pimms.case.closed.v1")
    assert closed["outcome"] == "not_resolved"
    # Expiry is 15 days of platform time after the ladder started, the reminder 48 h after.
    transmitted = await case_event(running, case_id, "fr.pimms.referral.transmitted.v1")
    start = datetime.fromisoformat(transmitted["occurred_at"])
    assert (datetime.fromisoformat(reminded["due_at"]) - start).total_seconds() == 48 * 3600
    assert (datetime.fromisoformat(expired["occurred_at"]) - start).days >= 15
    for audience in ("visitor", "mediator"):
        await told(running, case_id, audience, "referral_expired")
        await told(running, case_id, audience, "case_closed")
    await inbox_shows(running, site, reference, "Pas de réponse de")
    # Reminders stop at one: the partner is never sent a second `relance`.
    assert [r.json.get("relance") for r in on_edf_feed()] == [None, 1]
    assert len(case_events(running, case_id, "fr.pimms.referral.reminded.v1")) == 1
    assert len(case_events(running, case_id, "fr.pimms.referral.escalated.v1")) == 1
    assert len(case_events(running, case_id, "fr.pimms.referral.expired.v1")) == 1


async def test_an_incomplete_naturalisation_file_is_held_then_released_by_documents(
    running: Running,
) -> None:
    site = running.site("lyon-8")
    brought = ["id_card", "birth_certificate", "proof_of_address"]
    need = need_submitted(
        site_id=site,
        visitor__contact_consent={"sms": True, "email": False},
        need__category="naturalisation",
        need__urgency="normal",
        need__summary="Demande de naturalisation",
        need__documents=brought,
    )
    await send(running, "fr.pimms.need.submitted.v1", need, site=site)
    answer = await accepted(running, need["submission_id"])
    case_id, reference = answer["case_id"], answer["case_reference"]

    held = await case_event(running, case_id, "fr.pimms.referral.on_hold.v1")
    assert held["partner_id"] == "prefecture-69"
    assert held["reason"] == "missing_documents"
    assert held["missing_documents"] == ["tax_notices", "language_diploma"]
    assert not case_events(running, case_id, "fr.pimms.referral.requested.v1")
    visitor = await told(running, case_id, "visitor", "referral_on_hold_documents")
    assert visitor["channel"] == "sms"
    await told(running, case_id, "mediator", "referral_on_hold_documents")
    sms = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (running.data_dir / "notifications" / "sms").glob("*.txt")
        if reference in p.read_text(encoding="utf-8")
    )
    assert "avis d'imposition" in sms
    assert "diplôme de langue française" in sms
    [held_entry] = [
        e
        for e in inbox(running, site)
        if e["case_reference"] == reference and "Pièces manquantes" in e["subject"]
    ]
    assert "avis d'imposition" in held_entry["body"]
    assert "diplôme de langue française" in held_entry["body"]

    def on_prefecture_feed() -> list[Record]:
        return [
            r
            for r in running.watcher.of(topics.partner_referrals("prefecture-69"))
            if r.json.get("dossierPimms") == reference
        ]

    # Everything about the hold has been said (and the gateway serves EDF meanwhile): the
    # prefecture has received nothing.
    assert on_prefecture_feed() == []

    added = {
        "submission_id": need["submission_id"],
        "documents": ["tax_notices", "language_diploma"],
        "added_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    await send(running, "fr.pimms.need.documents_added.v1", added, site=site)
    await running.watcher.wait_for(
        lambda _: any(
            r.json["submission_id"] == need["submission_id"]
            and r.json["acknowledged"] == "documents_added"
            for r in running.watcher.of(topics.INTAKE_FEEDBACK, "fr.pimms.need.acknowledged.v1")
        ),
        what="need.acknowledged documents_added",
    )
    requested = await case_event(running, case_id, "fr.pimms.referral.requested.v1")
    assert requested["partner_id"] == "prefecture-69"
    await running.watcher.wait_for(
        lambda _: bool(on_prefecture_feed()), timeout=60, what="the file on the prefecture's feed"
    )
    [file] = on_prefecture_feed()[:1]
    assert file.key == file.json["numeroDemande"] == requested["referral_id"]
    assert file.json["complet"] is True
    assert sorted(file.json["piecesFournies"]) == sorted(CHECKLIST)
    assert file.json["pointAccueil"] == site
    await case_event(running, case_id, "fr.pimms.referral.transmitted.v1")
