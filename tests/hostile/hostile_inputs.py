"""One message of each hostile kind for every inbound topic, and what must become of it.

Kinds: random bytes, truncated JSON or XML, invalid UTF-8 in the value and in headers, NUL bytes in
`ce_id`, `submission_id`, the key and headers, wrong types, unknown fields, missing or unknown
`ce_type`, a 900 KB message. Each carries its label in the `x-pimms-test-hostile` header (kept in
its dead letter) so that the test finds what became of it.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pimms_contracts import topics
from pimms_contracts.examples import need_submitted
from pimms_servicekit.testing import Record

HOSTILE = "x-pimms-test-hostile"
PARIS = ZoneInfo("Europe/Paris")
NEEDS = topics.INTAKE_NEEDS
EDF = topics.partner_responses("edf")
LA_POSTE = topics.partner_responses("la-poste")
LA_POSTE_NS = "urn:laposte:mediation:pimms:1"
BIG = 900 * 1024
PARTNER_READ_ERRORS = {"not_json", "malformed_xml", "schema_invalid"}


@dataclass(frozen=True)
class Hostile:
    """A hostile message and what must become of it."""

    label: str
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    accepted: str | None = None  # a valid need behind hostile headers: answered need.accepted
    rejected: str | None = None  # its submission id: answered need.rejected
    dead: frozenset[str] = field(default_factory=frozenset)  # dead-lettered with one of these

    def message(self) -> tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """(topic, key, value, headers) for `produce`."""
        return self.topic, self.key, self.value, [*self.headers, (HOSTILE, self.label.encode())]


def desk(ce_type: bytes | None = b"fr.pimms.need.submitted.v1", **extra: bytes) -> list[Any]:
    """A front-office tool's headers, `ce_type` replaced (None: missing) and `extra` added."""
    headers: list[tuple[str, bytes]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"urn:pimms:site:hostile:frontdesk"),
        ("ce_time", datetime.now(PARIS).isoformat().encode()),
        ("content-type", b"application/json"),
    ]
    if ce_type is not None:
        headers.append(("ce_type", ce_type))
    replaced = set(extra)
    return [(k, v) for k, v in headers if k not in replaced] + list(extra.items())


def body(data: dict[str, Any]) -> bytes:
    """A JSON document as a tool sends it."""
    return json.dumps(data, ensure_ascii=False).encode()


def need_kinds(run: str, rng: random.Random) -> list[Hostile]:
    """Every hostile kind on the front-office needs topic."""
    out: list[Hostile] = []

    def add(kind: str, **fields: Any) -> None:
        out.append(Hostile(label=f"{run}:needs:{kind}", topic=NEEDS, **fields))

    def valid() -> dict[str, Any]:
        return need_submitted()

    add("random_bytes", key=b"r", value=rng.randbytes(300), headers=desk(), dead={"not_json"})
    whole = body(valid())
    add(
        "truncated_json",
        key=b"t",
        value=whole[: len(whole) // 2],
        headers=desk(),
        dead={"not_json"},
    )
    add(
        "invalid_utf8_value",
        key=b"u",
        value=b'{"submission_id": "\xff\xfe\xfd", "site_id": "lyon-8"}',
        headers=desk(),
        dead={"not_json"},
    )
    add("not_an_object", key=b"o", value=b"[1, 2, 3]", headers=desk(), dead={"no_submission_id"})
    need = valid()
    add(
        "invalid_utf8_ce_type",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(ce_type=b"fr.pimms.need.\xff\xfesubmitted.v1"),
        dead={"unknown_type"},
    )
    need = valid()
    add(
        "invalid_utf8_headers",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(ce_id=b"\xc3\x28\xa0\xa1-id", x_tool=b"\xff\xfe\xfa"),
        accepted=need["submission_id"],
    )
    need = valid()
    add(
        "nul_ce_id",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(ce_id=b"id-with-\x00-nul-" + os.urandom(4).hex().encode()),
        accepted=need["submission_id"],
    )
    need = valid()
    add(
        "nul_key",
        key=b"key\x00" + need["submission_id"].encode(),
        value=body(need),
        headers=desk(),
        accepted=need["submission_id"],
    )
    need = valid()
    add(
        "nul_headers",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(ce_source=b"urn:pimms:site:\x00:frontdesk", x_tool=b"a\x00b\x01c"),
        accepted=need["submission_id"],
    )
    need = valid()
    need["submission_id"] = f"sub\x00{uuid.uuid4().hex[:12]}"
    add(
        "nul_submission_id",
        key=b"n",
        value=body(need),
        headers=desk(),
        rejected=need["submission_id"],
    )
    need = valid()
    need["visitor"] = 5
    need["need"]["urgency"] = ["high"]
    need["consent_to_share"] = "yes"
    add(
        "wrong_types",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(),
        rejected=need["submission_id"],
    )
    need = valid()
    need["hidden_field"] = {"drop": "table"}
    need["visitor"]["favourite_colour"] = "blue"
    add(
        "unknown_fields",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(),
        rejected=need["submission_id"],
    )
    need = valid()
    add(
        "missing_ce_type",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(ce_type=None),
        dead={"unknown_type"},
    )
    need = valid()
    add(
        "unknown_ce_type",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(ce_type=b"fr.pimms.need.exploded.v9"),
        dead={"unknown_type"},
    )
    need = valid()
    need["need"]["summary"] = "x" * BIG
    add(
        "900kb",
        key=need["submission_id"].encode(),
        value=body(need),
        headers=desk(),
        rejected=need["submission_id"],
    )
    return out


def partner_kinds(run: str, rng: random.Random) -> list[Hostile]:
    """Every hostile kind on EDF's (JSON) and La Poste's (XML) responses topics."""
    out: list[Hostile] = []
    now = datetime.now(PARIS).isoformat(timespec="seconds")

    def add(topic: str, kind: str, value: bytes, dead: set[str], **fields: Any) -> None:
        partner = "edf" if topic == EDF else "la-poste"
        out.append(
            Hostile(
                label=f"{run}:{partner}:{kind}",
                topic=topic,
                key=fields.pop("key", f"{partner}-{kind}".encode()),
                value=value,
                headers=fields.pop("headers", []),
                dead=frozenset(dead),
            )
        )

    unknown = f"EDF-{uuid.uuid4().hex[:10].upper()}"
    edf = {"reference": unknown, "statut": "RECU", "horodatage": now}
    ours = {"unknown_reference", "schema_invalid"}  # well-formed, but about no referral of ours
    add(EDF, "random_bytes", rng.randbytes(300), {"not_json"})
    add(EDF, "truncated_json", body(edf)[:20], {"not_json"})
    add(EDF, "invalid_utf8_value", b'{"reference": "\xff\xfe", "statut": "RECU"}', {"not_json"})
    add(EDF, "invalid_utf8_headers", body(edf), ours, headers=[("x-edf", b"\xff\xfe")])
    add(EDF, "nul_key_and_headers", body(edf), ours, key=b"k\x00y", headers=[("x", b"\x00")])
    add(EDF, "nul_reference", body({**edf, "reference": "EDF-\x00-1"}), ours)
    add(EDF, "wrong_types", body({"reference": 42, "statut": ["RECU"], "horodatage": 1}), ours)
    add(EDF, "unknown_fields", body({**edf, "pirate": {"x": 1}}), ours)
    add(EDF, "missing_fields", body({"statut": "CLOS"}), ours)
    add(EDF, "unknown_status", body({**edf, "statut": "EXPLOSE"}), {"unknown_status", *ours})
    add(EDF, "ce_headers", body(edf), ours, headers=desk(ce_type=b"fr.pimms.unknown.v1"))
    add(EDF, "900kb", body({**edf, "commentaire": "x" * BIG}), ours)

    def reponse(attrs: str, inner: str = "") -> bytes:
        return f'<reponse xmlns="{LA_POSTE_NS}" {attrs}>{inner}</reponse>'.encode()

    ref = f"LP-{uuid.uuid4().hex[:10].upper()}"
    good = f'reference="{ref}" etat="recue" horodatage="{now}"'
    add(LA_POSTE, "random_bytes", rng.randbytes(300), {"malformed_xml"})
    add(LA_POSTE, "truncated_xml", reponse(good)[:30], {"malformed_xml"})
    add(LA_POSTE, "invalid_utf8_value", b"<reponse \xff\xfe/>", {"malformed_xml"})
    add(LA_POSTE, "json_not_xml", body(edf), {"malformed_xml"})
    add(LA_POSTE, "invalid_utf8_headers", reponse(good), ours, headers=[("x-lp", b"\xff")])
    add(LA_POSTE, "nul_key_and_headers", reponse(good), ours, key=b"\x00", headers=[("x", b"\x00")])
    add(
        LA_POSTE,
        "entity_bomb",
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><reponse>&a;</reponse>',
        {"forbidden_xml"},
    )
    add(
        LA_POSTE,
        "wrong_types",
        reponse(f'reference="{ref}" etat="42" horodatage="hier"'),
        ours | {"unknown_status"},
    )
    add(LA_POSTE, "unknown_fields", reponse(good + ' pirate="1"', "<tresor>or</tresor>"), ours)
    add(LA_POSTE, "missing_fields", reponse('etat="recue"'), ours)
    add(LA_POSTE, "900kb", reponse(good, f"<commentaire>{'x' * BIG}</commentaire>"), ours)
    return out


def hostile_messages(run: str, *, seed: int = 6) -> list[Hostile]:
    """One of each hostile kind on every inbound topic."""
    rng = random.Random(seed)
    return need_kinds(run, rng) + partner_kinds(run, rng)


def fate(
    hostile: Hostile, records: Sequence[Record]
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(dead-letter reasons, need.rejected, need.accepted) that concern `hostile`."""
    dead = [
        r.headers.get("pimms_dlt_reason", "")
        for r in records
        if r.topic == topics.dead_letters(hostile.topic) and r.headers.get(HOSTILE) == hostile.label
    ]
    answers = [r for r in records if r.topic == topics.INTAKE_FEEDBACK]
    wanted = {hostile.rejected, hostile.accepted} - {None}
    # A re-sent answer (the same ce_id published again) counts once.
    rejected = list(
        {
            r.headers.get("ce_id"): r.json
            for r in answers
            if r.ce_type == "fr.pimms.need.rejected.v1" and r.json.get("submission_id") in wanted
        }.values()
    )
    accepted = list(
        {
            r.headers.get("ce_id"): r.json
            for r in answers
            if r.ce_type == "fr.pimms.need.accepted.v1" and r.json.get("submission_id") in wanted
        }.values()
    )
    return dead, rejected, accepted


def unanswered(hostiles: Sequence[Hostile], records: Sequence[Record]) -> list[str]:
    """What has not (yet) become of each hostile message what must: empty when all is right."""
    wrong: list[str] = []
    for hostile in hostiles:
        dead, rejected, accepted = fate(hostile, records)
        if hostile.dead and not (set(dead) & hostile.dead):
            wrong.append(
                f"{hostile.label}: dead letters {dead}, expected one of {set(hostile.dead)}"
            )
        if hostile.rejected and len(rejected) != 1:
            wrong.append(f"{hostile.label}: {len(rejected)} need.rejected, expected 1")
        if hostile.accepted and len(accepted) != 1:
            wrong.append(f"{hostile.label}: {len(accepted)} need.accepted, expected 1")
        if hostile.accepted and dead:
            wrong.append(f"{hostile.label}: a valid need dead-lettered ({dead})")
    return wrong
