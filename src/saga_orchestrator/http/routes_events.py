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

import logging
from typing import Any

from quart import Blueprint, Response, request

from saga_orchestrator.bus import BusMessage, bus_metadata
from saga_orchestrator.coordinator.projection import stream_id as saga_stream_id
from saga_orchestrator.coordinator.transitions import TRANSITION_TYPES
from saga_orchestrator.errors import (
    BusUnavailable,
    ConcurrencyError,
    ConflictError,
    DuplicateEventId,
    StoreError,
)
from saga_orchestrator.store.records import (
    ANY_VERSION,
    AppendRequest,
    NewEvent,
    OutboxMessage,
    RecordedEvent,
    new_id,
)

from .app import deps
from .correlation import current_correlation_id
from .openapi import Reply, created_or_found, operation
from .serialize import json_response, stored_event
from .validate import body_fields, check_query, finish, json_body
from .views.events import (
    AllEventsQuery,
    EventsPage,
    EventTypes,
    PublishedEvent,
    PublishRequest,
    RangeReplayed,
    ReplayRequest,
    ReplayStreamRequest,
    StreamPage,
    StreamQuery,
    StreamReplayed,
    Trigger,
)

__all__ = ["events", "parse_publish_body"]

log = logging.getLogger(__name__)

events = Blueprint("events", __name__, url_prefix="/events")

TAG = "Events"
MAX_LIMIT = 1000
SAGA_STREAM_PREFIX = saga_stream_id("")


# --------------------------------------------------------------------------------------------
# Request parsing.


def _check_stream(errors: list[dict[str, str]], stream_id: str | None) -> None:
    if stream_id is not None and stream_id.startswith(SAGA_STREAM_PREFIX):
        errors.append(
            {
                "field": "stream_id",
                "message": f"streams starting with {SAGA_STREAM_PREFIX!r} hold saga transitions",
            }
        )


def parse_publish_body(body: Any) -> tuple[str, int, NewEvent, bool]:
    """Check a ``POST /events/publish`` body; raises ``ValidationError`` naming each field.

    Returns the stream id, the expected version (``ANY_VERSION`` when not given), the event,
    and whether the caller chose the event id.
    """
    values, errors = body_fields(PublishRequest, body)
    _check_stream(errors, values.get("stream_id"))
    given = finish(PublishRequest, values, errors)
    metadata = dict(given.metadata or {})
    correlation_id = current_correlation_id()
    if correlation_id is not None:
        metadata.setdefault("correlation_id", correlation_id)
    event = NewEvent(
        event_type=given.event_type,
        data=given.data,
        metadata=metadata,
        event_id=given.event_id or new_id(),
    )
    expected = ANY_VERSION if given.expected_version is None else given.expected_version
    return given.stream_id, expected, event, given.event_id is not None


# --------------------------------------------------------------------------------------------
# Publish.


@events.post("/publish")
@operation(
    summary="Publish a domain event",
    description="Appended to its stream and to the outbox in one transaction, then relayed to "
    "the bus, where the router starts the sagas it triggers. A repeated `event_id` returns the "
    "stored event (200); 409 when that id names another event, or `expected_version` is not "
    "the stream's version.",
    tag=TAG,
    body=PublishRequest,
    replies=created_or_found(
        PublishedEvent, created="Stored.", found="Stored before, with the same `event_id`."
    ),
    errors=(409, 503),
)
async def publish() -> Response:
    svc = deps()
    stream_id, expected, event, chosen_id = parse_publish_body(await json_body())
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
                    metadata=bus_metadata(
                        event.metadata,
                        stream_id=stream_id,
                        version=None if expected == ANY_VERSION else expected + 1,
                    ),
                    event_id=event.event_id,
                ),
            )
        ],
    )
    try:
        result = await svc.store.append(request_)
    except (ConcurrencyError, DuplicateEventId):
        if not chosen_id:
            raise
        # A repeat of a publish that committed (its reply may have been lost): answer with it.
        stored = await svc.store.find_event(event.event_id)
        if stored is None or stored.stream_id != stream_id:
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
    location = f"/events/stream/{event.stream_id}?from_version={event.version}&limit=1"
    return json_response(
        stored_event(event, created=created), 202 if created else 200, {"Location": location}
    )


# --------------------------------------------------------------------------------------------
# Reads.


@events.get("/stream/<path:stream_id>")
@operation(
    summary="A stream's events from a version",
    description="Any stream, saga transitions (`saga-<saga_id>`) included; an unknown stream "
    "has no events.",
    tag=TAG,
    query=StreamQuery,
    replies=[Reply(status=200, description="A page of the stream.", body=StreamPage)],
    errors=(503,),
)
async def read_stream(stream_id: str) -> Response:
    query = check_query(StreamQuery, request.args.to_dict(flat=False))
    found = await deps().store.read_stream(
        stream_id, from_version=query.from_version, limit=query.limit
    )
    return json_response(
        StreamPage(
            stream_id=stream_id,
            items=[stored_event(event) for event in found],
            next_from_version=found[-1].version + 1 if len(found) == query.limit else None,
        )
    )


@events.get("/all")
@operation(
    summary="Events of every stream after a global position",
    description="`limit` events are read, then filtered by `event_type`: a page may hold "
    "fewer, and `next_after_position` says where to go on.",
    tag=TAG,
    query=AllEventsQuery,
    replies=[Reply(status=200, description="A page of events.", body=EventsPage)],
    errors=(503,),
)
async def read_all() -> Response:
    query = check_query(AllEventsQuery, request.args.to_dict(flat=False))
    found = await deps().store.read_all(after_position=query.after_position, limit=query.limit)
    items = [e for e in found if query.event_type is None or e.event_type == query.event_type]
    return json_response(
        EventsPage(
            items=[stored_event(event) for event in items],
            next_after_position=found[-1].position if len(found) == query.limit else None,
        )
    )


@events.get("/types")
@operation(
    summary="The event types that trigger sagas, and the ones seen in the store",
    tag=TAG,
    replies=[Reply(status=200, description="The event types.", body=EventTypes)],
    errors=(503,),
)
async def event_types() -> Response:
    svc = deps()
    triggers: dict[str, list[str]] = {}
    for definition in svc.catalog:
        for event_type in definition.triggers:
            triggers.setdefault(event_type, []).append(definition.name)
    seen = [t for t in await svc.store.event_types() if t not in TRANSITION_TYPES]
    return json_response(
        EventTypes(
            triggers=[
                Trigger(event_type=event_type, saga_types=sorted(names))
                for event_type, names in sorted(triggers.items())
            ],
            seen=sorted(seen),
        )
    )


# --------------------------------------------------------------------------------------------
# Replay.

_REPLAY_DOC = (
    "Stored events are re-published to the bus with their own ids; routing is idempotent on "
    "the event id, so a replay never starts a second saga for the same event. Saga transition "
    "streams are never replayed."
)


@events.post("/replay")
@operation(
    summary="Re-publish a stream, or a range of positions, to the bus",
    description="Give either `stream_id` (with `from_version`) or `after_position` (with "
    "`to_position`, `event_type`). " + _REPLAY_DOC,
    tag=TAG,
    body=ReplayRequest,
    replies=[
        Reply(
            status=202,
            description="Re-published.",
            body=StreamReplayed | RangeReplayed,  # type: ignore[arg-type]
        )
    ],
    errors=(503,),
)
async def replay() -> Response:
    values, errors = body_fields(ReplayRequest, await json_body())
    stream_id = values.get("stream_id")
    after = values.get("after_position")
    if (stream_id is None) == (after is None) and not errors:
        errors.append(
            {
                "field": "body",
                "message": "give either stream_id (with from_version) or after_position",
            }
        )
    if stream_id is not None:
        for name in ("after_position", "to_position", "event_type"):
            if name in values:
                errors.append({"field": name, "message": "not allowed with stream_id"})
        _check_stream(errors, stream_id)
    elif "from_version" in values:
        errors.append({"field": "from_version", "message": "allowed only with stream_id"})
    given = finish(ReplayRequest, values, errors)
    if given.stream_id is not None:
        return await _replay_stream(given.stream_id, given.from_version, given.limit)
    assert given.after_position is not None
    limit = given.limit or MAX_LIMIT
    found = await deps().store.read_all(after_position=given.after_position, limit=limit)
    chosen = [
        e
        for e in found
        if not e.stream_id.startswith(SAGA_STREAM_PREFIX)
        and (given.to_position is None or e.position <= given.to_position)
        and (given.event_type is None or e.event_type == given.event_type)
    ]
    reached_end = len(found) < limit or (
        given.to_position is not None and found[-1].position >= given.to_position
    )
    next_after = None if reached_end else found[-1].position
    return await _replayed(chosen, RangeReplayed, {"next_after_position": next_after})


@events.post("/replay/<path:stream_id>")
@operation(
    summary="Re-publish a stream's events to the bus",
    description=_REPLAY_DOC,
    tag=TAG,
    body=ReplayStreamRequest,
    body_required=False,
    replies=[Reply(status=202, description="Re-published.", body=StreamReplayed)],
    errors=(503,),
)
async def replay_stream(stream_id: str) -> Response:
    values, errors = body_fields(ReplayStreamRequest, await json_body(required=False))
    _check_stream(errors, stream_id)
    given = finish(ReplayStreamRequest, values, errors)
    return await _replay_stream(stream_id, given.from_version, given.limit)


async def _replay_stream(stream_id: str, from_version: int | None, limit: int | None) -> Response:
    limit = limit or MAX_LIMIT
    found = await deps().store.read_stream(stream_id, from_version=from_version or 1, limit=limit)
    next_version = found[-1].version + 1 if len(found) == limit else None
    return await _replayed(
        found, StreamReplayed, {"stream_id": stream_id, "next_from_version": next_version}
    )


async def _replayed(
    chosen: list[RecordedEvent], view: type[StreamReplayed | RangeReplayed], page: dict[str, Any]
) -> Response:
    svc = deps()
    if svc.bus is None:
        raise BusUnavailable("the event bus is not configured")
    messages = [BusMessage.from_recorded(event) for event in chosen]
    await svc.bus.publish(svc.settings.event_stream, messages)
    body = view(
        replayed=len(messages),
        event_ids=[m.event_id for m in messages],
        bus_stream=svc.settings.event_stream,
        **page,
    )
    return json_response(body, 202)
