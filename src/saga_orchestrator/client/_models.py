"""What the client's methods return: typed, read-only views of the API's JSON.

Fields this client does not know (a newer service) are kept in ``extra``, so an upgrade of the
service never breaks a client; times are timezone-aware ``datetime`` s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

__all__ = [
    "ENDED",
    "TERMINAL",
    "Accepted",
    "Event",
    "EventTypes",
    "Page",
    "Replayed",
    "Saga",
    "SagaStep",
    "SagaSteps",
    "SagaType",
    "StepType",
    "TypeVersion",
    "from_json",
]

TERMINAL = frozenset({"completed", "compensated", "cancelled", "timed_out"})
"""A saga with one of these statuses will not change again."""
ENDED = TERMINAL | {"compensation_failed", "failed"}
"""Terminal, or parked for an operator (it changes again only by an operator's action)."""

T = TypeVar("T")


def _many(cls: type[T]) -> Callable[[Any], tuple[T, ...]]:
    """A converter: a JSON list of objects as a tuple of ``cls`` (kept when already typed)."""

    def convert(items: Any) -> tuple[T, ...]:
        return tuple(i if isinstance(i, cls) else from_json(cls, i) for i in items or ())

    return convert


def _strings(items: Any) -> tuple[str, ...]:
    return tuple(items or ())


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
    error_type: str | None = None
    """The class of its last error (of its action, or of its compensation once that failed)."""
    error_frames: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    """The last frames of the step's own code's traceback, newest last."""
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
    trigger_event_id: str | None = None
    """The published event that started it, if one did."""
    deadline_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    version: int = 0
    """Transitions recorded so far: it grows with every change."""
    steps: tuple[SagaStep, ...] = attrs.field(default=(), converter=_many(SagaStep))
    created: bool | None = None
    """For a start: ``False`` when an earlier start with the same idempotency key made it."""
    waiting_for_definition: bool = False
    """Active, but no live instance drives it and the one that answered has not loaded its
    version: it waits for a process that has (``get`` only)."""
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
class SagaSteps:
    """A saga's steps in order (iterating over it gives them), with its status."""

    saga_id: str
    status: str
    items: tuple[SagaStep, ...] = attrs.field(default=(), converter=_many(SagaStep))
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    """The JSON as the service sent it."""

    def __iter__(self) -> Iterator[SagaStep]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> SagaStep:
        return self.items[index]


@attrs.frozen(kw_only=True)
class Accepted:
    """A command (cancel, an operator action) the service took; the saga goes on. With
    ``dry_run`` nothing was done: ``status`` is what the saga's would be, ``would_record`` the
    transitions the action would record."""

    saga_id: str
    status: str
    action: str | None = None
    dry_run: bool = False
    would_record: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    """The JSON as the service sent it."""


@attrs.frozen(kw_only=True)
class StepType:
    """A step of a saga type."""

    name: str
    has_compensation: bool = False
    timeout_seconds: float | None = None
    group: str | None = None
    """The parallel group the step belongs to; ``None`` for a plain step."""
    branch: int | None = None
    """Its branch in the group (from 0); ``None`` for a plain step."""
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class TypeVersion:
    """A version of a saga type: whether this service has it loaded, and how many active sagas
    run on it."""

    version: int
    loaded: bool = True
    active: int = 0
    steps: tuple[StepType, ...] = attrs.field(default=(), converter=_many(StepType))
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class SagaType:
    """A saga type the service runs."""

    name: str
    version: int = 1
    description: str = ""
    steps: tuple[StepType, ...] = attrs.field(default=(), converter=_many(StepType))
    triggers: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    """Event types that start a saga of this type."""
    input_schema: Mapping[str, Any] = attrs.field(factory=dict)
    versions: tuple[TypeVersion, ...] = attrs.field(default=(), converter=_many(TypeVersion))
    """Every version loaded here or with active sagas, oldest first (the fields above are the
    newest loaded one's)."""
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class EventTypes:
    """The event types the service knows: ``triggers`` maps each one that starts sagas to
    their types; ``seen`` are those in the store (saga transitions left out)."""

    triggers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    seen: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EventTypes:
        triggers = {t["event_type"]: tuple(t["saga_types"]) for t in body.get("triggers", ())}
        return cls(triggers=triggers, seen=body.get("seen", ()), raw=body)


@attrs.frozen(kw_only=True)
class Page(Generic[T]):
    """One page of a read: its ``items`` and where the next page starts (``next``: a cursor,
    version or position to pass back; ``None`` at the end)."""

    items: Sequence[T]
    next: Any = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    """The JSON as the service sent it."""


@attrs.frozen(kw_only=True)
class Replayed:
    """Events re-published to the bus: their ids, the bus stream they went to, and where to go
    on (``next``: a version of the stream, or a position; ``None`` at the end)."""

    event_ids: tuple[str, ...] = attrs.field(converter=_strings)
    bus_stream: str | None = None
    next: int | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return dt.datetime.fromisoformat(str(value))


def from_json(cls: type[T], body: Mapping[str, Any]) -> T:
    """``cls`` from an API body: known fields converted, the others kept in ``extra``."""
    fields = attrs.fields_dict(cls)  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in body.items():
        if name not in fields or name in ("extra", "raw"):
            extra[name] = value
        elif name.endswith("_at"):
            values[name] = _time(value)
        else:
            values[name] = value
    return cls(**values, extra=extra, raw=body)
