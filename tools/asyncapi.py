"""Each service's AsyncAPI 3 document, generated from its code into contracts/asyncapi/.

    python -m tools.asyncapi export [DIR]   # write <service>.json (make asyncapi)
    python -m tools.asyncapi check [DIR]    # exit 1, naming each document that drifted

faststream builds the skeleton from the service's own runtime (`build_runtime()`: the topics it
consumes, its subscriber, its HTTP endpoints); the topics it publishes come from its `produces`;
each message is described by the contract models of `pimms_contracts` (CloudEvents headers +
the event's JSON Schema), dead-letter topics by their `pimms_dlt_*` headers, and the partner feeds
(Kafka topics, signed webhooks, file drops) by the partner directory. The cli never imports a
service: this tool does, at the repository root.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI
from pimms_contracts import topics
from pimms_contracts.base import Event
from pimms_contracts.envelope import (
    H_CAUSATION,
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_ID,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TYPE,
)
from pimms_contracts.partners import load_directory
from pimms_contracts.partners.directory import (
    FileDropTransport,
    KafkaTransport,
    Partner,
    WebhookTransport,
)
from pimms_contracts.registry import ALL_EVENTS
from pimms_contracts.v1 import assessments, frontoffice, internal, lifecycle, notifications

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "contracts" / "asyncapi"
VERSION = "1.0.0"
KAFKA_SERVER = "kafka:9092"  # the compose file's broker: documents do not depend on who runs this

# Service name -> its package (the tool calls `<package>.app.build_runtime()`).
SERVICES = {
    "intake": "pimms_intake",
    "referrals": "pimms_referrals",
    "partner-gateways": "pimms_partner_gateways",
    "notifications": "pimms_notifications",
    "reporting": "pimms_reporting",
}

DESCRIPTIONS = {
    "intake": "Validates what front-office tools send, opens cases, allocates references and "
    "holds the only full copy of the visitor's personal data.",
    "referrals": "Routes each case to its partners, runs each referral's lifecycle (SLA ladder, "
    "document checklist) and closes the case. Only writer of pimms.cases.v1.",
    "partner-gateways": "Turns referrals into each partner's own format and transport, and their "
    "answers back into platform statuses.",
    "notifications": "Tells the visitor and the mediator what the contract says, on a channel the "
    "visitor consented to, in their language.",
    "reporting": "Projects the lifecycle, notifications and mediators' assessments into the yearly "
    "partnership review (no personal data).",
}

# The event types each platform topic carries (specs/front-office.md and the services' code).
TOPIC_EVENTS: dict[str, tuple[type[Event], ...]] = {
    topics.INTAKE_NEEDS: (
        frontoffice.NeedSubmitted,
        frontoffice.NeedDocumentsAdded,
        frontoffice.NeedWithdrawn,
        frontoffice.ReferralAssessed,
    ),
    topics.INTAKE_FEEDBACK: (
        frontoffice.NeedAccepted,
        frontoffice.NeedAcknowledged,
        frontoffice.NeedRejected,
    ),
    topics.CASES: lifecycle.LIFECYCLE_EVENTS,
    topics.NOTIFICATIONS: (notifications.NotificationSent, notifications.NotificationFailed),
    topics.INTAKE_CASES: (
        internal.IntakeCaseOpened,
        internal.IntakeDocumentsAdded,
        internal.IntakeCaseWithdrawn,
    ),
    topics.PARTNER_REPORTS: (
        internal.PartnerDelivered,
        internal.PartnerDeliveryFailed,
        internal.PartnerStatusReported,
        internal.PartnerReportRefused,
    ),
    topics.REFERRAL_ALERTS: (internal.PartnerReportRefused,),
    topics.INTAKE_ASSESSMENTS: (assessments.AssessmentRecorded,),
}

# A partner's own format: (content type, where it is specified).
PARTNER_FORMATS = {
    "edf": ("application/json", "EDF's JSON (specs/partners.md, `edf`)"),
    "la-poste": ("application/xml", "La Poste's XML, no DTD (specs/partners.md, `la-poste`)"),
    "eau-grand-lyon": (
        "text/csv; charset=ISO-8859-1",
        "Eau du Grand Lyon's CSV files (specs/partners.md, `eau-grand-lyon`)",
    ),
    "sncf": ("application/json", "SNCF's signed JSON (specs/partners.md, `sncf`)"),
    "prefecture-69": (
        "application/json",
        "the prefecture's naturalisation files (specs/partners.md, `prefecture-69`)",
    ),
    "mapped-json": (
        "application/json",
        "JSON whose fields the partner directory maps (`[partner.mapping]`, x-pimms-mapping)",
    ),
}

CE_HEADERS = {
    H_SPECVERSION: "CloudEvents spec version, 1.0",
    H_ID: "unique id of the event (deduplication key of every consumer)",
    H_SOURCE: "who produced it, e.g. urn:pimms:intake",
    H_TYPE: "the event type, e.g. fr.pimms.need.submitted.v1",
    H_TIME: "when it happened, RFC 3339 with offset",
    H_CONTENT_TYPE: "application/json",
    H_CORRELATION: "one id per case journey, from the front office to the partner and back",
    H_CAUSATION: "the ce_id of the event that caused this one",
    "traceparent": "W3C trace context, when tracing is on",
}

DLT_HEADERS = {
    topics.DLT_REASON: "why it was dead-lettered (a reason code: invalid_json, unknown_status...)",
    topics.DLT_ERROR: "what was wrong, without personal data",
    topics.DLT_SERVICE: "the service that dead-lettered it",
    topics.DLT_ORIGINAL_TOPIC: "the topic it was read from",
    topics.DLT_ORIGINAL_PARTITION: "its partition there",
    topics.DLT_ORIGINAL_OFFSET: "its offset there",
    topics.DLT_FAILED_AT: "when, RFC 3339",
}


@contextlib.contextmanager
def _clean_environment(data_dir: Path) -> Iterator[None]:
    """Build runtimes from defaults only: the documents must not depend on who runs the tool."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("PIMMS_", "KAFKA_", "OTEL_")):
            del os.environ[key]
    os.environ["PIMMS_DATA_DIR"] = str(data_dir)
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = KAFKA_SERVER
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _runtime(service: str) -> Any:
    app = importlib.import_module(f"{SERVICES[service]}.app")
    runtime = app.build_runtime()
    runtime.subscribe()
    for topic in runtime.produces:
        runtime.broker.publisher(topic, title=f"{topic}:Publish")
    return runtime


def _event_schemas(events: tuple[type[Event], ...], schemas: dict[str, Any]) -> None:
    for event in events:
        if event.ce_type in schemas:
            continue
        schema = event.model_json_schema(
            mode="serialization", ref_template="#/components/schemas/{model}"
        )
        for name, definition in schema.pop("$defs", {}).items():
            known = schemas.setdefault(name, definition)
            if known != definition:
                raise RuntimeError(f"two contract models named {name} differ: rename one")
        schema["x-cloudevents-type"] = event.ce_type
        schemas[event.ce_type] = schema


def _message_of(event: type[Event]) -> dict[str, Any]:
    return {
        "name": event.ce_type,
        "title": event.__name__,
        "summary": (event.__doc__ or "").strip().splitlines()[0] if event.__doc__ else "",
        "contentType": "application/json",
        "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
        "correlationId": {"$ref": "#/components/correlationIds/case"},
        "payload": {"$ref": f"#/components/schemas/{event.ce_type}"},
    }


def _headers_schema(headers: dict[str, str], required: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            name: {"type": "string", "description": text} for name, text in headers.items()
        },
        "required": list(required),
    }


def _partner_for_topic(topic: str, partners: list[Partner]) -> tuple[Partner, str] | None:
    for partner in partners:
        transport = partner.transport
        if not isinstance(transport, KafkaTransport):
            continue
        if topic == transport.referrals_topic:
            return partner, "referrals"
        if topic == transport.responses_topic:
            return partner, "responses"
    return None


def _partner_message(partner: Partner, direction: str) -> dict[str, Any]:
    content_type, spec = PARTNER_FORMATS.get(partner.format, ("application/json", partner.format))
    what = (
        "referrals, cancellations and reminders the platform sends"
        if direction == "referrals"
        else "status reports the partner sends back"
    )
    message: dict[str, Any] = {
        "name": f"{partner.id}.{direction}",
        "title": f"{partner.operator}: {direction}",
        "summary": f"{partner.operator}'s {what}, in its own format: {spec}.",
        "contentType": content_type,
        "payload": {"description": spec},
        "x-pimms-partner": {
            "id": partner.id,
            "operator": partner.operator,
            "format": partner.format,
            "categories": list(partner.categories),
            "ack_within": str(partner.ack_within),
            "resolve_within": str(partner.resolve_within),
        },
    }
    if partner.mapping is not None:
        message["x-pimms-mapping"] = partner.mapping.model_dump(mode="json")
    return message


def _describe_topic(
    topic: str, doc: dict[str, Any], partners: list[Partner]
) -> tuple[dict[str, Any], str]:
    """The messages of one topic (name -> message) and a description of the channel."""
    messages = doc["components"].setdefault("messages", {})
    schemas = doc["components"]["schemas"]
    if topic.endswith(".dlt"):
        original = topic.removesuffix(".dlt")
        messages["DeadLetter"] = {
            "name": "dead-letter",
            "title": "Dead letter",
            "summary": "The original key, value and headers, untouched, plus pimms_dlt_* headers.",
            "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
            "payload": {"description": f"the bytes read from {original}, as they were"},
        }
        return {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}}, (
            f"Dead letters of {original}: read and replay them with `pimms dead-letters`."
        )
    found = _partner_for_topic(topic, partners)
    if found is not None:
        partner, direction = found
        key = f"{partner.id}.{direction}"
        messages[key] = _partner_message(partner, direction)
        return {key: {"$ref": f"#/components/messages/{key}"}}, messages[key]["summary"]
    events = TOPIC_EVENTS.get(topic)
    if events is None:
        raise RuntimeError(f"{topic}: no contract says what it carries (add it to TOPIC_EVENTS)")
    _event_schemas(events, schemas)
    refs = {}
    for event in events:
        messages[event.__name__] = _message_of(event)
        refs[event.__name__] = {"$ref": f"#/components/messages/{event.__name__}"}
    public = "public (specs/)" if topic in topics.PUBLIC_TOPICS else "internal"
    return refs, f"{public} topic; CloudEvents in Kafka binary mode, key = the case id"


def _rewrite(doc: dict[str, Any], partners: list[Partner]) -> None:
    """Replace faststream's empty payloads with the contracts' messages."""
    components = doc.setdefault("components", {})
    components["messages"] = {}
    components["schemas"] = {
        "CloudEventsHeaders": _headers_schema(
            CE_HEADERS, (H_SPECVERSION, H_ID, H_SOURCE, H_TYPE, H_TIME)
        ),
        "DeadLetterHeaders": _headers_schema(
            DLT_HEADERS, (topics.DLT_REASON, topics.DLT_SERVICE, topics.DLT_ORIGINAL_TOPIC)
        ),
    }
    components["correlationIds"] = {
        "case": {"location": f"$message.header#/{H_CORRELATION}", "description": "case journey"}
    }
    for name, channel in doc["channels"].items():
        messages, description = _describe_topic(channel["address"], doc, partners)
        channel["messages"] = messages
        channel["description"] = description
        for operation in doc["operations"].values():
            if operation["channel"]["$ref"] == f"#/channels/{name}":
                operation["messages"] = [
                    {"$ref": f"#/channels/{name}/messages/{m}"} for m in messages
                ]


def _add_partner_transports(doc: dict[str, Any], partners: list[Partner]) -> None:
    """Partners outside Kafka: a signed webhook each way, or a folder of files."""
    messages = doc["components"]["messages"]
    for partner in partners:
        transport = partner.transport
        if isinstance(transport, WebhookTransport):
            server = f"partner-{partner.id}"
            doc["servers"][server] = {
                "host": transport.url.split("://", 1)[1].split("/", 1)[0],
                "protocol": transport.url.split("://", 1)[0],
                "description": f"{partner.operator}'s webhook receiver (directory: url)",
            }
            path = "/" + transport.url.split("://", 1)[1].split("/", 1)[1]
            _add_http_channel(
                doc,
                partner=partner,
                direction="referrals",
                server=server,
                address=path,
                action="send",
                note=f"POST signed with {transport.secret_env} "
                f"(during a rotation {transport.previous_secret_env} is still accepted)",
            )
            _add_http_channel(
                doc,
                partner=partner,
                direction="responses",
                server="gateway-http",
                address=f"/partners/{partner.id}/responses",
                action="receive",
                note="POST signed by the partner; 202 accepted, 401 bad signature, "
                "404 unknown referral, 400 malformed",
            )
        elif isinstance(transport, FileDropTransport):
            for direction, folder, action in (
                ("referrals", transport.outbound_dir, "send"),
                ("responses", transport.inbound_dir, "receive"),
            ):
                key = f"{partner.id}.{direction}"
                messages[key] = _partner_message(partner, direction)
                channel = f"{partner.id}:files:{direction}"
                doc["channels"][channel] = {
                    "address": folder,
                    "description": f"files in $PIMMS_DATA_DIR/{folder} "
                    f"(every {transport.export_every})"
                    if direction == "referrals"
                    else f"files the partner drops in $PIMMS_DATA_DIR/{folder}",
                    "messages": {key: {"$ref": f"#/components/messages/{key}"}},
                }
                doc["operations"][channel] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{channel}"},
                    "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"}],
                }


def _add_http_channel(
    doc: dict[str, Any],
    *,
    partner: Partner,
    direction: str,
    server: str,
    address: str,
    action: str,
    note: str,
) -> None:
    key = f"{partner.id}.{direction}"
    message = _partner_message(partner, direction)
    message["summary"] += f" {note}."
    doc["components"]["messages"][key] = message
    channel = f"{partner.id}:http:{direction}"
    doc["channels"][channel] = {
        "address": address,
        "servers": [{"$ref": f"#/servers/{server}"}],
        "description": note,
        "messages": {key: {"$ref": f"#/components/messages/{key}"}},
        "bindings": {"http": {"method": "POST", "bindingVersion": "0.3.0"}},
    }
    doc["operations"][channel] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{key}"}],
    }


def document(service: str) -> dict[str, Any]:
    """The AsyncAPI 3 document of one service, built from its code."""
    with tempfile.TemporaryDirectory() as scratch, _clean_environment(Path(scratch)):
        runtime = _runtime(service)
        spec = AsyncAPI(
            runtime.broker,
            title=f"PIMMS {service}",
            version=VERSION,
            description=DESCRIPTIONS[service],
            schema_version="3.0.0",
        ).to_specification()
        doc: dict[str, Any] = json.loads(spec.to_json())
        partners = list(load_directory().partners)
        doc["servers"] = {
            "kafka": {
                "host": KAFKA_SERVER,
                "protocol": "kafka",
                "description": "the platform's Kafka (KAFKA_BOOTSTRAP_SERVERS)",
            }
        }
        for channel in doc["channels"].values():
            channel["servers"] = [{"$ref": "#/servers/kafka"}]
        _rewrite(doc, partners)
        # Dead letters of what it reads: the service publishes them.
        for topic in runtime.pipeline.topics:
            _add_dead_letter_channel(doc, topic, partners)
        routes = [r.path for r in runtime.http.routes]
        doc["servers"]["http"] = {
            "host": f"127.0.0.1:{_default_port(service)}",
            "protocol": "http",
            "description": f"the service's HTTP server (PIMMS_*_HTTP_PORT): {', '.join(routes)}",
        }
        if service == "partner-gateways":
            doc["servers"]["gateway-http"] = doc["servers"].pop("http")
            _add_partner_transports(doc, partners)
    ordered: dict[str, Any] = _ordered(doc)
    return ordered


def _default_port(service: str) -> int:
    from pimms_servicekit.settings import HTTP_PORTS

    return HTTP_PORTS.get(service, 0)


def _add_dead_letter_channel(doc: dict[str, Any], topic: str, partners: list[Partner]) -> None:
    dlt = topics.dead_letters(topic)
    name = f"{dlt}:Publish"
    messages, description = _describe_topic(dlt, doc, partners)
    doc["channels"][name] = {
        "address": dlt,
        "servers": [{"$ref": "#/servers/kafka"}],
        "description": description,
        "messages": messages,
        "bindings": {"kafka": {"topic": dlt, "bindingVersion": "0.4.0"}},
    }
    doc["operations"][name] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{name}"},
        "messages": [{"$ref": f"#/channels/{name}/messages/{m}"} for m in messages],
    }


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ordered(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def rendered() -> dict[str, str]:
    """File name -> JSON text, for every service."""
    return {
        f"{service}.json": json.dumps(document(service), indent=2, ensure_ascii=False) + "\n"
        for service in SERVICES
    }


def differences(directory: Path, wanted: dict[str, str] | None = None) -> list[str]:
    """Sentences naming each committed document that disagrees with the code."""
    wanted = rendered() if wanted is None else wanted
    problems = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing (run `make asyncapi`)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{name}: differs from the code (run `make asyncapi` and commit it)")
    problems += [
        f"{stale.name}: no service has this name any more"
        for stale in directory.glob("*.json")
        if stale.name not in wanted
    ]
    return problems


def uncovered_events() -> list[str]:
    """Event types no documented topic carries (a new event needs its topic here)."""
    carried = {event.ce_type for events in TOPIC_EVENTS.values() for event in events}
    return sorted(event.ce_type for event in ALL_EVENTS if event.ce_type not in carried)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "check"
    directory = Path(args[1]) if len(args) > 1 else DEFAULT_DIR
    if command == "export":
        directory.mkdir(parents=True, exist_ok=True)
        wanted = rendered()
        for name, text in wanted.items():
            path = directory / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path}")
        for stale in directory.glob("*.json"):
            if stale.name not in wanted:
                stale.unlink()
                print(f"removed {stale}")
        return 0
    if command == "check":
        problems = differences(directory)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
