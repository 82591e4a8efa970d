"""Example messages, as in specs/front-office.md: for tests, the demo and documentation."""

from __future__ import annotations

import copy
import uuid
from typing import Any

_NEED: dict[str, Any] = {
    "submission_id": "0b9c1f3e-6a53-4f3e-9a55-7d2f4e0c9a11",
    "site_id": "lyon-8",
    "mediator_id": "m-042",
    "submitted_at": "2026-11-27T09:30:00+01:00",
    "channel": "front_desk",
    "visitor": {
        "first_name": "Marie",
        "last_name": "Dupont",
        "phone": "+33612345678",
        "email": "marie.dupont@example.org",
        "postal_code": "69008",
        "preferred_language": "fr",
        "contact_consent": {"sms": True, "email": False},
    },
    "need": {
        "category": "energy_bill",
        "summary": "Facture impayée, risque de coupure avant la fin du mois",
        "urgency": "high",
        "documents": ["id_card", "last_bill"],
    },
    "consent_to_share": True,
}


def need_submitted(*, new_id: bool = True, **changes: Any) -> dict[str, Any]:
    """The contract's example need; `visitor__phone=None` style keys change nested fields."""
    data = copy.deepcopy(_NEED)
    if new_id:
        data["submission_id"] = str(uuid.uuid4())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return data


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


_DELETE: Any = _Delete()
DELETE: Any = _DELETE
"""Pass as a value to remove the field: `need_submitted(consent_to_share=DELETE)`."""
