"""Document checklists of the partners that receive files (specs/partners.md, "prefecture-69").

The checklist in force is the partner directory's `required_documents` (data: the handlers pass
it in). `CHECKLISTS` is the specification's, used only for a partner the directory no longer
lists (a referral routed before the partner was removed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

NATURALISATION_CHECKLIST: tuple[str, ...] = (
    "id_card",
    "birth_certificate",
    "proof_of_address",
    "tax_notices",
    "language_diploma",
)

# A partner listed here receives the documents themselves: its file is not sent incomplete, and
# documents it asks for later are sent on. Badly filled files were the prefecture's first
# complaint: this check is the point of that partnership.
CHECKLISTS: Mapping[str, tuple[str, ...]] = {"prefecture-69": NATURALISATION_CHECKLIST}


def checklist_of(partner_id: str, checklist: Sequence[str] | None = None) -> tuple[str, ...]:
    """The documents a partner needs before a file is sent to it; empty when it needs none.

    `checklist`: the directory's `required_documents` for the partner (None: not listed).
    """
    return tuple(checklist) if checklist is not None else CHECKLISTS.get(partner_id, ())


def receives_documents(partner_id: str, checklist: Sequence[str] | None = None) -> bool:
    """True for a partner whose format carries the documents (documents it asks for go on)."""
    return bool(checklist_of(partner_id, checklist))


def missing_documents(
    *, partner_id: str, documents: Iterable[str], checklist: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The checklist documents of this partner not among `documents`, in checklist order."""
    held = set(documents)
    return tuple(code for code in checklist_of(partner_id, checklist) if code not in held)
