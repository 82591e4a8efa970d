"""Every inbound parser, fed anything: it never crashes, it parses or says why (hypothesis)."""

from __future__ import annotations

import json
from typing import Any, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pimms_contracts.partners import load_directory
from pimms_partner_gateways.adapters import eau_grand_lyon as egl
from pimms_partner_gateways.adapters.base import BadAnswerReason, BadPartnerMessage, PartnerAdapter
from pimms_partner_gateways.adapters.registry import build_adapter
from pimms_partner_gateways.domain.model import ReadAnswer

FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
DIRECTORY = load_directory()
ADAPTERS: dict[str, PartnerAdapter] = {}
for _partner in DIRECTORY.partners:
    _adapter = build_adapter(_partner)
    assert _adapter is not None
    ADAPTERS[_partner.id] = _adapter
REASONS = set(get_args(BadAnswerReason))
REF = "3f2b8c1e-5d4a-4e8b-9c7d-1a2b3c4d5e6f"

FIELDS = {
    "edf": ["reference", "statut", "motif", "resultat", "commentaire", "horodatage"],
    "sncf": ["referral_id", "status", "outcome", "reason", "comment", "at"],
    "prefecture-69": ["numeroDemande", "etat", "piecesDemandees", "horodatage"],
    "orange": ["reference", "statut", "motif", "commentaire", "horodatage"],
    "banque-postale": ["referral_id", "status", "outcome", "reason", "comment", "at"],
}
WORDS = [
    "RECU", "CLOS", "REFUSE", "SOLUTION_TROUVEE", "done", "declined", "resolved", "unreachable",
    "COMPLEMENT_DEMANDE", "DECISION_RENDUE", "RESOLUE", "REFUSEE", "tax_notices", "id_card",
    "2026-12-01T14:00:00+01:00", "2026-12-01T14:00:00Z", "2026-13-01T14:00:00+01:00", REF, "",
]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(WORDS),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def outcome(adapter: PartnerAdapter, value: bytes | None) -> ReadAnswer | BadPartnerMessage:
    """What the parser did: an answer, or a refusal with a known reason and a message."""
    try:
        read = adapter.read_response(value)
    except BadPartnerMessage as refused:
        bad = refused
    else:
        assert read.answer.reference
        assert read.answer.reported_at.tzinfo is not None
        return read
    assert bad.reason in REASONS
    assert bad.error
    return bad


def partner_objects(partner_id: str) -> st.SearchStrategy[bytes]:
    """JSON objects near the partner's format: its fields and a few others, any values."""
    names = st.sampled_from([*FIELDS[partner_id], "extra", "Marie Dupont"])
    return st.dictionaries(names, json_values | st.sampled_from(WORDS), max_size=8).map(
        lambda data: json.dumps(data).encode()
    )


@FUZZ
@given(value=st.none() | st.binary(max_size=300))
def test_any_bytes_to_any_partner_parser(value: bytes | None) -> None:
    for adapter in ADAPTERS.values():
        outcome(adapter, value)


@FUZZ
@given(data=st.data())
def test_json_near_each_format_parses_or_is_refused(data: st.DataObject) -> None:
    for partner_id in FIELDS:
        outcome(ADAPTERS[partner_id], data.draw(partner_objects(partner_id)))


@FUZZ
@given(nesting=st.integers(min_value=1, max_value=100_000))
def test_deeply_nested_json_is_refused_not_a_crash(nesting: int) -> None:
    value = b"[" * nesting + b"]" * nesting
    for partner_id in FIELDS:
        assert isinstance(outcome(ADAPTERS[partner_id], value), BadPartnerMessage)


xml_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@FUZZ
@given(
    etat=st.sampled_from(["recue", "traitee", "rejetee", "?"]) | xml_text,
    horodatage=st.sampled_from(WORDS) | xml_text,
    children=st.lists(
        st.tuples(st.sampled_from(["issue", "motif", "commentaire", "note"]), xml_text),
        max_size=4,
    ),
    junk=st.sampled_from(["", "<!DOCTYPE r>", "<!-- c -->", "<?pi x?>", "&amp;", "<", "]]>"]),
)
def test_la_poste_xml_parses_or_is_refused(
    etat: str, horodatage: str, children: list[tuple[str, str]], junk: str
) -> None:
    from xml.sax.saxutils import escape, quoteattr

    body = "".join(f"<{name}>{escape(text)}</{name}>" for name, text in children)
    document = (
        f'{junk}<reponse xmlns="urn:laposte:mediation:pimms:1" reference="{REF}"'
        f" etat={quoteattr(etat)} horodatage={quoteattr(horodatage)}>{body}{junk}</reponse>"
    )
    outcome(ADAPTERS["la-poste"], document.encode())


CSV_WORDS = [REF, "RECU", "TRAITE", "REFUSE", "RESOLU", "01/12/2026 09:00", "31/02/2026 09:00"]
csv_cells = st.sampled_from([*CSV_WORDS, "", '"', ";"]) | st.text(max_size=12)


@FUZZ
@given(
    rows=st.lists(st.lists(csv_cells, min_size=0, max_size=7), max_size=6),
    newline=st.sampled_from(["\r\n", "\n", "\r"]),
    header=st.sampled_from([";".join(egl.INBOUND_HEADER), "REFERENCE;STATUT", "x"]),
)
def test_csv_response_files_never_raise_and_account_for_every_line(
    rows: list[list[str]], newline: str, header: str
) -> None:
    text = newline.join([header, *(";".join(row) for row in rows)]) + newline
    for data in (text.encode("iso-8859-1", errors="replace"), text.encode("utf-8")):
        result = egl.read_response_file(data)
        lines = [a.line for a in result.answers] + [b.line for b in result.bad_lines]
        assert len(lines) == len(set(lines))
        assert all(b.error and b.reason for b in result.bad_lines)
        report = egl.render_errors_file(result)
        report.decode("iso-8859-1")


@FUZZ
@given(value=st.binary(max_size=400))
def test_csv_files_of_random_bytes_never_raise(value: bytes) -> None:
    result = egl.read_response_file(value)
    egl.render_errors_file(result)


def test_the_fuzzers_reach_both_outcomes() -> None:
    """Guard against a fuzzer that only ever sees refusals."""
    good: dict[str, Any] = {
        "edf": {"reference": REF, "statut": "RECU", "horodatage": WORDS[14]},
        "sncf": {"referral_id": REF, "status": "received", "at": WORDS[14]},
    }
    for partner_id, fields in good.items():
        assert isinstance(outcome(ADAPTERS[partner_id], json.dumps(fields).encode()), ReadAnswer)
