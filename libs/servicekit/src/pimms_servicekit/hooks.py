"""What to do once an effect has left (or could not): typed hooks run in their own transaction.

An outbox row may name a hook: a pydantic model (its data) whose class is registered with the
handlers of the two outcomes. When the effect is delivered (Kafka acked the message, a webhook
answered 2xx, the SMS provider took it), or has failed for good, the handler runs with the data, the
outcome and a unit of work, so it can record the fact and emit what follows, atomically.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from pimms_servicekit.logging import get_logger

if TYPE_CHECKING:
    from pimms_servicekit.unit_of_work import UnitOfWork

log = get_logger("pimms.hooks")

H = TypeVar("H", bound="Hook")
R = TypeVar("R")


class Hook(BaseModel):
    """The data a hook needs; subclasses set `name` (stable: it is stored in outbox rows)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an effect ended: delivered (with the receiver's reference) or failed (with a reason)."""

    delivered: bool
    at: datetime
    attempts: int = 1
    receipt: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HookCall:
    """A stored hook: its name, data, and the case journey it belongs to."""

    name: str
    data: dict[str, Any]
    case_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As stored in an outbox row."""
        return {
            "hook": self.name,
            "data": self.data,
            "case_id": self.case_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
        }

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> HookCall:
        """From an outbox row."""
        return cls(
            name=str(stored.get("hook", "")),
            data=dict(stored.get("data") or {}),
            case_id=stored.get("case_id"),
            correlation_id=stored.get("correlation_id"),
            causation_id=stored.get("causation_id"),
        )


HookHandler = Callable[[Any, Outcome, "UnitOfWork[Any]"], Awaitable[None]]
# Run once before a round of hooks of one model, with every (data, outcome) of the round: one
# statement for the round instead of one per effect (a relay round is up to hundreds of rows).
RoundHandler = Callable[[list[tuple[Any, Outcome]], "UnitOfWork[Any]"], Awaitable[None]]


class Hooks(Generic[R]):
    """The service's hook handlers.

    `@hooks.delivered(DeliveryHook) async def f(data, outcome, uow)`, and `@hooks.failed(...)`.
    `@hooks.before_delivered(DeliveryHook) async def g(items, uow)` runs once before a round of
    delivered hooks of that model (to prepare their statements in bulk); each hook still runs.
    """

    def __init__(self) -> None:
        self._models: dict[str, type[Hook]] = {}
        self._delivered: dict[str, HookHandler] = {}
        self._failed: dict[str, HookHandler] = {}
        self._before_delivered: dict[str, RoundHandler] = {}

    def delivered(self, model: type[H]) -> Callable[[Any], Any]:
        """Register the handler run when an effect carrying `model` was delivered."""
        return self._register(model, self._delivered)

    def failed(self, model: type[H]) -> Callable[[Any], Any]:
        """Register the handler run when an effect carrying `model` failed for good."""
        return self._register(model, self._failed)

    def before_delivered(self, model: type[H]) -> Callable[[Any], Any]:
        """Register the handler run once before a round of delivered hooks carrying `model`."""
        return self._register(model, self._before_delivered)

    def _register(self, model: type[Hook], table: dict[str, Any]) -> Callable[[Any], Any]:
        def register(handler: Any) -> Any:
            known = self._models.setdefault(model.name, model)
            if known is not model:
                raise ValueError(f"two hook models are named {model.name!r}")
            table[model.name] = handler
            return handler

        return register

    async def run_round(
        self, calls: Sequence[tuple[HookCall, Outcome]], uow: UnitOfWork[Any]
    ) -> None:
        """Run the hooks of a round (a relay batch, a dispatcher round) in order, after their
        models' `before_delivered` handlers; each hook's data is validated once."""
        validated = [
            (call, self._data(call) if self._wanted(call, outcome) else None, outcome)
            for call, outcome in calls
        ]
        rounds: dict[str, list[tuple[Any, Outcome]]] = {}
        for call, data, outcome in validated:
            if outcome.delivered and data is not None and call.name in self._before_delivered:
                rounds.setdefault(call.name, []).append((data, outcome))
        for name, items in rounds.items():
            uow.begin_hook(case_id=None, correlation_id=None)
            try:
                await self._before_delivered[name](items, uow)
            finally:
                uow.end_message()
        for call, data, outcome in validated:
            await self._run(call, data, outcome, uow)

    async def run(self, call: HookCall, outcome: Outcome, uow: UnitOfWork[Any]) -> None:
        """Run the handler of this outcome, if any, inside `uow`."""
        data = self._data(call) if self._wanted(call, outcome) else None
        await self._run(call, data, outcome, uow)

    def _wanted(self, call: HookCall, outcome: Outcome) -> bool:
        """Whether anything runs for this call (an unknown name is still reported by `_data`)."""
        table = self._delivered if outcome.delivered else self._failed
        known = call.name in self._models
        first = outcome.delivered and call.name in self._before_delivered
        return not known or call.name in table or first

    def _data(self, call: HookCall) -> Hook | None:
        """The hook's data as its model, or None (logged) when no model has that name."""
        model = self._models.get(call.name)
        if model is None:
            log.error("hook.unknown", hook=call.name)
            return None
        return model.model_validate(call.data)

    async def _run(
        self, call: HookCall, data: Hook | None, outcome: Outcome, uow: UnitOfWork[Any]
    ) -> None:
        handler = (self._delivered if outcome.delivered else self._failed).get(call.name)
        if handler is None or data is None:
            return
        uow.begin_hook(
            case_id=call.case_id,
            correlation_id=call.correlation_id,
            causation_id=call.causation_id,
        )
        try:
            await handler(data, outcome, uow)
        finally:
            uow.end_message()
