"""The AsyncAPI documents in contracts/asyncapi/ are the services' code, described."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "contracts" / "asyncapi"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pimms_tools_asyncapi", ROOT / "tools" / "asyncapi.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return _tool()


@pytest.fixture(scope="module")
def rendered(tool: ModuleType) -> dict[str, str]:
    texts: dict[str, str] = tool.rendered()
    return texts


def docs(rendered: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name.removesuffix(".json"): json.loads(text) for name, text in rendered.items()}


def test_the_committed_documents_are_what_the_code_generates(
    tool: ModuleType, rendered: dict[str, str]
) -> None:
    problems = tool.differences(COMMITTED, rendered)
    assert problems == [], "AsyncAPI documents drifted (run `make asyncapi`):\n" + "\n".join(
        problems
    )


def test_a_document_that_drifted_is_named(
    tool: ModuleType, rendered: dict[str, str], tmp_path: Path
) -> None:
    for name, text in rendered.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    changed = json.loads(rendered["intake.json"])
    del changed["channels"]["pimms.intake.needs.v1:Consume"]
    (tmp_path / "intake.json").write_text(json.dumps(changed), encoding="utf-8")
    (tmp_path / "notifications.json").unlink()
    (tmp_path / "billing.json").write_text("{}", encoding="utf-8")

    problems = tool.differences(tmp_path, rendered)

    assert problems == [
        "intake.json: differs from the code (run `make asyncapi` and commit it)",
        "notifications.json: missing (run `make asyncapi`)",
        "billing.json: no service has this name any more",
    ]


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict), ref
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return _resolve(doc, node["$ref"])
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_every_document_is_asyncapi_3_and_every_reference_resolves(
    rendered: dict[str, str],
) -> None:
    for service, doc in docs(rendered).items():
        assert doc["asyncapi"] == "3.0.0"
        assert doc["info"]["title"] == f"PIMMS {service}"
        assert doc["operations"], service
        for ref in _refs(doc):
            _resolve(doc, ref)
        for name, operation in doc["operations"].items():
            assert operation["action"] in {"send", "receive"}, name
            assert operation["messages"], f"{service}: {name} names no message"


def _operation(doc: dict[str, Any], address: str, action: str) -> dict[str, Any]:
    for operation in doc["operations"].values():
        channel = _resolve(doc, operation["channel"]["$ref"])
        if channel["address"] == address and operation["action"] == action:
            return operation
    raise AssertionError(f"no {action} operation on {address}")


def _message_names(doc: dict[str, Any], operation: dict[str, Any]) -> set[str]:
    return {_resolve(doc, m["$ref"])["name"] for m in operation["messages"]}


def test_intake_receives_the_front_office_needs_and_sends_its_feedback(
    rendered: dict[str, str],
) -> None:
    intake = docs(rendered)["intake"]
    needs = _operation(intake, "pimms.intake.needs.v1", "receive")
    assert "fr.pimms.need.submitted.v1" in _message_names(intake, needs)
    feedback = _operation(intake, "pimms.intake.feedback.v1", "send")
    assert _message_names(intake, feedback) >= {
        "fr.pimms.need.accepted.v1",
        "fr.pimms.need.rejected.v1",
    }
    submitted = intake["components"]["schemas"]["fr.pimms.need.submitted.v1"]
    assert "visitor" in submitted["properties"]
    headers = intake["components"]["schemas"]["CloudEventsHeaders"]
    assert {"ce_id", "ce_type", "ce_source"} <= set(headers["required"])
    dead_letters = _operation(intake, "pimms.intake.needs.v1.dlt", "send")
    dlt = _resolve(intake, dead_letters["messages"][0]["$ref"])
    assert "pimms_dlt_reason" in _resolve(intake, dlt["headers"]["$ref"])["properties"]


def test_referrals_is_the_writer_of_the_public_lifecycle(rendered: dict[str, str]) -> None:
    referrals = docs(rendered)["referrals"]
    lifecycle = _operation(referrals, "pimms.cases.v1", "send")
    assert {"fr.pimms.case.opened.v1", "fr.pimms.referral.expired.v1"} <= _message_names(
        referrals, lifecycle
    )
    for service, doc in docs(rendered).items():
        if service != "referrals":
            with pytest.raises(AssertionError):
                _operation(doc, "pimms.cases.v1", "send")


def test_the_partner_feeds_are_described_in_each_partners_format(
    rendered: dict[str, str],
) -> None:
    gateways = docs(rendered)["partner-gateways"]
    edf = _operation(gateways, "pimms.partner.edf.referrals.v1", "send")
    message = _resolve(gateways, edf["messages"][0]["$ref"])
    assert message["x-pimms-partner"]["id"] == "edf"
    assert message["contentType"] == "application/json"
    poste = _operation(gateways, "pimms.partner.la-poste.responses.v1", "receive")
    assert _resolve(gateways, poste["messages"][0]["$ref"])["contentType"] == "application/xml"
    sncf_out = gateways["operations"]["sncf:http:referrals"]
    assert sncf_out["action"] == "send"
    channel = _resolve(gateways, sncf_out["channel"]["$ref"])
    assert gateways["servers"]["partner-sncf"]["host"] == "127.0.0.1:8787"
    assert "PIMMS_SNCF_WEBHOOK_SECRET" in channel["description"]
    assert "PIMMS_SNCF_WEBHOOK_SECRET_PREVIOUS" in channel["description"]
    _operation(gateways, "/partners/sncf/responses", "receive")
    _operation(gateways, "partners/eau-grand-lyon/outbound", "send")


def test_every_event_type_travels_on_a_documented_topic(tool: ModuleType) -> None:
    assert tool.uncovered_events() == []
