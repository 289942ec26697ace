"""Event routes: publish domain events, read the event store, replay events to the bus.

=======  ================================  =================================================
POST     /events/publish                   202 new event, 200 repeated ``event_id``
GET      /events/stream/<stream_id>        a stream's events from a version
GET      /events/all                       every event after a global position
GET      /events/types                     the types that trigger sagas, the types seen
POST     /events/replay                    re-publish a stream or a position range: 202
POST     /events/replay/<stream_id>        re-publish a stream (optionally from a version)
=======  ================================  =================================================

A published event is appended to its stream and to the outbox in ONE append (one transaction),
then relayed to the bus (``EVENT_STREAM``) by the outbox relay, where the router reads it. A
repeated ``event_id`` is idempotent: nothing is appended again and the stored event comes back
with 200 (409 when that id holds a different event). Streams whose id starts with ``saga-``
hold saga transitions: reading them is allowed, publishing to or replaying them is not.
Replaying re-publishes stored events with their own ids; routing is idempotent on the event id,
so a replay never starts a second saga for the same event. See ``docs/events.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from quart import Blueprint, Response, request

from saga_orchestrator.coordinator.projection import stream_id as saga_stream_id
from saga_orchestrator.coordinator.transitions import TRANSITION_TYPES
from saga_orchestrator.errors import (
    ConcurrencyError,
    ConflictError,
    StoreError,
    StoreUnavailable,
    ValidationError,
)
from saga_orchestrator.store.bus import BusMessage
from saga_orchestrator.store.records import (
    ANY_VERSION,
    AppendRequest,
    NewEvent,
    OutboxMessage,
    RecordedEvent,
    new_id,
)

from .app import Services, services
from .correlation import current_correlation_id
from .errors import InvalidQuery
from .routes_sagas import _json_body, _parse_int
from .serialize import event_json, json_response

__all__ = ["events", "parse_publish_body"]

events = Blueprint("events", __name__, url_prefix="/events")

MAX_TEXT = 255
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
REPEAT_SCAN_LIMIT = 10_000
"""Most events of a stream searched for a repeated ``event_id`` published without an expected
version (with one, the search is a single read)."""
SAGA_STREAM_PREFIX = saga_stream_id("")
_TOKEN = re.compile(r"[^\s\x00-\x1f\x7f]+")


# --------------------------------------------------------------------------------------------
# Request parsing.


class _Fields:
    """Collects field errors while checking a JSON object."""

    def __init__(self, body: Any, allowed: tuple[str, ...]) -> None:
        if not isinstance(body, dict):
            raise ValidationError(
                "the request body is not valid",
                [{"field": "body", "message": "expected an object"}],
            )
        self.body = body
        self.errors: list[dict[str, str]] = [
            {"field": str(name), "message": "unknown field"} for name in body if name not in allowed
        ]

    def fail(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def token(self, field: str, *, required: bool) -> str | None:
        """A string of 1 to 255 characters without spaces or control characters."""
        value = self.body.get(field)
        if value is None:
            if required:
                self.fail(field, "is required")
            return None
        if not isinstance(value, str):
            self.fail(field, "expected a string")
        elif not 1 <= len(value) <= MAX_TEXT:
            self.fail(field, f"expected 1 to {MAX_TEXT} characters")
        elif not _TOKEN.fullmatch(value):
            self.fail(field, "must not contain spaces or control characters")
        else:
            return value
        return None

    def integer(self, field: str, *, minimum: int, maximum: int | None = None) -> int | None:
        value = self.body.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, "expected an integer")
        elif value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            self.fail(field, f"expected an integer {bound}")
        else:
            return value
        return None

    def obj(self, field: str, *, required: bool) -> dict[str, Any] | None:
        value = self.body.get(field)
        if value is None:
            if required:
                self.fail(field, "is required")
            return None
        if not isinstance(value, dict):
            self.fail(field, "expected an object")
            return None
        return value

    def check(self) -> None:
        if self.errors:
            raise ValidationError("the request body is not valid", self.errors)


def _check_stream(fields: _Fields, stream_id: str | None, field: str = "stream_id") -> None:
    if stream_id is not None and stream_id.startswith(SAGA_STREAM_PREFIX):
        fields.fail(field, f"streams starting with {SAGA_STREAM_PREFIX!r} hold saga transitions")


_PUBLISH_FIELDS = ("event_type", "stream_id", "data", "metadata", "expected_version", "event_id")


def parse_publish_body(body: Any) -> tuple[str, int, NewEvent, bool]:
    """Check a ``POST /events/publish`` body; raises ``ValidationError`` naming each field.

    Returns the stream id, the expected version (``ANY_VERSION`` when not given), the event,
    and whether the caller chose the event id.
    """
    fields = _Fields(body, _PUBLISH_FIELDS)
    event_type = fields.token("event_type", required=True)
    stream_id = fields.token("stream_id", required=True)
    _check_stream(fields, stream_id)
    data = fields.obj("data", required=True)
    metadata = fields.obj("metadata", required=False)
    expected = fields.integer("expected_version", minimum=0)
    event_id = fields.token("event_id", required=False)
    fields.check()
    assert event_type is not None and stream_id is not None and data is not None
    metadata = dict(metadata or {})
    correlation_id = current_correlation_id()
    if correlation_id is not None:
        metadata.setdefault("correlation_id", correlation_id)
    event = NewEvent(
        event_type=event_type, data=data, metadata=metadata, event_id=event_id or new_id()
    )
    return stream_id, ANY_VERSION if expected is None else expected, event, event_id is not None


def _query(args: Mapping[str, list[str]], allowed: tuple[str, ...]) -> dict[str, str]:
    """One value per known parameter; raises ``InvalidQuery`` (400) naming each bad one."""
    errors: list[dict[str, str]] = []
    values: dict[str, str] = {}
    for name, given in args.items():
        if name not in allowed:
            errors.append(
                {"field": name, "message": f"unknown parameter; known: {', '.join(allowed)}"}
            )
        elif len(given) != 1:
            errors.append({"field": name, "message": "given more than once"})
        else:
            values[name] = given[0]
    if errors:
        raise InvalidQuery("the query is not valid", errors)
    return values


def _query_int(
    values: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    if name not in values:
        return default
    number = _parse_int(values[name])
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidQuery(
            "the query is not valid", [{"field": name, "message": f"expected an integer {bound}"}]
        )
    return number


def _recorded_json(event: RecordedEvent) -> dict[str, Any]:
    return {"stream_id": event.stream_id, **event_json(event)}


# --------------------------------------------------------------------------------------------
# Publish.


@events.post("/publish")
async def publish() -> Response:
    svc = services()
    stream_id, expected, event, chosen_id = parse_publish_body(await _json_body())
    request_ = AppendRequest(
        stream_id=stream_id,
        expected_version=expected,
        events=[event],
        outbox=[
            OutboxMessage(
                topic=svc.settings.event_stream,
                event=NewEvent(
                    event_type=event.event_type,
                    data=event.data,
                    metadata={"stream_id": stream_id, **event.metadata},
                    event_id=event.event_id,
                ),
            )
        ],
    )
    try:
        result = await svc.store.append(request_)
    except (ConcurrencyError, StoreError) as exc:
        if not chosen_id or isinstance(exc, StoreUnavailable):
            raise
        stored = await _find_repeat(svc, stream_id, expected, event.event_id)
        if stored is None:
            raise
        if (stored.event_type, stored.data) != (event.event_type, event.data):
            raise ConflictError(
                f"event id {event.event_id!r} already names another event in stream {stream_id!r}"
            ) from None
        return _published(stored, created=False)
    recorded = await svc.store.read_stream(stream_id, from_version=result.version, limit=1)
    if not recorded:  # pragma: no cover  (the append is durable: it is there)
        raise StoreError(f"event {event.event_id} is not in stream {stream_id!r} after its append")
    return _published(recorded[0], created=True)


def _published(event: RecordedEvent, *, created: bool) -> Response:
    body = {**_recorded_json(event), "created": created}
    location = f"/events/stream/{event.stream_id}?from_version={event.version}&limit=1"
    return json_response(body, 202 if created else 200, {"Location": location})


async def _find_repeat(
    svc: Services, stream_id: str, expected: int, event_id: str
) -> RecordedEvent | None:
    """The event ``event_id`` of ``stream_id`` if a publish with this id was committed before."""
    if expected != ANY_VERSION:  # a repeat found the version moved by its own first attempt
        found = await svc.store.read_stream(stream_id, from_version=expected + 1, limit=1)
        return found[0] if found and found[0].event_id == event_id else None
    version = 1
    while version <= REPEAT_SCAN_LIMIT:
        page = await svc.store.read_stream(stream_id, from_version=version, limit=MAX_LIMIT)
        for recorded in page:
            if recorded.event_id == event_id:
                return recorded
        if len(page) < MAX_LIMIT:
            return None
        version = page[-1].version + 1
    return None


# --------------------------------------------------------------------------------------------
# Reads.


@events.get("/stream/<path:stream_id>")
async def read_stream(stream_id: str) -> Response:
    values = _query(request.args.to_dict(flat=False), ("from_version", "limit"))
    from_version = _query_int(values, "from_version", 1, 1)
    limit = _query_int(values, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    found = await services().store.read_stream(stream_id, from_version=from_version, limit=limit)
    return json_response(
        {
            "stream_id": stream_id,
            "items": [_recorded_json(event) for event in found],
            "next_from_version": found[-1].version + 1 if len(found) == limit else None,
        }
    )


@events.get("/all")
async def read_all() -> Response:
    values = _query(request.args.to_dict(flat=False), ("after_position", "limit", "event_type"))
    after = _query_int(values, "after_position", 0, 0)
    limit = _query_int(values, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    event_type = values.get("event_type")
    found = await services().store.read_all(after_position=after, limit=limit)
    items = [e for e in found if event_type is None or e.event_type == event_type]
    return json_response(
        {
            "items": [_recorded_json(event) for event in items],
            "next_after_position": found[-1].position if len(found) == limit else None,
        }
    )


@events.get("/types")
async def event_types() -> Response:
    svc = services()
    triggers: dict[str, list[str]] = {}
    for definition in svc.catalog:
        for event_type in definition.triggers:
            triggers.setdefault(event_type, []).append(definition.name)
    seen = [t for t in await svc.store.event_types() if t not in TRANSITION_TYPES]
    return json_response(
        {
            "triggers": [
                {"event_type": event_type, "saga_types": sorted(names)}
                for event_type, names in sorted(triggers.items())
            ],
            "seen": sorted(seen),
        }
    )


# --------------------------------------------------------------------------------------------
# Replay.

_REPLAY_FIELDS = (
    "stream_id",
    "from_version",
    "after_position",
    "to_position",
    "event_type",
    "limit",
)


@events.post("/replay")
async def replay() -> Response:
    fields = _Fields(await _json_body(), _REPLAY_FIELDS)
    stream_id = fields.token("stream_id", required=False)
    after = fields.integer("after_position", minimum=0)
    if (stream_id is None) == (after is None) and not fields.errors:
        fields.fail("body", "give either stream_id (with from_version) or after_position")
    if stream_id is not None:
        for name in ("after_position", "to_position", "event_type"):
            if name in fields.body:
                fields.fail(name, "not allowed with stream_id")
        return await _replay_stream(fields, stream_id)
    if "from_version" in fields.body:
        fields.fail("from_version", "allowed only with stream_id")
    to_position = fields.integer("to_position", minimum=0)
    event_type = fields.token("event_type", required=False)
    limit = fields.integer("limit", minimum=1, maximum=MAX_LIMIT) or MAX_LIMIT
    fields.check()
    assert after is not None
    found = await services().store.read_all(after_position=after, limit=limit)
    chosen = [
        e
        for e in found
        if not e.stream_id.startswith(SAGA_STREAM_PREFIX)
        and (to_position is None or e.position <= to_position)
        and (event_type is None or e.event_type == event_type)
    ]
    reached_end = len(found) < limit or (
        to_position is not None and found[-1].position >= to_position
    )
    return await _replayed(
        chosen, {"next_after_position": None if reached_end else found[-1].position}
    )


@events.post("/replay/<path:stream_id>")
async def replay_stream(stream_id: str) -> Response:
    body = await _json_body(required=False)
    fields = _Fields({} if body is None else body, ("from_version", "limit"))
    return await _replay_stream(fields, stream_id)


async def _replay_stream(fields: _Fields, stream_id: str) -> Response:
    _check_stream(fields, stream_id)
    from_version = fields.integer("from_version", minimum=1) or 1
    limit = fields.integer("limit", minimum=1, maximum=MAX_LIMIT) or MAX_LIMIT
    fields.check()
    found = await services().store.read_stream(stream_id, from_version=from_version, limit=limit)
    next_version = found[-1].version + 1 if len(found) == limit else None
    return await _replayed(found, {"stream_id": stream_id, "next_from_version": next_version})


async def _replayed(chosen: list[RecordedEvent], page: dict[str, Any]) -> Response:
    svc = services()
    if svc.bus is None:
        raise StoreUnavailable("the event bus is not configured")
    messages = [BusMessage.from_recorded(event) for event in chosen]
    await svc.bus.publish(svc.settings.event_stream, messages)
    body = {
        "replayed": len(messages),
        "event_ids": [m.event_id for m in messages],
        "bus_stream": svc.settings.event_stream,
        **page,
    }
    return json_response(body, 202)
