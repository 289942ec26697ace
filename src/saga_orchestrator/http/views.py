"""The shapes of the API: every request body, query and response body is a class here.

The handlers build their answers from these classes (:func:`to_json`), check requests against
them (:mod:`.validate`), and the OpenAPI document (:mod:`.openapi`) describes them (:mod:`.schema`):
one source, so the document cannot drift from what the service does.

Response classes give no field a default, except the ones left out when ``None``
(``omit_if_none``): every other key is always there, so the document marks it required.
Request classes give a default to every optional field.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from saga_orchestrator.coordinator.state import CompensationStatus, SagaStatus, StepStatus

from .schema import api_field, constraints

__all__ = [
    "MAX_INT64",
    "MAX_TEXT",
    "to_json",
]

MAX_TEXT = 255
"""Most characters of a name, key or id in a request."""
MAX_INT64 = 2**63 - 1
"""Largest version or position (the stores keep them as 64-bit integers)."""
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
NO_CONTROL_MESSAGE = "must not contain control characters"
TOKEN = r"^[^\s\x00-\x1f\x7f]+$"
TOKEN_MESSAGE = "must not contain spaces or control characters"
_TIME = "ISO-8601 time in UTC (`2024-05-01T12:00:00.123456Z`)"


def _text(doc: str, **kwargs: Any) -> Any:
    """A string of 1 to 255 characters without control characters."""
    kwargs.setdefault("pattern", NO_CONTROL)
    kwargs.setdefault("pattern_message", NO_CONTROL_MESSAGE)
    return api_field(doc=doc, min_length=1, max_length=MAX_TEXT, **kwargs)


def _token(doc: str, **kwargs: Any) -> Any:
    """A string of 1 to 255 characters without spaces or control characters."""
    return _text(doc, pattern=TOKEN, pattern_message=TOKEN_MESSAGE, **kwargs)


def _count(doc: str, *, minimum: int, maximum: int = MAX_INT64, **kwargs: Any) -> Any:
    return api_field(doc=doc, minimum=minimum, maximum=maximum, **kwargs)


def _time(doc: str, **kwargs: Any) -> Any:
    return api_field(doc=f"{doc}: {_TIME}", format="date-time", **kwargs)


def to_json(value: Any) -> Any:
    """An instance of these classes as JSON-ready dicts and lists (``omit_if_none`` fields that
    are ``None`` left out); anything else unchanged."""
    if attrs.has(type(value)):
        return attrs.asdict(value, filter=_kept)
    return value


def _kept(field: attrs.Attribute[Any], value: Any) -> bool:
    return value is not None or not constraints(field).omit_if_none


# =============================================================================================
# Errors


@attrs.frozen(kw_only=True)
class FieldError:
    """One bad field of a request body (or parameter of a query)."""

    field: str = api_field(
        doc="The field: dotted for a nested one (`data.name`), `body` for the whole body."
    )
    message: str = api_field(doc="What is wrong with it.")


@attrs.frozen(kw_only=True)
class ErrorDetail:
    """What went wrong."""

    code: str = api_field(doc="A stable snake_case code: see the description of each status.")
    message: str = api_field(doc="For people; a fixed text for server errors.")
    details: list[FieldError] = api_field(doc="Each bad field; empty when none is to blame.")
    available_types: list[str] | None = api_field(
        default=None, omit_if_none=True, doc="With `unknown_saga_type`: the saga types there are."
    )


@attrs.frozen(kw_only=True)
class ErrorBody:
    """The body of every error response."""

    error: ErrorDetail


# =============================================================================================
# Saga requests


@attrs.frozen(kw_only=True)
class StartSagaRequest:
    """Start a saga."""

    saga_type: str = api_field(
        doc="A type of `GET /sagas/types/available`.", min_length=1, max_length=MAX_TEXT
    )
    data: dict[str, Any] = api_field(doc="The saga's input, checked against its type's schema.")
    idempotency_key: str | None = _text(
        "A start with a key already used for this saga type returns that saga (200).",
        default=None,
    )
    correlation_id: str | None = _text(
        "Kept with the saga and given to its steps; default: the request's X-Correlation-ID.",
        default=None,
    )


@attrs.frozen(kw_only=True)
class CancelRequest:
    """Cancel a saga (the body is optional)."""

    reason: str | None = _text("Recorded as the saga's error.", default=None)


@attrs.frozen(kw_only=True)
class ListSagasQuery:
    """Filters and paging of the saga list."""

    status: SagaStatus | None = api_field(default=None, doc="Only sagas with this status.")
    saga_type: str | None = api_field(
        default=None, min_length=1, max_length=MAX_TEXT, doc="Only sagas of this type."
    )
    created_after: str | None = api_field(
        default=None,
        max_length=64,
        doc="Only sagas created after this time: ISO-8601 (UTC without an offset) or seconds "
        "since the epoch.",
    )
    created_before: str | None = api_field(
        default=None, max_length=64, doc="Only sagas created before this time, as above."
    )
    limit: int = _count("Most sagas in the page.", minimum=1, maximum=500, default=50)
    cursor: str | None = api_field(
        default=None, max_length=1024, doc="The `next_cursor` of the previous page."
    )


@attrs.frozen(kw_only=True)
class SagaEventsQuery:
    """A page of a saga's transitions."""

    from_version: int = _count("The first version to read.", minimum=1, default=1)
    limit: int = _count("Most transitions in the page.", minimum=1, maximum=1000, default=1000)


# =============================================================================================
# Saga responses


@attrs.frozen(kw_only=True)
class StepView:
    """One step of a saga."""

    index: int
    name: str
    status: StepStatus
    attempts: int
    started_at: str | None = _time("When its last attempt started")
    finished_at: str | None = _time("When it finished")
    result: Any = api_field(doc="What the step returned.")
    error: str | None = api_field(doc="Why it failed.")
    compensation_status: CompensationStatus
    compensation_attempts: int
    compensation_error: str | None


@attrs.frozen(kw_only=True)
class SagaSummary:
    """A saga without its steps (in lists)."""

    saga_id: str = api_field(format="uuid")
    saga_type: str
    saga_version: int
    status: SagaStatus
    current_step: str | None = api_field(doc="The step running or compensating.")
    input: dict[str, Any]
    result: dict[str, Any] | None = api_field(doc="Each completed step's result, by step name.")
    error: str | None
    idempotency_key: str | None
    correlation_id: str | None
    deadline_at: str = _time("When the saga times out")
    created_at: str = _time("When it was started")
    updated_at: str = _time("When it last changed")
    version: int = api_field(doc="Transitions recorded so far.")


@attrs.frozen(kw_only=True)
class SagaView(SagaSummary):
    """A saga with its steps."""

    steps: list[StepView]


@attrs.frozen(kw_only=True)
class StartedSaga(SagaView):
    """The saga a start made, or found by its idempotency key."""

    created: bool = api_field(doc="`false`: an earlier start with the same key made it.")


@attrs.frozen(kw_only=True)
class SagaPage:
    """A page of sagas, newest first."""

    items: list[SagaSummary]
    next_cursor: str | None = api_field(doc="The `cursor` of the next page; null on the last.")


@attrs.frozen(kw_only=True)
class SagaSteps:
    """A saga's steps."""

    saga_id: str = api_field(format="uuid")
    status: SagaStatus
    items: list[StepView]


@attrs.frozen(kw_only=True)
class EventView:
    """A recorded event."""

    position: int = api_field(doc="Global position, increasing in commit order.")
    version: int = api_field(doc="Version in its stream, from 1.")
    event_id: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str = _time("When it was recorded")


@attrs.frozen(kw_only=True)
class SagaEvents:
    """A page of a saga's transitions, oldest first."""

    saga_id: str = api_field(format="uuid")
    items: list[EventView]
    next_from_version: int | None = api_field(doc="Where the next page starts; null at the end.")


@attrs.frozen(kw_only=True)
class StepType:
    """A step of a saga type."""

    name: str
    has_compensation: bool
    timeout_seconds: float | None


@attrs.frozen(kw_only=True)
class SagaType:
    """A saga type the service runs."""

    name: str
    version: int
    description: str
    steps: list[StepType]
    triggers: list[str] = api_field(doc="Event types that start a saga of this type.")
    input_schema: dict[str, Any] = api_field(doc="JSON schema of the saga's `data`.")


@attrs.frozen(kw_only=True)
class SagaTypes:
    """The saga types, by name."""

    items: list[SagaType]


@attrs.frozen(kw_only=True)
class CommandAccepted:
    """A cancel or retry was accepted; the saga goes on in the background."""

    saga_id: str = api_field(format="uuid")
    status: SagaStatus


# =============================================================================================
# Event requests


@attrs.frozen(kw_only=True)
class PublishRequest:
    """Publish a domain event."""

    event_type: str = _token("The event's type, e.g. `user.registered`.")
    stream_id: str = _token("Its stream; not one starting with `saga-` (saga transitions).")
    data: dict[str, Any]
    metadata: dict[str, Any] | None = api_field(
        default=None, doc="Stored with the event; `correlation_id` is added from the request."
    )
    expected_version: int | None = _count(
        "The stream's current version: 409 when it is not (0: a new stream).",
        minimum=0,
        default=None,
    )
    event_id: str | None = _token(
        "A repeat with the same id returns the stored event (200); default: a new id.",
        default=None,
    )


@attrs.frozen(kw_only=True)
class ReplayRequest:
    """Re-publish a stream (``stream_id``, ``from_version``) or a range of positions
    (``after_position``, ``to_position``, ``event_type``) to the bus."""

    stream_id: str | None = _token("The stream to replay.", default=None)
    from_version: int | None = _count(
        "With `stream_id`: the first version (default 1).", minimum=1, default=None
    )
    after_position: int | None = _count(
        "Without `stream_id`: replay events after this position.", minimum=0, default=None
    )
    to_position: int | None = _count("The last position to replay.", minimum=0, default=None)
    event_type: str | None = _token("Only events of this type.", default=None)
    limit: int | None = _count(
        "Most events replayed (default 1000).", minimum=1, maximum=1000, default=None
    )


@attrs.frozen(kw_only=True)
class ReplayStreamRequest:
    """Re-publish a stream's events (the body is optional)."""

    from_version: int | None = _count("The first version (default 1).", minimum=1, default=None)
    limit: int | None = _count(
        "Most events replayed (default 1000).", minimum=1, maximum=1000, default=None
    )


@attrs.frozen(kw_only=True)
class StreamQuery:
    """A page of a stream."""

    from_version: int = _count("The first version to read.", minimum=1, default=1)
    limit: int = _count("Most events in the page.", minimum=1, maximum=1000, default=100)


@attrs.frozen(kw_only=True)
class AllEventsQuery:
    """A page of every stream, in commit order."""

    after_position: int = _count("Read events after this position.", minimum=0, default=0)
    limit: int = _count("Most events read.", minimum=1, maximum=1000, default=100)
    event_type: str | None = api_field(
        default=None, max_length=MAX_TEXT, doc="Only events of this type (of those read)."
    )


# =============================================================================================
# Event responses


@attrs.frozen(kw_only=True)
class StoredEvent(EventView):
    """A recorded event with its stream."""

    stream_id: str


@attrs.frozen(kw_only=True)
class PublishedEvent(StoredEvent):
    """The published event as stored."""

    created: bool = api_field(doc="`false`: an earlier publish with the same `event_id`.")


@attrs.frozen(kw_only=True)
class StreamPage:
    """A page of a stream's events."""

    stream_id: str
    items: list[StoredEvent]
    next_from_version: int | None = api_field(doc="Where the next page starts; null at the end.")


@attrs.frozen(kw_only=True)
class EventsPage:
    """A page of events of every stream."""

    items: list[StoredEvent]
    next_after_position: int | None = api_field(
        doc="The `after_position` of the next page; null at the end."
    )


@attrs.frozen(kw_only=True)
class Trigger:
    """An event type that starts sagas."""

    event_type: str
    saga_types: list[str]


@attrs.frozen(kw_only=True)
class EventTypes:
    """The event types the service knows."""

    triggers: list[Trigger]
    seen: list[str] = api_field(doc="Event types in the store (saga transitions left out).")


@attrs.frozen(kw_only=True)
class Replayed:
    """Events re-published to the bus."""

    replayed: int
    event_ids: list[str]
    bus_stream: str


@attrs.frozen(kw_only=True)
class StreamReplayed(Replayed):
    """A stream's events re-published."""

    stream_id: str
    next_from_version: int | None = api_field(doc="Where to go on; null at the end.")


@attrs.frozen(kw_only=True)
class RangeReplayed(Replayed):
    """A range of positions re-published."""

    next_after_position: int | None = api_field(doc="Where to go on; null at the end.")


# =============================================================================================
# Health


@attrs.frozen(kw_only=True)
class Alive:
    """The run loop and the coordinator answer."""

    status: Literal["alive"]


@attrs.frozen(kw_only=True)
class NotAlive:
    """The coordinator does not answer."""

    status: Literal["unavailable"]
    reason: str


@attrs.frozen(kw_only=True)
class Ready:
    """The store and the bus answer, and recovery is done."""

    status: Literal["ready"]


@attrs.frozen(kw_only=True)
class NotReadyComponent:
    """A component that is not ready, and why."""

    component: Literal["store", "bus", "coordinator"]
    reason: str


@attrs.frozen(kw_only=True)
class NotReady:
    """What is not ready."""

    status: Literal["not_ready"]
    not_ready: list[NotReadyComponent]


def _omitted(doc: str | None = None) -> Any:
    return api_field(default=None, omit_if_none=True, doc=doc)


@attrs.frozen(kw_only=True)
class StoreHealth:
    """The event store."""

    status: Literal["ok", "error"]
    kind: str = api_field(doc="`sqlite`, `postgresql` or `memory`.")
    latency_ms: float = api_field(doc="How long its ping took.")
    error: str | None = _omitted("Why it is not ok.")


@attrs.frozen(kw_only=True)
class CoordinatorHealth:
    """The coordinator; its figures are left out when it does not answer."""

    status: Literal["ok", "recovering", "error"]
    active_sagas: int | None = _omitted()
    max_active_sagas: int | None = _omitted()
    recovered: bool | None = _omitted("Recovery of the sagas in flight is done.")
    recovered_sagas: int | None = _omitted()
    mailbox_depth: int | None = _omitted()
    saga_types: int | None = _omitted("How many saga types it runs.")
    error: str | None = _omitted("Why it is not ok.")


@attrs.frozen(kw_only=True)
class BusHealth:
    """The event bus; its figures are left out when it is not configured or does not answer."""

    status: Literal["ok", "error", "not configured"]
    kind: str | None = _omitted("`redis` or `in-process`.")
    latency_ms: float | None = _omitted("How long its ping took.")
    stream: str | None = _omitted()
    length: int | None = _omitted()
    pending: int | None = _omitted("Delivered, not acknowledged.")
    lag: int | None = _omitted("Not delivered yet (left out when the bus cannot tell).")
    dead_letters: int | None = _omitted()
    consumers: int | None = _omitted()
    error: str | None = _omitted("Why it is not ok.")


@attrs.frozen(kw_only=True)
class HealthComponents:
    store: StoreHealth
    coordinator: CoordinatorHealth
    bus: BusHealth


@attrs.frozen(kw_only=True)
class Health:
    """Every component's status."""

    status: Literal["ok", "unavailable"]
    version: str
    components: HealthComponents
