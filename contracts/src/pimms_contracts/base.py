"""Base classes for every contract model."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """An immutable value that rejects unknown fields, validated strictly."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Event(FrozenModel):
    """The data of one CloudEvents event; `ce_type` names it, with its major version."""

    ce_type: ClassVar[str]
