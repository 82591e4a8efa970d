"""Reading `pimms.intake.needs.v1`: what cannot be tied to a submission id goes to dead letters.

A message tied to a submission id but invalid decodes to `Invalid`, so that the tool is told why.
"""

from __future__ import annotations

from typing import Any

from pimms_contracts.base import Event
from pimms_contracts.envelope import EnvelopeError
from pimms_contracts.v1.frontoffice import FRONT_OFFICE_INPUTS, ReferralAssessed
from pimms_servicekit.messages import BadMessage, Incoming, parse_json, read_envelope
from pimms_servicekit.routing import Decoded

from pimms_intake.domain.validation import Invalid, validate

_MAX_SUBMISSION_ID = 100

# Everything a tool may send on pimms.intake.needs.v1, the mediator's assessment included.
INPUTS: dict[str, type[Event]] = {**FRONT_OFFICE_INPUTS, ReferralAssessed.ce_type: ReferralAssessed}


class FrontOfficeDecoder:
    """need.submitted, documents_added, withdrawn and referral.assessed, each answered on the
    feedback topic."""

    def __call__(self, incoming: Incoming) -> Decoded[Any]:
        """The validated command, or the reasons it is invalid; BadMessage when it has no id."""
        event_type = incoming.event_type
        data = parse_json(incoming.value)
        if not isinstance(data, dict):
            raise BadMessage("no_submission_id", "the value is JSON but not an object")
        submission_id = data.get("submission_id")
        if not isinstance(submission_id, str) or not submission_id.strip():
            raise BadMessage("no_submission_id", "the message has no submission_id to answer to")
        if len(submission_id) > _MAX_SUBMISSION_ID:
            raise BadMessage("no_submission_id", "the submission_id is too long to be one")
        model = INPUTS.get(event_type or "")
        if model is None:
            raise BadMessage(
                "unknown_type",
                f"ce_type {event_type!r} is not one of {', '.join(sorted(INPUTS))}",
            )
        try:
            envelope = read_envelope(incoming)
        except (BadMessage, EnvelopeError):
            envelope = None  # tools may omit optional attributes; the type header is what matters
        checked = validate(model, incoming.value or b"")
        payload: Any = (
            Invalid(submission_id=submission_id, errors=checked)
            if isinstance(checked, tuple)
            else checked
        )
        return Decoded(payload=payload, envelope=envelope, event_type=event_type)
