"""Topic names: the public ones are fixed in specs/, the internal ones are ours."""

from __future__ import annotations

# Public, fixed with front-office tools (specs/front-office.md).
INTAKE_NEEDS = "pimms.intake.needs.v1"
INTAKE_FEEDBACK = "pimms.intake.feedback.v1"
CASES = "pimms.cases.v1"
NOTIFICATIONS = "pimms.notifications.v1"

# Internal. INTAKE_CASES carries the visitor data partners and notifications need: never public.
INTAKE_CASES = "pimms.intake.cases.v1"
PARTNER_REPORTS = "pimms.partners.reports.v1"
REFERRAL_ALERTS = "pimms.referrals.alerts.v1"
# The mediators' assessments as intake recorded them (comment scrubbed), for the yearly review.
INTAKE_ASSESSMENTS = "pimms.intake.assessments.v1"

PUBLIC_TOPICS = (INTAKE_NEEDS, INTAKE_FEEDBACK, CASES, NOTIFICATIONS)
INTERNAL_TOPICS = (INTAKE_CASES, PARTNER_REPORTS, REFERRAL_ALERTS, INTAKE_ASSESSMENTS)


def dead_letters(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}.dlt"


def retries(topic: str) -> str:
    """The retry topic of `topic`."""
    return f"{topic}.retry"


def partner_referrals(partner_id: str) -> str:
    """The feed a Kafka partner reads its referrals from (specs/partners.md)."""
    return f"pimms.partner.{partner_id}.referrals.v1"


def partner_responses(partner_id: str) -> str:
    """The topic a Kafka partner publishes its answers to (specs/partners.md)."""
    return f"pimms.partner.{partner_id}.responses.v1"


def platform_topics(kafka_partner_ids: tuple[str, ...] = ()) -> list[str]:
    """Every topic the platform uses, dead letters included, for explicit creation."""
    main = [*PUBLIC_TOPICS, *INTERNAL_TOPICS]
    for partner_id in kafka_partner_ids:
        main += [partner_referrals(partner_id), partner_responses(partner_id)]
    consumed = [INTAKE_NEEDS, *(partner_responses(p) for p in kafka_partner_ids)]
    return main + [dead_letters(t) for t in consumed]


# Dead-letter headers (specs/front-office.md): support tools read these names.
DLT_REASON = "pimms_dlt_reason"
DLT_ERROR = "pimms_dlt_error"
DLT_SERVICE = "pimms_dlt_service"
DLT_ORIGINAL_TOPIC = "pimms_dlt_original_topic"
DLT_ORIGINAL_PARTITION = "pimms_dlt_original_partition"
DLT_ORIGINAL_OFFSET = "pimms_dlt_original_offset"
DLT_FAILED_AT = "pimms_dlt_failed_at"
DLT_HEADERS = (
    DLT_REASON,
    DLT_ERROR,
    DLT_SERVICE,
    DLT_ORIGINAL_TOPIC,
    DLT_ORIGINAL_PARTITION,
    DLT_ORIGINAL_OFFSET,
    DLT_FAILED_AT,
)
# Set by `pimms dead-letters replay` on a re-published message: the dead letter it comes from.
REPLAY_OF = "pimms_replay_of"
REPLAYED_AT = "pimms_replayed_at"
OPS_REPLAYS = "pimms.ops.replays.v1"
