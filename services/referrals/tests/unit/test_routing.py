"""Départements from postal codes, and which partners a need goes to."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pimms_contracts.partners import PartnerDirectory, load_directory
from pimms_referrals.domain.routing import departement_of, route_need


@pytest.mark.parametrize(
    ("postal_code", "departement"),
    [
        ("69008", "69"),
        ("75001", "75"),
        ("01000", "01"),
        ("20000", "2A"),  # Ajaccio
        ("20199", "2A"),  # last code of Corse-du-Sud
        ("20200", "2B"),  # Bastia: first code of Haute-Corse
        ("20620", "2B"),
        ("97400", "974"),  # La Réunion
        ("97100", "971"),  # Guadeloupe
        ("98800", "988"),  # Nouvelle-Calédonie
        ("96000", "96"),
    ],
)
def test_departement_of_a_postal_code(postal_code: str, departement: str) -> None:
    assert departement_of(postal_code) == departement


@pytest.mark.parametrize("postal_code", ["6900", "690081", "2A004", "", "69 08"])
def test_only_five_digits_make_a_postal_code(postal_code: str) -> None:
    with pytest.raises(ValueError, match="five digits"):
        departement_of(postal_code)


def partners(*entries: dict[str, object]) -> PartnerDirectory:
    base = {
        "operator": "Operator",
        "format": "json",
        "ack_within": "1d",
        "resolve_within": "10d",
        "transport": {"kind": "kafka"},
    }
    return PartnerDirectory.model_validate({"partners": [{**base, **e} for e in entries]})


@pytest.fixture(scope="module")
def default_directory() -> PartnerDirectory:
    return load_directory()


@pytest.mark.parametrize(
    ("category", "postal_code", "expected"),
    [
        ("energy_bill", "69008", ["edf"]),
        ("energy_bill", "75001", ["edf"]),
        ("energy_bill", "20000", ["edf"]),
        ("water_bill", "69008", ["eau-grand-lyon"]),
        ("water_bill", "75001", []),
        ("naturalisation", "69003", ["prefecture-69"]),
        ("naturalisation", "75001", []),
        ("postal_service", "97400", ["la-poste"]),
        ("rail_travel", "01000", ["sncf"]),
        ("housing_rights", "69008", []),
    ],
)
def test_routing_with_the_packaged_directory(
    default_directory: PartnerDirectory, category: str, postal_code: str, expected: list[str]
) -> None:
    routing = route_need(default_directory, category=category, postal_code=postal_code)
    assert [p.partner_id for p in routing.partners] == expected
    assert routing.unroutable == (expected == [])


def test_the_partners_delays_come_with_the_routing(default_directory: PartnerDirectory) -> None:
    routing = route_need(default_directory, category="energy_bill", postal_code="69008")
    [edf] = routing.partners
    assert edf.ack_within == timedelta(hours=48)
    assert edf.resolve_within == timedelta(days=15)
    assert routing.departement == "69"


def test_every_matching_partner_in_directory_order() -> None:
    directory = partners(
        {"id": "second-energy", "categories": ["energy_bill"], "territory": ["69"]},
        {"id": "water", "categories": ["water_bill"], "territory": "all"},
        {"id": "national-energy", "categories": ["energy_bill", "telecom"], "territory": "all"},
    )
    routing = route_need(directory, category="energy_bill", postal_code="69001")
    assert [p.partner_id for p in routing.partners] == ["second-energy", "national-energy"]
    routing = route_need(directory, category="energy_bill", postal_code="75001")
    assert [p.partner_id for p in routing.partners] == ["national-energy"]


def test_corsica_and_overseas_territories() -> None:
    directory = partners(
        {"id": "south-corsica", "categories": ["banking"], "territory": ["2A"]},
        {"id": "reunion", "categories": ["banking"], "territory": ["974"]},
    )
    assert [
        p.partner_id
        for p in route_need(directory, category="banking", postal_code="20090").partners
    ] == ["south-corsica"]
    assert route_need(directory, category="banking", postal_code="20290").unroutable
    assert [
        p.partner_id
        for p in route_need(directory, category="banking", postal_code="97410").partners
    ] == ["reunion"]
    assert route_need(directory, category="banking", postal_code="97100").unroutable


def test_no_match_is_unroutable_with_the_departement() -> None:
    routing = route_need(partners(), category="other", postal_code="20620")
    assert routing.unroutable
    assert routing.departement == "2B"
