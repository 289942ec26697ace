"""What the client's methods return: typed, read-only views of the API's JSON.

Fields this client does not know (a newer service) are kept in ``extra``, so an upgrade of the
service never breaks a client; times are timezone-aware ``datetime`` s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

__all__ = ["ENDED", "TERMINAL", "Accepted", "Event", "Saga", "SagaStep", "from_json"]

TERMINAL = frozenset({"completed", "compensated", "cancelled", "timed_out"})
"""A saga with one of these statuses will not change again."""
ENDED = TERMINAL | {"compensation_failed", "failed"}
"""Terminal, or parked for an operator (it changes again only by an operator's action)."""

T = TypeVar("T")


@attrs.frozen(kw_only=True)
class SagaStep:
    """One step of a saga."""

    name: str
    index: int = 0
    status: str = "pending"
    attempts: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    result: Any = None
    error: str | None = None
    compensation_status: str = "not_run"
    compensation_attempts: int = 0
    compensation_error: str | None = None
    group: str | None = None
    """The parallel group the step belongs to; ``None`` for a plain step."""
    branch: int | None = None
    """Its branch in the group (from 0); ``None`` for a plain step."""
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    """The JSON as the service sent it."""


@attrs.frozen(kw_only=True)
class Saga:
    """A saga as the service shows it (``steps`` is empty in lists)."""

    saga_id: str
    status: str
    saga_type: str = ""
    saga_version: int = 1
    current_step: str | None = None
    input: Mapping[str, Any] = attrs.field(factory=dict)
    result: Mapping[str, Any] | None = None
    error: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    deadline_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    version: int = 0
    """Transitions recorded so far: it grows with every change."""
    steps: tuple[SagaStep, ...] = ()
    created: bool | None = None
    """For a start: ``False`` when an earlier start with the same idempotency key made it."""
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    """The JSON as the service sent it."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def ended(self) -> bool:
        """Terminal or parked."""
        return self.status in ENDED


@attrs.frozen(kw_only=True)
class Event:
    """A stored domain event (or a saga's transition)."""

    event_id: str
    type: str
    data: Mapping[str, Any] = attrs.field(factory=dict)
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    position: int = 0
    version: int = 0
    stream_id: str | None = None
    recorded_at: dt.datetime | None = None
    created: bool | None = None
    """For a publish: ``False`` when an earlier publish with the same ``event_id`` stored it."""
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    """The JSON as the service sent it."""


@attrs.frozen(kw_only=True)
class Accepted:
    """A command (cancel, an operator action) the service took; the saga goes on."""

    saga_id: str
    status: str
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    """The JSON as the service sent it."""


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return dt.datetime.fromisoformat(str(value))


_NESTED: dict[str, Any] = {"steps": lambda items: tuple(from_json(SagaStep, i) for i in items)}


def from_json(cls: type[T], body: Mapping[str, Any]) -> T:
    """``cls`` from an API body: known fields converted, the others kept in ``extra``."""
    fields = attrs.fields_dict(cls)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in body.items():
        if name not in fields or name in ("extra", "raw"):
            extra[name] = value
        elif name in _NESTED:
            values[name] = _NESTED[name](value or ())
        elif name.endswith("_at"):
            values[name] = _time(value)
        else:
            values[name] = value
    return cls(**values, extra=extra, raw=body)
