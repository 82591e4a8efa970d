"""What a service reads and who handles it: a decoder per topic, a handler per payload type.

A decoder turns a record into its meaning (pure; `BadMessage` names what is wrong). The handler of
that meaning is found by its type in the service's `Handlers`, where each use case registers with
`@handles(SomeEvent)`. Handlers receive the payload and the batch's unit of work, nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pimms_contracts.base import Event
from pimms_contracts.envelope import H_TYPE, Envelope

from pimms_servicekit.messages import Incoming, decode

if TYPE_CHECKING:
    from pimms_servicekit.unit_of_work import UnitOfWork

R = TypeVar("R")
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Decoded(Generic[P]):
    """A message a decoder understood: its payload, envelope and the case it is about."""

    payload: P
    envelope: Envelope | None = None
    case_id: str | None = None
    event_type: str | None = None


class Decoder(Protocol):
    """How one topic is read: the meaning of a record, or None when it is not for this service."""

    def __call__(self, incoming: Incoming) -> Decoded[Any] | None:
        """Raise BadMessage when the record cannot be understood."""
        ...


Handler = Callable[[Any, "UnitOfWork[Any]"], Awaitable[None]]


class Handlers(Generic[R]):
    """A service's use cases by payload type: `@handles(NeedSubmitted) async def f(need, uow)`."""

    def __init__(self) -> None:
        self._by_type: dict[type, Handler] = {}

    def __call__(self, *payload_types: type) -> Callable[[Any], Any]:
        """Register the decorated coroutine for these payload types."""

        def register(handler: Any) -> Any:
            for payload_type in payload_types:
                if payload_type in self._by_type:
                    raise ValueError(f"{payload_type.__name__} is handled twice")
                self._by_type[payload_type] = handler
            return handler

        return register

    def handler_for(self, payload: object) -> Handler | None:
        """The handler of this payload's type (or of its nearest registered base class)."""
        for cls in type(payload).__mro__:
            handler = self._by_type.get(cls)
            if handler is not None:
                return handler
        return None

    @property
    def payload_types(self) -> tuple[type, ...]:
        """Every registered payload type."""
        return tuple(self._by_type)


class EventDecoder:
    """A topic of platform events: these types are decoded, the others are not this service's."""

    def __init__(self, *models: type[Event]) -> None:
        self._registry: dict[str, type[Event]] = {m.ce_type: m for m in models}

    def __call__(self, incoming: Incoming) -> Decoded[Any] | None:
        """Decode the event types this service handles; ignore the others."""
        event_type = incoming.header(H_TYPE)
        if event_type is not None and event_type not in self._registry:
            return None
        envelope, event = decode(incoming, self._registry)
        case_id = getattr(event, "case_id", None)
        return Decoded(
            payload=event,
            envelope=envelope,
            case_id=str(case_id) if case_id is not None else None,
            event_type=envelope.type,
        )
