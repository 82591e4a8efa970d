"""Fault tolerance on real processes: services killed with SIGKILL mid-flow resume where they were.

Delivery is at least once, effects are exactly once: after referrals and partner-gateways are
killed in the middle of a burst and started again, every need has one case, one referral, and EDF
never receives two different referrals for one need (it may receive the same one twice).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from pimms_cli.platform import Platform
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, produce
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NEEDS = 1500


def headers() -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:pimms:site:fault:frontdesk"),
        ("ce_type", b"fr.pimms.need.submitted.v1"),
        ("ce_time", b"2026-11-27T09:30:00+01:00"),
        ("content-type", b"application/json"),
    ]


async def test_services_killed_mid_flow_resume_without_double_effects(
    kafka: KafkaEndpoint, tmp_path: Path
) -> None:
    platform = Platform(data_dir=tmp_path, bootstrap=kafka.bootstrap_servers, echo=False)
    await platform.start()
    watcher = None
    try:
        await platform.wait_ready(timeout=90)
        watcher = await TopicWatcher(
            kafka.bootstrap_servers,
            [topics.INTAKE_FEEDBACK, topics.CASES, topics.partner_referrals("edf")],
        ).start()
        needs = [need_submitted(site_id="faults") for _ in range(NEEDS)]
        ours = {n["submission_id"] for n in needs}
        await produce(
            kafka.bootstrap_servers,
            [
                (
                    topics.INTAKE_NEEDS,
                    n["submission_id"].encode(),
                    json.dumps(n).encode(),
                    headers(),
                )
                for n in needs
            ],
        )

        def requested() -> int:
            return len(watcher.of(topics.CASES, "fr.pimms.referral.requested.v1"))

        await watcher.wait_for(lambda _: requested() > 0, timeout=60, what="the first referral")
        await platform.kill("referrals")
        await platform.kill("partner-gateways")
        await watcher.poll()
        at_kill = requested()
        assert at_kill < NEEDS, "the burst was over before the kill: the test proves nothing"
        await asyncio.sleep(1)
        await platform.restart("referrals")
        await platform.restart("partner-gateways")

        def accepted() -> dict[str, str]:
            return {
                r.json["submission_id"]: r.json["case_reference"]
                for r in watcher.of(topics.INTAKE_FEEDBACK, "fr.pimms.need.accepted.v1")
                if r.json["submission_id"] in ours
            }

        def sent_to_edf() -> dict[str, set[str]]:
            by_case: dict[str, set[str]] = defaultdict(set)
            for record in watcher.of(topics.partner_referrals("edf")):
                body = record.json
                if str(body.get("dossierPimms", "")).startswith("FAULTS-"):
                    by_case[body["dossierPimms"]].add(body["reference"])
            return by_case

        await watcher.wait_for(
            lambda _: len(accepted()) == NEEDS and len(sent_to_edf()) == NEEDS,
            timeout=180,
            what=f"{NEEDS} needs accepted and sent to EDF",
        )
        references = set(accepted().values())
        assert len(references) == NEEDS  # one case per need
        by_case = sent_to_edf()
        assert set(by_case) == references
        assert all(len(ids) == 1 for ids in by_case.values()), (
            "two different referrals for one need"
        )
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'referrals.db'}")
        try:
            async with engine.connect() as connection:
                referrals = (
                    await connection.execute(
                        text("SELECT count(*), count(DISTINCT case_id) FROM referrals")
                    )
                ).one()
        finally:
            await engine.dispose()
        assert tuple(referrals) == (NEEDS, NEEDS)
    finally:
        if watcher is not None:
            await watcher.stop()
        await platform.stop()
