"""Which partners a need goes to: département from the postal code, then the partner directory."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from pimms_contracts.partners import Partner, PartnerDirectory

_POSTAL_CODE = re.compile(r"^[0-9]{5}$")
_CORSICA_SOUTH_BELOW = 20200  # 20000-20199: Corse-du-Sud (2A); 20200 and up: Haute-Corse (2B)


def departement_of(postal_code: str) -> str:
    """The département of a French postal code: `69008` -> `69`, `20000` -> `2A`, `97400` -> `974`.

    Corsica (`20xxx`) is `2A` below 20200 and `2B` from there; overseas (`97x`, `98x`) keeps three
    digits. Raise ValueError for anything but five digits.
    """
    if not _POSTAL_CODE.match(postal_code):
        raise ValueError("a French postal code has five digits")
    if postal_code.startswith("20"):
        return "2A" if int(postal_code) < _CORSICA_SOUTH_BELOW else "2B"
    if postal_code.startswith(("97", "98")):
        return postal_code[:3]
    return postal_code[:2]


@dataclass(frozen=True)
class RoutedPartner:
    """A partner a need is routed to, with the delays it agreed to (kept on the referral)."""

    partner_id: str
    ack_within: timedelta
    resolve_within: timedelta
    required_documents: tuple[str, ...] = ()
    """What a file must hold before it is sent to this partner (the directory's checklist)."""


@dataclass(frozen=True)
class Routing:
    """Where a need goes; no partner means unroutable (the mediator handles it by hand)."""

    departement: str
    partners: tuple[RoutedPartner, ...]

    @property
    def unroutable(self) -> bool:
        """True when no partner serves this need."""
        return not self.partners


def route_need(directory: PartnerDirectory, *, category: str, postal_code: str) -> Routing:
    """Every partner serving this category in the visitor's département, in directory order."""
    departement = departement_of(postal_code)
    serving: Sequence[Partner] = directory.serving(category=category, departement=departement)
    return Routing(
        departement=departement,
        partners=tuple(
            RoutedPartner(
                partner_id=p.id,
                ack_within=p.ack_within,
                resolve_within=p.resolve_within,
                required_documents=tuple(p.required_documents),
            )
            for p in serving
        ),
    )
