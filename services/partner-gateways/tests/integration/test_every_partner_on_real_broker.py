"""Every partner, end to end: a real broker, a real database, real folders, real HTTP servers.

EDF, La Poste, the prefecture and Orange read their Kafka feeds; Eau du Grand Lyon finds an export
file in its folder and drops its answers in another; SNCF and La Banque Postale are HTTP servers
(uvicorn, on free ports) that get signed POSTs and POST their signed answers to the gateway's own
HTTP server. SNCF answers 500 at first. Each answer closes its referral (`completed` reported to
referrals).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pimms_contracts import topics
from pimms_contracts.partners import DEFAULT_DIRECTORY_PATH
from pimms_contracts.v1.internal import IntakeCaseOpened
from pimms_partner_gateways.adapters.eau_grand_lyon import ENCODING
from pimms_partner_gateways.adapters.webhook_signature import signed_headers, verify
from pimms_partner_gateways.app import build_gateway
from pimms_partner_gateways.settings import GatewaySettings
from pimms_servicekit.http import HttpServer
from pimms_servicekit.testing import KafkaEndpoint, TopicWatcher, event_message, produce
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

pytestmark = pytest.mark.integration

SECRETS = {"sncf": "sncf-e2e-secret", "banque-postale": "bp-e2e-secret"}
ENV = {
    "PIMMS_SNCF_WEBHOOK_SECRET": SECRETS["sncf"],
    "PIMMS_BANQUE_POSTALE_WEBHOOK_SECRET": SECRETS["banque-postale"],
}
CATEGORIES = {
    "edf": "energy_bill",
    "la-poste": "postal_service",
    "eau-grand-lyon": "water_bill",
    "sncf": "rail_travel",
    "prefecture-69": "naturalisation",
    "orange": "telecom",
    "banque-postale": "micro_credit",
}
NATURALISATION_FILE = (
    "id_card",
    "birth_certificate",
    "proof_of_address",
    "tax_notices",
    "language_diploma",
)
NAMES = {
    "edf": "Martin",
    "la-poste": "Bernard",
    "eau-grand-lyon": "Petit",
    "sncf": "Durand",
    "prefecture-69": "Garcia",
    "orange": "Leroy",
    "banque-postale": "Moreau",
}
KAFKA_PARTNERS = ("edf", "la-poste", "prefecture-69", "orange")


@dataclass
class PartnerServer:
    """SNCF and La Banque Postale: signed POSTs in, recorded; SNCF answers 500 at first."""

    sncf_failures: int = 2
    received: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=dict)
    server: HttpServer | None = None

    async def endpoint(self, request: Request) -> Response:
        partner = request.path_params["partner"]
        body = await request.body()
        check = verify(
            headers=dict(request.headers),
            body=body,
            secrets=(SECRETS[partner].encode(),),
            now=datetime.now(UTC),
        )
        if not check.ok:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        self.received.setdefault(partner, []).append((dict(request.headers), body))
        if partner == "sncf" and self.sncf_failures > 0:
            self.sncf_failures -= 1
            return JSONResponse({"error": "maintenance"}, status_code=500)
        return JSONResponse({"ok": True}, status_code=200)

    async def start(self) -> int:
        async def ready() -> dict[str, Any]:
            return {}

        async def metrics() -> bytes:
            return b""

        self.server = HttpServer(host="127.0.0.1", port=0, readiness=ready, metrics=metrics)
        self.server.route("/{partner}/referrals", self.endpoint, methods=["POST"])
        await self.server.start()
        assert self.server.bound_port is not None
        return self.server.bound_port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    def bodies(self, partner: str) -> list[bytes]:
        return [body for _, body in self.received.get(partner, [])]


def directory_for(tmp_path: Path, port: int) -> Path:
    text = DEFAULT_DIRECTORY_PATH.read_text(encoding="utf-8")
    text = text.replace(
        "http://127.0.0.1:8787/pimms/referrals", f"http://127.0.0.1:{port}/sncf/referrals"
    )
    text = text.replace(
        "http://127.0.0.1:8788/pimms/referrals", f"http://127.0.0.1:{port}/banque-postale/referrals"
    )
    text = text.replace('export_every = "5m"', 'export_every = "1s"')
    path = tmp_path / "directory.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def eventually(check: Callable[[], Any], *, what: str, timeout: float = 40.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def signed_post(partner: str, body: bytes) -> dict[str, str]:
    return signed_headers(
        secret=SECRETS[partner].encode(),
        body=body,
        at=datetime.now(UTC),
        delivery_id=f"{partner}-1",
    )


async def test_every_partner_gets_its_referral_and_its_answer_closes_it(
    kafka: KafkaEndpoint,
    database_url: str,
    tmp_path: Path,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    partners = PartnerServer()
    port = await partners.start()
    settings = GatewaySettings(
        data_dir=tmp_path,
        database_url=database_url,
        partner_directory=directory_for(tmp_path, port),
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
        inbound_poll_interval_s=0.2,
        http_port=0,
    )
    gateway = build_gateway(settings, environ=ENV)
    runtime = gateway.runtime
    app = runtime.build_app()
    cases = {
        p: case_opened(
            category=category,
            last_name=NAMES[p],
            case_reference=f"LYON8-2026-00010{i}",
            urgency="normal",
            documents=NATURALISATION_FILE if p == "prefecture-69" else ("id_card", "last_bill"),
        )
        for i, (p, category) in enumerate(CATEGORIES.items())
    }
    requests = {p: referral_requested(case, p) for p, case in cases.items()}
    references = {p: str(r.referral_id) for p, r in requests.items()}
    feeds = [topics.partner_referrals(p) for p in KAFKA_PARTNERS]
    await app.start()
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.PARTNER_REPORTS, *feeds]).start()
    try:
        await produce(
            kafka.bootstrap_servers,
            [
                *(
                    event_message(topics.INTAKE_CASES, c, key=str(c.case_id))
                    for c in cases.values()
                ),
                *(event_message(topics.CASES, r, key=str(r.case_id)) for r in requests.values()),
            ],
        )

        def reports(kind: str) -> list[dict[str, Any]]:
            ours = set(references.values())  # the topic is the module's: other tests wrote too
            return [
                r.json
                for r in watcher.of(topics.PARTNER_REPORTS, f"fr.pimms.gateway.{kind}.v1")
                if r.json["referral_id"] in ours
            ]

        def delivered() -> set[str]:
            return {r["partner_id"] for r in reports("delivered")}

        await watcher.wait_for(
            lambda _: delivered() >= set(CATEGORIES), what="every delivery", timeout=60
        )

        # what each partner received, in its own format and transport
        outbound = tmp_path / "partners" / "eau-grand-lyon" / "outbound"
        [export] = list(outbound.iterdir())
        assert re.fullmatch(r"PIMMS_EGL_\d{14}_\d+\.csv", export.name)
        received: dict[str, list[bytes]] = {
            p: [
                r.value or b""
                for r in watcher.of(topics.partner_referrals(p))
                if r.key in references.values()
            ]
            for p in KAFKA_PARTNERS
        }
        received["eau-grand-lyon"] = export.read_bytes().split(b"\r\n")[1:-1]
        received["sncf"] = partners.bodies("sncf")
        received["banque-postale"] = partners.bodies("banque-postale")
        for partner, messages in received.items():
            assert messages, partner
            for message in messages:
                text = message.decode(ENCODING if partner == "eau-grand-lyon" else "utf-8")
                assert references[partner] in text
                for other, reference in references.items():  # isolation: nothing of another's
                    if other != partner:
                        assert reference not in text, (partner, other)
                        assert NAMES[other] not in text, (partner, other)
                        assert cases[other].case_reference not in text, (partner, other)
        # SNCF was down for two tries: the same delivery id each time, then delivered
        sncf_ids = {headers["x-pimms-delivery"] for headers, _ in partners.received["sncf"]}
        assert len(partners.received["sncf"]) == 3
        assert len(sncf_ids) == 1

        # the answers, each in the partner's format and transport
        at = "2026-11-28T10:00:00+01:00"
        await produce(
            kafka.bootstrap_servers,
            [
                (
                    topics.partner_responses("edf"),
                    references["edf"].encode(),
                    json.dumps(
                        {
                            "reference": references["edf"],
                            "statut": "CLOS",
                            "resultat": "SOLUTION_TROUVEE",
                            "horodatage": at,
                        }
                    ).encode(),
                    [],
                ),
                (
                    topics.partner_responses("la-poste"),
                    references["la-poste"].encode(),
                    (
                        '<reponse xmlns="urn:laposte:mediation:pimms:1" '
                        f'reference="{references["la-poste"]}" etat="traitee" horodatage="{at}">'
                        "<issue>favorable</issue></reponse>"
                    ).encode(),
                    [],
                ),
                (
                    topics.partner_responses("prefecture-69"),
                    references["prefecture-69"].encode(),
                    json.dumps(
                        {
                            "numeroDemande": references["prefecture-69"],
                            "etat": "DECISION_RENDUE",
                            "horodatage": at,
                        }
                    ).encode(),
                    [],
                ),
                (
                    topics.partner_responses("orange"),
                    references["orange"].encode(),
                    json.dumps(
                        {"reference": references["orange"], "statut": "RESOLUE", "horodatage": at}
                    ).encode(),
                    [],
                ),
            ],
        )
        inbound = tmp_path / "partners" / "eau-grand-lyon" / "inbound"
        inbound.mkdir(parents=True, exist_ok=True)
        egl = references["eau-grand-lyon"]
        lines = [
            "REFERENCE;STATUT;DATE;MOTIF;COMMENTAIRE",
            f"{egl};TRAITE;28/11/2026 10:00;RESOLU;Echéancier accordé",
            f"{egl};TRAITE;28/11/2026 10:00;",
        ]
        (inbound / ".REPONSES.csv.part").write_bytes("\r\n".join([*lines, ""]).encode(ENCODING))
        (inbound / ".REPONSES.csv.part").rename(inbound / "REPONSES.csv")

        gateway_url = f"http://127.0.0.1:{runtime.http.bound_port}"
        async with httpx.AsyncClient(base_url=gateway_url) as client:
            for partner in ("sncf", "banque-postale"):
                body = json.dumps(
                    {
                        "referral_id": references[partner],
                        "status": "done",
                        "outcome": "resolved",
                        "at": at,
                    }
                ).encode()
                forged = dict(
                    signed_post(partner, body), **{"X-PIMMS-Signature": "sha256=" + "0" * 64}
                )
                refused = await client.post(
                    f"/partners/{partner}/responses", content=body, headers=forged
                )
                assert refused.status_code == 401
                answered = await client.post(
                    f"/partners/{partner}/responses",
                    content=body,
                    headers=signed_post(partner, body),
                )
                assert answered.status_code == 202, answered.text

        def completed() -> set[str]:
            return {
                r["partner_id"] for r in reports("status_reported") if r["status"] == "completed"
            }

        await watcher.wait_for(
            lambda _: completed() >= set(CATEGORIES), what="every answer", timeout=60
        )
        assert len(reports("status_reported")) == len(CATEGORIES)  # the forged ones changed nothing
        for report in reports("status_reported"):
            assert report["referral_id"] == references[report["partner_id"]]
            assert report["outcome"] == "resolved"

        processed = inbound / "processed"
        await eventually((processed / "REPONSES.csv").exists, what="the file moved")
        errors = (processed / "REPONSES.errors.csv").read_bytes().decode(ENCODING).split("\r\n")
        assert errors[1].startswith(f"{egl};TRAITE;")
        assert "wrong_cell_count" in errors[1]
        assert errors[2:] == [""]
    finally:
        await watcher.stop()
        await app.stop()
        await partners.stop()


async def test_a_webhook_partner_added_to_the_file_of_a_running_gateway_gets_its_referrals(
    kafka: KafkaEndpoint,
    database_url: str,
    tmp_path: Path,
    case_opened: Callable[..., IntakeCaseOpened],
    referral_requested: Any,
) -> None:
    partners = PartnerServer()
    port = await partners.start()
    path = directory_for(tmp_path, port)
    settings = GatewaySettings(
        data_dir=tmp_path,
        database_url=database_url,
        partner_directory=path,
        kafka_bootstrap_servers=kafka.bootstrap_servers,
        kafka_enable_idempotence=kafka.supports_idempotence,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=300,
        kafka_fetch_max_wait_ms=20,
        relay_poll_interval_s=0.05,
        directory_poll_interval_s=0.1,
        http_port=0,
    )
    gateway = build_gateway(settings, environ=ENV)
    app = gateway.runtime.build_app()
    await app.start()
    watcher = await TopicWatcher(kafka.bootstrap_servers, [topics.PARTNER_REPORTS]).start()
    try:
        # La Banque Postale's professional desk joins, on the same endpoint and secret
        text = path.read_text(encoding="utf-8")
        bank = "[[partner]]" + text.split("[[partner]]")[-1]
        assert 'id = "banque-postale"' in bank
        pro = bank.replace('id = "banque-postale"', 'id = "banque-postale-pro"')
        path.write_text(text + "\n" + pro, encoding="utf-8")
        await eventually(lambda: gateway.directory.reloads == 1, what="the file reloaded")
        case = case_opened(category="micro_credit", case_reference="LYON8-2026-000201")
        request = referral_requested(case, "banque-postale-pro")
        await produce(
            kafka.bootstrap_servers,
            [
                event_message(topics.INTAKE_CASES, case, key=str(case.case_id)),
                event_message(topics.CASES, request, key=str(case.case_id)),
            ],
        )
        reference = str(request.referral_id)

        def delivered() -> list[dict[str, Any]]:
            return [
                r.json
                for r in watcher.of(topics.PARTNER_REPORTS, "fr.pimms.gateway.delivered.v1")
                if r.json["referral_id"] == reference
            ]

        await watcher.wait_for(lambda _: delivered(), what="the new partner's delivery", timeout=60)
        assert delivered()[0]["partner_id"] == "banque-postale-pro"
        [body] = partners.bodies("banque-postale")
        assert json.loads(body)["referral_id"] == reference
        failed = watcher.of(topics.PARTNER_REPORTS, "fr.pimms.gateway.delivery_failed.v1")
        assert [r for r in failed if r.json["referral_id"] == reference] == []
    finally:
        await watcher.stop()
        await app.stop()
        await partners.stop()
