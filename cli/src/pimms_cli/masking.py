"""Personal data masked out of a payload before anyone reads it on a support terminal.

JSON values and XML elements or attributes are masked by name (names, phones, e-mails, postal
codes, summaries and other free text, in the platform's and the partners' words); every other
string is scrubbed of anything that looks like an e-mail address or a phone number. A payload that
is neither JSON nor XML is shown as its shape only: letters and digits replaced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, tostring

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException
from pimms_servicekit.logging import scrub_text

MASK = "[masked]"

_PERSONAL = frozenset(
    {
        # the platform's words (specs/front-office.md)
        "firstname",
        "lastname",
        "name",
        "fullname",
        "phone",
        "email",
        "postalcode",
        "address",
        "summary",
        "description",
        "comment",
        "text",
        "freetext",
        "note",
        "notes",
        "birthdate",
        # partners' words (specs/partners.md)
        "nom",
        "prenom",
        "telephone",
        "tel",
        "mobile",
        "mail",
        "courriel",
        "codepostal",
        "adresse",
        "commentaire",
        "objet",
        "datenaissance",
    }
)


def is_personal(name: str) -> bool:
    """True for a field name that holds personal data or free text, whatever its spelling."""
    local = name.rsplit("}", 1)[-1]  # an XML name without its namespace
    return re.sub(r"[^a-z]", "", local.lower()) in _PERSONAL


def mask_json(value: Any, key: str | None = None) -> Any:
    """A copy of a JSON value with personal values masked (the structure is kept)."""
    if isinstance(value, dict):
        return {k: mask_json(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(v, key) for v in value]
    if key is not None and is_personal(key) and value not in (None, "", True, False):
        return MASK
    if isinstance(value, str):
        return scrub_text(value)
    return value


def mask_xml(root: Element) -> Element:
    """The same tree, personal elements' text and attributes masked, other text scrubbed."""
    for element in root.iter():
        personal = is_personal(str(element.tag))
        if element.text and element.text.strip():
            element.text = MASK if personal else scrub_text(element.text)
        if element.tail and element.tail.strip():
            element.tail = scrub_text(element.tail)
        for name, text in element.attrib.items():
            element.set(name, MASK if is_personal(name) else scrub_text(text))
    return root


def shape(text: str, *, limit: int = 500) -> str:
    """Only the shape of unknown text: letters become `x`, digits `0`, punctuation stays."""
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return re.sub(r"\d", "0", re.sub(r"[^\W\d_]", "x", cut))


@dataclass(frozen=True)
class MaskedPayload:
    """A payload fit for a support terminal."""

    kind: str  # "json", "xml", "text" (shape only) or "empty"
    text: str


def mask_payload(value: bytes | None) -> MaskedPayload:
    """Parse `value` as JSON, else XML (safely), and mask it; else show its shape only."""
    if not value:
        return MaskedPayload("empty", "")
    try:
        data = json.loads(value)
    except ValueError:
        pass
    else:
        return MaskedPayload("json", json.dumps(mask_json(data), ensure_ascii=False, indent=2))
    try:
        root = ElementTree.fromstring(value)
    except (ElementTree.ParseError, DefusedXmlException, ValueError):
        return MaskedPayload("text", shape(value.decode("utf-8", errors="replace")))
    return MaskedPayload("xml", tostring(_local_names(mask_xml(root)), encoding="unicode"))


def _local_names(root: Element) -> Element:
    """Namespace written once on the root, as partners write it, instead of `ns0:` prefixes."""
    namespace = None
    for element in root.iter():
        tag = str(element.tag)
        if tag.startswith("{"):
            namespace, element.tag = tag[1:].split("}", 1)
    if namespace:
        root.set("xmlns", namespace)
    return root
