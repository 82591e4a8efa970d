"""Event contracts shared by every PIMMS service: models, envelope, topics, partner directory."""

from pimms_contracts.base import Event, FrozenModel
from pimms_contracts.envelope import Envelope

__all__ = ["Envelope", "Event", "FrozenModel"]
