"""End to end: the four services as real processes on a real broker, on SQLite and on PostgreSQL.

A need published on pimms.intake.needs.v1 reaches EDF in EDF's exact format; EDF's answers close
the case; the visitor and the mediator are told; La Poste does the same in XML; bad input is
dead-lettered and answered without blocking what comes behind; the log files name every service
that handled a case and hold no personal data.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from defusedxml import ElementTree
from pimms_cli.config import SERVICES
from pimms_cli.platform import Platform
from pimms_cli.trace import collect
from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, fresh_postgres_database, produce

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LA_POSTE = "{urn:laposte:mediation:pimms:1}"
PARIS = ZoneInfo("Europe/Paris")
# Everything personal the tests send: none of it may appear in a log file.
PERSONAL = [
    "Marie",
    "Dupont",
    "DUPONT",
    "+33612345678",
    "marie.dupont@example.org",
    "69008",
    "Facture impayée",
    "Gaëlle",
    "Le Gall",
    "+33698765432",
    "gaelle.legall@example.org",
    "29200",
    "Colis <fragile> & abîmé",
    "Colis &lt;fragile&gt; &amp; abîmé",
]


@dataclass
class Running:
    platform: Platform
    kafka: KafkaEndpoint
    data_dir: Path
    watcher: TopicWatcher
    urls: dict[str, str]
    case_ids: dict[str, str]
    suffix: str

    def site(self, base: str) -> str:
        """Both runs share one broker: distinct sites give distinct case references."""
        return base + self.suffix


def desk_headers(ce_type: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:pimms:site:lyon-8:frontdesk"),
        ("ce_type", ce_type.encode()),
        ("ce_time", datetime.now(PARIS).isoformat().encode()),
        ("content-type", b"application/json"),
    ]


async def submit(running: Running, need: dict[str, Any] | bytes, *, key: str = "") -> None:
    value = need if isinstance(need, bytes) else json.dumps(need, ensure_ascii=False).encode()
    key = key or (need.get("submission_id", "") if isinstance(need, dict) else "")
    await produce(
        running.kafka.bootstrap_servers,
        [(topics.INTAKE_NEEDS, key.encode(), value, desk_headers("fr.pimms.need.submitted.v1"))],
    )


async def answer(running: Running, partner: str, reference: str, value: bytes) -> None:
    await produce(
        running.kafka.bootstrap_servers,
        [(topics.partner_responses(partner), reference.encode(), value, [])],
    )


async def accepted(running: Running, submission_id: str) -> dict[str, Any]:
    def found(_: object) -> bool:
        return any(
            r.json["submission_id"] == submission_id
            for r in running.watcher.of(topics.INTAKE_FEEDBACK, "fr.pimms.need.accepted.v1")
        )

    await running.watcher.wait_for(found, what=f"need.accepted for {submission_id}")
    return next(
        r.json
        for r in running.watcher.of(topics.INTAKE_FEEDBACK, "fr.pimms.need.accepted.v1")
        if r.json["submission_id"] == submission_id
    )


async def lifecycle(running: Running, case_id: str, ce_type: str) -> dict[str, Any]:
    def found(_: object) -> bool:
        return any(r.json["case_id"] == case_id for r in running.watcher.of(topics.CASES, ce_type))

    await running.watcher.wait_for(found, timeout=45, what=f"{ce_type} for case {case_id}")
    return next(
        r.json for r in running.watcher.of(topics.CASES, ce_type) if r.json["case_id"] == case_id
    )


async def notified(
    running: Running, case_id: str, audience: str, template_part: str
) -> dict[str, Any]:
    def matching() -> list[dict[str, Any]]:
        return [
            r.json
            for r in running.watcher.of(topics.NOTIFICATIONS, "fr.pimms.notification.sent.v1")
            if r.json["case_id"] == case_id
            and r.json["audience"] == audience
            # one message per moment (specs/front-office.md): news of one moment is one message
            and (template_part in r.json["template"] or r.json["template"] == "combined")
        ]

    await running.watcher.wait_for(
        lambda _: bool(matching()),
        timeout=45,
        what=f"{audience} notification {template_part} for {case_id}",
    )
    return matching()[0]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def running(
    request: pytest.FixtureRequest, kafka: KafkaEndpoint, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    data_dir = tmp_path_factory.mktemp(f"platform-{request.param}")
    async with AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        if request.param == "postgresql":
            for spec in SERVICES:
                urls[spec.name] = await stack.enter_async_context(fresh_postgres_database())
        platform = Platform(
            data_dir=data_dir, bootstrap=kafka.bootstrap_servers, echo=False, database_urls=urls
        )
        await platform.start()
        try:
            await platform.wait_ready(timeout=90)
            watcher = await TopicWatcher(
                kafka.bootstrap_servers,
                [
                    topics.INTAKE_FEEDBACK,
                    topics.CASES,
                    topics.NOTIFICATIONS,
                    topics.partner_referrals("edf"),
                    topics.partner_referrals("la-poste"),
                    topics.dead_letters(topics.INTAKE_NEEDS),
                ],
            ).start()
            try:
                suffix = "" if request.param == "sqlite" else "-2"
                yield Running(platform, kafka, data_dir, watcher, urls, {}, suffix)
            finally:
                await watcher.stop()
        finally:
            await platform.stop()


async def test_a_need_reaches_edf_in_its_format_and_edf_closes_the_case(running: Running) -> None:
    need = need_submitted(
        site_id=running.site("lyon-8"), visitor__contact_consent={"sms": True, "email": False}
    )
    await submit(running, need)
    answer_ = await accepted(running, need["submission_id"])
    case_id, reference = answer_["case_id"], answer_["case_reference"]
    running.case_ids["edf"] = case_id
    assert reference.startswith("LYON8")

    def edf_message(_: object) -> bool:
        return any(
            r.json.get("dossierPimms") == reference
            for r in running.watcher.of(topics.partner_referrals("edf"))
        )

    await running.watcher.wait_for(edf_message, what="the referral on EDF's feed")
    record = next(
        r
        for r in running.watcher.of(topics.partner_referrals("edf"))
        if r.json.get("dossierPimms") == reference
    )
    payload = record.json
    assert record.key == payload["reference"]
    assert record.headers == {}  # the partner's payload alone: no CloudEvents headers
    assert list(payload) == [
        "reference",
        "dossierPimms",
        "dateDemande",
        "motif",
        "urgence",
        "client",
        "pointAccueil",
        "description",
    ]
    assert payload == {
        "reference": payload["reference"],
        "dossierPimms": reference,
        "dateDemande": "2026-11-27T09:30:00+01:00",
        "motif": "DIFFICULTE_PAIEMENT",
        "urgence": "HAUTE",
        "client": {
            "nom": "DUPONT",
            "prenom": "Marie",
            "telephone": "+33612345678",
            "email": None,
            "codePostal": "69008",
        },
        "pointAccueil": {"code": running.site("lyon-8"), "mediateur": "m-042"},
        "description": "Facture impayée, risque de coupure avant la fin du mois",
    }
    referral_id = payload["reference"]
    await lifecycle(running, case_id, "fr.pimms.referral.transmitted.v1")
    now = datetime.now(PARIS).isoformat(timespec="seconds")
    await answer(
        running,
        "edf",
        referral_id,
        json.dumps({"reference": referral_id, "statut": "RECU", "horodatage": now}).encode(),
    )
    await answer(
        running,
        "edf",
        referral_id,
        json.dumps(
            {
                "reference": referral_id,
                "statut": "CLOS",
                "resultat": "SOLUTION_TROUVEE",
                "horodatage": now,
            }
        ).encode(),
    )
    completed = await lifecycle(running, case_id, "fr.pimms.referral.completed.v1")
    assert completed["outcome"] == "resolved"
    closed = await lifecycle(running, case_id, "fr.pimms.case.closed.v1")
    assert closed["outcome"] == "resolved"
    assert closed["case_reference"] == reference

    opened = await notified(running, case_id, "visitor", "opened")
    assert opened["channel"] == "sms"
    assert opened["language"] == "fr"
    await notified(running, case_id, "visitor", "completed")
    await notified(running, case_id, "mediator", "completed")
    await notified(running, case_id, "visitor", "closed")
    await notified(running, case_id, "mediator", "closed")
    texts = [
        p.read_text(encoding="utf-8")
        for p in (running.data_dir / "notifications").rglob("*")
        if p.is_file() and not p.name.startswith(".")  # not a message still being written
    ]
    assert any(reference in text for text in texts), "the visitor's SMS gives the case reference"


async def test_a_la_poste_xml_round_trip_closes_the_case(running: Running) -> None:
    need = need_submitted(
        site_id=running.site("brest"),
        visitor__first_name="Gaëlle",
        visitor__last_name="Le Gall",
        visitor__phone="+33698765432",
        visitor__email="gaelle.legall@example.org",
        visitor__postal_code="29200",
        visitor__preferred_language="en",
        visitor__contact_consent={"sms": False, "email": True},
        need__category="postal_service",
        need__urgency="normal",
        need__summary="Colis <fragile> & abîmé",
    )
    await submit(running, need)
    case_id = (await accepted(running, need["submission_id"]))["case_id"]
    running.case_ids["la-poste"] = case_id

    reference = (await accepted(running, need["submission_id"]))["case_reference"]

    def ours() -> list[Any]:
        return [
            r
            for r in running.watcher.of(topics.partner_referrals("la-poste"))
            if ElementTree.fromstring(r.value).get("dossier") == reference
        ]

    await running.watcher.wait_for(lambda _: bool(ours()), what="the <demande> on La Poste's feed")
    record = ours()[0]
    assert record.value.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?>\n<demande xmlns="urn:laposte:mediation:pimms:1"'
    )
    assert (
        b"Colis &lt;fragile&gt; &amp; abim" in record.value
        or b"&lt;fragile&gt; &amp;" in record.value
    )
    root = ElementTree.fromstring(record.value)
    assert root.find(f"{LA_POSTE}objet").text == "Colis <fragile> & abîmé"
    assert root.find(f"{LA_POSTE}objet").get("priorite") == "normale"
    assert root.find(f"{LA_POSTE}usager/{LA_POSTE}telephone") is None  # no SMS consent
    referral_id = root.get("reference")
    assert record.key == referral_id
    now = datetime.now(PARIS).isoformat(timespec="seconds")
    for etat, inner in (
        ("recue", ""),
        ("traitee", "<issue>favorable</issue><commentaire>Livré</commentaire>"),
    ):
        await answer(
            running,
            "la-poste",
            referral_id,
            f'<reponse xmlns="urn:laposte:mediation:pimms:1" reference="{referral_id}" '
            f'etat="{etat}" horodatage="{now}">{inner}</reponse>'.encode(),
        )
    closed = await lifecycle(running, case_id, "fr.pimms.case.closed.v1")
    assert closed["outcome"] == "resolved"
    visitor = await notified(running, case_id, "visitor", "closed")
    assert visitor["channel"] == "email"
    assert visitor["language"] == "en"
    await notified(running, case_id, "mediator", "closed")


async def test_bad_input_is_answered_and_dead_lettered_and_does_not_block(running: Running) -> None:
    invalid = need_submitted(visitor__phone="06 12", need__category="cooking")
    no_consent = need_submitted(consent_to_share=False)
    valid = need_submitted(need__urgency="low")
    await submit(running, b"\x00 this is not JSON", key="garbage")
    await submit(running, invalid)
    await submit(running, no_consent)
    await submit(running, valid)
    await accepted(running, valid["submission_id"])

    def rejected(submission_id: str) -> list[dict[str, Any]]:
        return [
            r.json
            for r in running.watcher.of(topics.INTAKE_FEEDBACK, "fr.pimms.need.rejected.v1")
            if r.json["submission_id"] == submission_id
        ]

    await running.watcher.wait_for(
        lambda _: (
            bool(rejected(invalid["submission_id"])) and bool(rejected(no_consent["submission_id"]))
        ),
        what="two rejections",
    )
    assert {(e["field"], e["code"]) for e in rejected(invalid["submission_id"])[0]["errors"]} == {
        ("visitor.phone", "invalid_format"),
        ("need.category", "invalid_value"),
    }
    assert [e["code"] for e in rejected(no_consent["submission_id"])[0]["errors"]] == [
        "consent_missing"
    ]

    def dead(_: object) -> bool:
        keys = {r.key for r in running.watcher.of(topics.dead_letters(topics.INTAKE_NEEDS))}
        return {"garbage", invalid["submission_id"]} <= keys

    await running.watcher.wait_for(dead, what="dead letters of the garbage and the invalid need")
    reasons = {
        r.key: r.headers["pimms_dlt_reason"]
        for r in running.watcher.of(topics.dead_letters(topics.INTAKE_NEEDS))
    }
    assert reasons["garbage"] == "not_json"
    assert reasons[invalid["submission_id"]] == "schema_invalid"


async def test_trace_and_logs_tell_where_a_case_is_without_personal_data(running: Running) -> None:
    case_id = running.case_ids.get("edf")
    if case_id is None:
        pytest.fail("the EDF test must run first in this module")
    case_ids, _, steps, unread = await collect(case_id, running.data_dir, running.urls)
    assert case_ids == {case_id}
    assert unread == []
    assert {s.service for s in steps} == {spec.name for spec in SERVICES}
    assert any(s.what == "fr.pimms.case.closed.v1" and s.action == "emitted" for s in steps)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # log lines are flushed by the services as they go
        logs = {
            spec.name: (running.data_dir / "logs" / f"{spec.name}.log").read_text(encoding="utf-8")
            for spec in SERVICES
        }
        if all(case_id in text for text in logs.values()):
            break
        await asyncio.sleep(0.2)
    for name, text in logs.items():
        assert case_id in text, f"{name}'s log never mentions the case"
        for line in text.splitlines():
            json.loads(line)  # every line is a JSON event
        for secret in PERSONAL:
            assert secret not in text, f"{name}'s log contains personal data ({secret!r})"
