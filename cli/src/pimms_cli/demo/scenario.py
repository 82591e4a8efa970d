"""The morning: 19 situations across categories, postal codes, languages, channels, and every
partner's transport (Kafka feeds, a file drop, signed webhooks, partners declared by data), and
the closed loop: a partner that never answers chased to expiry on the platform's steered clock,
a naturalisation file held for its missing documents until the visitor brings them."""

from __future__ import annotations

from pimms_contracts.examples import need_submitted

from pimms_cli.demo.partners import edf, egl, orange, poste, prefecture, sncf
from pimms_cli.demo.story import (
    AddDocuments,
    CaseOutcome,
    Closes,
    DeadLettered,
    Garbage,
    Need,
    On,
    PartnerSays,
    ReferralStatus,
    Rejected,
    SameAnswer,
    SameNeedAs,
    StaysUnroutable,
    Story,
    Withdraw,
    WithdrawReason,
)

SMS = {"sms": True, "email": False}
MAIL = {"sms": False, "email": True}
NO_CHANNEL = {"sms": False, "email": False}
COMPLETED = ReferralStatus.COMPLETED
MISSING = ("tax_notices", "language_diploma")  # of the prefecture's checklist (specs/partners.md)


def morning() -> list[Story]:
    """The stories, in the order the desks send them (fresh submission ids on every call)."""
    return [
        Story(
            "Unpaid EDF bill, cut-off threatened (Lyon 8e, SMS, fr)",
            Need(need_submitted()),
            answers={
                "edf": (
                    edf("RECU"),
                    edf("PRIS_EN_CHARGE"),
                    edf("CLOS", resultat="SOLUTION_TROUVEE"),
                )
            },
            expect=Closes(CaseOutcome.RESOLVED, {"edf": COMPLETED}),
        ),
        Story("The same need sent twice by the desk tool", SameNeedAs(0), expect=SameAnswer()),
        Story(
            "Parcel lost for three weeks (Paris 11e, e-mail, en)",
            Need(
                need_submitted(
                    site_id="paris-11",
                    visitor__first_name="John",
                    visitor__last_name="Smith",
                    visitor__postal_code="75011",
                    visitor__preferred_language="en-GB",
                    visitor__email="john.smith@example.org",
                    visitor__contact_consent=MAIL,
                    need__category="postal_service",
                    need__urgency="normal",
                    need__summary="Colis non distribué depuis trois semaines",
                )
            ),
            answers={
                "la-poste": (poste("recue"), poste("acceptee"), poste("traitee", issue="favorable"))
            },
            expect=Closes(CaseOutcome.RESOLVED, {"la-poste": COMPLETED}),
        ),
        Story(
            "Energy debt, no solution found (Marseille 3e, SMS, ar)",
            Need(
                need_submitted(
                    site_id="marseille-3",
                    visitor__first_name="فاطمة",
                    visitor__last_name="بن علي",
                    visitor__postal_code="13003",
                    visitor__preferred_language="ar",
                    visitor__contact_consent=SMS,
                    need__urgency="normal",
                )
            ),
            answers={"edf": (edf("RECU"), edf("CLOS", resultat="SANS_SOLUTION"))},
            reactions=(On("closed", PartnerSays("edf", edf("RECU"))),),
            expect=Closes(
                CaseOutcome.NOT_RESOLVED,
                {"edf": COMPLETED},
                partner_dead_letters=("impossible_transition",),
            ),
        ),
        Story(
            "Registered letter refused, summary with < and & (Ajaccio 2A, SMS, fr)",
            Need(
                need_submitted(
                    site_id="ajaccio",
                    visitor__first_name="Łukasz",
                    visitor__last_name="Wójcik",
                    visitor__postal_code="20090",
                    need__category="postal_service",
                    need__urgency="low",
                    need__summary="Lettre recommandée <AR> refusée & renvoyée",
                )
            ),
            answers={"la-poste": (poste("recue"), poste("rejetee", motif="hors-perimetre"))},
            expect=Closes(CaseOutcome.NOT_RESOLVED, {"la-poste": ReferralStatus.REJECTED}),
        ),
        Story(
            "Housing rights question: no housing partner yet (Lyon 3e); solved at the desk",
            Need(
                need_submitted(
                    visitor__postal_code="69003",
                    need__category="housing_rights",
                    need__urgency="normal",
                )
            ),
            reactions=(On("unroutable", Withdraw(WithdrawReason.RESOLVED_AT_DESK)),),
            expect=Closes(CaseOutcome.WITHDRAWN),
        ),
        Story(
            "Water bill in Paris: Eau du Grand Lyon only serves Rhône (stays with the mediator)",
            Need(
                need_submitted(
                    site_id="paris-11",
                    visitor__postal_code="75020",
                    need__category="water_bill",
                    need__urgency="normal",
                )
            ),
            expect=StaysUnroutable(),
        ),
        Story(
            "Desk tool bug: phone typed with spaces, unknown category",
            Need(need_submitted(visitor__phone="06 12 34", need__category="cooking")),
            expect=Rejected(("invalid_format", "invalid_value")),
        ),
        Story(
            "Visitor did not agree to share the need",
            Need(need_submitted(consent_to_share=False)),
            expect=Rejected(("consent_missing",)),
        ),
        Story(
            "Electricity debt, visitor reachable by no channel (Saint-Denis, La Réunion)",
            Need(
                need_submitted(
                    site_id="saint-denis-reunion",
                    visitor__postal_code="97400",
                    visitor__contact_consent=NO_CHANNEL,
                    visitor__email=None,
                )
            ),
            answers={
                "edf": (edf("RECU"), edf("EN_COURS"), edf("CLOS", resultat="CLIENT_INJOIGNABLE"))
            },
            expect=Closes(CaseOutcome.NOT_RESOLVED, {"edf": COMPLETED}, visitor_unreachable=True),
        ),
        Story(
            "EDF payment plan, then the visitor withdraws (Lille, e-mail, fr)",
            Need(
                need_submitted(
                    site_id="lille-sud",
                    visitor__postal_code="59000",
                    visitor__contact_consent=MAIL,
                    need__urgency="normal",
                )
            ),
            answers={"edf": (edf("RECU"),)},
            reactions=(On("received", Withdraw(WithdrawReason.VISITOR_REQUEST)),),
            expect=Closes(CaseOutcome.WITHDRAWN, {"edf": ReferralStatus.CANCELLED}),
        ),
        Story(
            "Parcel held at the post office, visitor must bring ID (Brest, SMS, fr)",
            Need(
                need_submitted(
                    site_id="brest",
                    visitor__postal_code="29200",
                    need__category="postal_service",
                    need__urgency="normal",
                    need__summary="Colis en instance, pièce d'identité requise",
                )
            ),
            answers={
                "la-poste": (
                    poste("égarée"),
                    poste("recue"),
                    poste("attente-usager"),
                    poste("en-cours"),
                    poste("traitee", issue="favorable"),
                )
            },
            expect=Closes(
                CaseOutcome.RESOLVED,
                {"la-poste": COMPLETED},
                partner_dead_letters=("unknown_status",),
            ),
        ),
        Story(
            "Water bill, payment plan by file drop (Lyon 7e, SMS, fr; Eau du Grand Lyon CSV)",
            Need(
                need_submitted(
                    visitor__first_name="Zoë",
                    visitor__last_name='N\'Diaye; "Renée"',
                    visitor__postal_code="69007",
                    need__category="water_bill",
                    need__urgency="normal",
                    need__summary='=Facture d\'eau; relance "urgente" & coupure',
                )
            ),
            answers={"eau-grand-lyon": (egl("ACCEPTE"), egl("TRAITE", motif="RESOLU"))},
            expect=Closes(CaseOutcome.RESOLVED, {"eau-grand-lyon": COMPLETED}),
        ),
        Story(
            "Train refund refused (Villeurbanne, e-mail, fr; SNCF signed webhook)",
            Need(
                need_submitted(
                    visitor__postal_code="69100",
                    visitor__contact_consent=MAIL,
                    need__category="rail_travel",
                    need__urgency="normal",
                    need__summary="Remboursement refusé après une grève",
                )
            ),
            answers={
                "sncf": (sncf("received"), sncf("in_progress"), sncf("done", outcome="resolved"))
            },
            expect=Closes(CaseOutcome.RESOLVED, {"sncf": COMPLETED}),
        ),
        Story(
            "Phone line cut after a billing error (Nantes, SMS, fr; Orange, declared by data)",
            Need(
                need_submitted(
                    site_id="nantes-nord",
                    visitor__postal_code="44300",
                    need__category="telecom",
                    need__urgency="high",
                    need__summary="Ligne coupée suite à une erreur de facturation",
                )
            ),
            answers={"orange": (orange("RECUE"), orange("RESOLUE"))},
            expect=Closes(CaseOutcome.RESOLVED, {"orange": COMPLETED}),
        ),
        Story(
            "Micro-credit to repair a car (Roubaix, e-mail, fr; La Banque Postale webhook)",
            Need(
                need_submitted(
                    site_id="roubaix",
                    visitor__postal_code="59100",
                    visitor__contact_consent=MAIL,
                    need__category="micro_credit",
                    need__urgency="low",
                    need__summary="Micro-crédit pour réparer la voiture, trajet travail",
                )
            ),
            answers={
                "banque-postale": (
                    sncf("received"),
                    sncf("declined", reason="out_of_scope"),
                )
            },
            expect=Closes(CaseOutcome.NOT_RESOLVED, {"banque-postale": ReferralStatus.REJECTED}),
        ),
        Story(
            "EDF never answers: reminded, escalated, expired (Vénissieux, SMS, fr)",
            Need(
                need_submitted(
                    site_id="venissieux",
                    visitor__postal_code="69200",
                    need__urgency="normal",
                    need__summary="Facture d'électricité contestée, aucune nouvelle d'EDF",
                )
            ),
            expect=Closes(CaseOutcome.NOT_RESOLVED, {"edf": ReferralStatus.EXPIRED}),
        ),
        Story(
            "Naturalisation file lacking two documents: held, completed, sent (Vaulx, e-mail, en)",
            Need(
                need_submitted(
                    site_id="vaulx-en-velin",
                    visitor__postal_code="69120",
                    visitor__preferred_language="en",
                    visitor__contact_consent=MAIL,
                    need__category="naturalisation",
                    need__urgency="normal",
                    need__summary="Demande de naturalisation",
                    need__documents=["id_card", "birth_certificate", "proof_of_address"],
                )
            ),
            reactions=(On("on_hold", AddDocuments(MISSING)),),
            answers={
                "prefecture-69": (
                    prefecture("RECEPTIONNE"),
                    prefecture("INSTRUCTION"),
                    prefecture("DECISION_RENDUE"),
                )
            },
            expect=Closes(CaseOutcome.RESOLVED, {"prefecture-69": COMPLETED}, held_for=MISSING),
        ),
        Story(
            "A tool sends something that is not JSON",
            Garbage(b"<need>oops</need>"),
            expect=DeadLettered(),
        ),
    ]
