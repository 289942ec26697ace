"""Event routes: publish domain events, read the event store, replay events to the bus.

=======  ================================  =================================================
POST     /events/publish                   202 new event, 200 repeated ``event_id``
GET      /events/stream/<stream_id>        a stream's events from a version
GET      /events/all                       every event after a global position
GET      /events/types                     the types that trigger sagas, the types seen
POST     /events/replay                    re-publish a stream or a position range: 202
POST     /events/replay/<stream_id>        re-publish a stream (optionally from a version)
=======  ================================  =================================================

The handlers parse and check requests and shape the answers; what happens to events is the
events service's (:mod:`saga_orchestrator.coordinator.domain_events`): a publish appends the
event and its outbox message in one transaction, a replay appends outbox messages for stored
events in one transaction, and the outbox relay publishes both. See ``docs/events.md``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import trio
from quart import Blueprint, Response, request

from saga_orchestrator.coordinator.domain_events import (
    MAX_PAGE,
    DomainEvents,
    Replayed,
    saga_stream_errors,
)
from saga_orchestrator.coordinator.trigger_links import DECISION_WAIT, started_sagas
from saga_orchestrator.store.records import ANY_VERSION, NewEvent, RecordedEvent, new_id

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

events = Blueprint("events", __name__, url_prefix="/events")

TAG = "Events"


def _events() -> DomainEvents:
    """The events service over this app's store and catalog."""
    svc = deps()
    return DomainEvents(svc.store, svc.catalog, topic=svc.settings.event_stream)


# --------------------------------------------------------------------------------------------
# Request parsing.


def parse_publish_body(body: Any) -> tuple[str, int, NewEvent, bool]:
    """Check a ``POST /events/publish`` body; raises ``ValidationError`` naming each field.

    Returns the stream id, the expected version (``ANY_VERSION`` when not given), the event,
    and whether the caller chose the event id.
    """
    values, errors = body_fields(PublishRequest, body)
    errors.extend(saga_stream_errors(values.get("stream_id")))
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
    "the bus, where the router starts the sagas it triggers: `saga_ids` names them once the "
    "router has decided, `sagas_link` finds them in any case. A repeated `event_id` returns "
    "the stored event (200); 409 when that id names another event, or `expected_version` is "
    "not the stream's version.",
    tag=TAG,
    body=PublishRequest,
    replies=created_or_found(
        PublishedEvent, created="Stored.", found="Stored before, with the same `event_id`."
    ),
    errors=(409, 503),
)
async def publish() -> Response:
    stream_id, expected, event, chosen_id = parse_publish_body(await json_body())
    svc = deps()
    with _router_decision(event) as decision:
        published = await _events().publish(
            stream_id, event, expected_version=expected, repeatable=chosen_id
        )
        if published.created and decision is not None:
            with trio.move_on_after(DECISION_WAIT):
                await decision.wait()
    saga_ids = await started_sagas(
        svc.store,
        svc.catalog,
        event.event_id,
        event.event_type,
        decided=decision is not None and decision.is_set(),
    )
    return _published(published.event, created=published.created, saga_ids=saga_ids)


@contextmanager
def _router_decision(event: NewEvent) -> Iterator[trio.Event | None]:
    """Set once this process's router has decided on ``event`` (with the in-process bus and an
    event that triggers sagas), else ``None``."""
    svc = deps()
    if svc.trigger_decisions is None or not svc.catalog.triggered_by(event.event_type):
        yield None
        return
    with svc.trigger_decisions.expect(event.event_id) as decision:
        yield decision


def _published(event: RecordedEvent, *, created: bool, saga_ids: list[str] | None) -> Response:
    location = f"/events/stream/{event.stream_id}?from_version={event.version}&limit=1"
    link = f"/sagas/?trigger_event_id={quote(event.event_id, safe='')}"
    return json_response(
        stored_event(event, created=created, saga_ids=saga_ids, sagas_link=link),
        202 if created else 200,
        {"Location": location},
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
    page = await _events().read_stream(
        stream_id, from_version=query.from_version, limit=query.limit
    )
    return json_response(
        StreamPage(
            stream_id=stream_id,
            items=[stored_event(event) for event in page.events],
            next_from_version=page.next,
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
    page = await _events().read_all(
        after_position=query.after_position, limit=query.limit, event_type=query.event_type
    )
    return json_response(
        EventsPage(
            items=[stored_event(event) for event in page.events], next_after_position=page.next
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
    known = await _events().event_types()
    return json_response(
        EventTypes(
            triggers=[
                Trigger(event_type=event_type, saga_types=list(names))
                for event_type, names in known.triggers.items()
            ],
            seen=list(known.seen),
        )
    )


# --------------------------------------------------------------------------------------------
# Replay.

_REPLAY_DOC = (
    "Stored events are re-published to the bus with their own ids, through the outbox: the "
    "202 comes once they are committed to it, and the relay publishes them (also while the bus "
    "cannot be reached). Routing is idempotent on the event id, so a replay never starts a "
    "second saga for the same event. Saga transition streams are never replayed."
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
        errors.extend(saga_stream_errors(stream_id))
    elif "from_version" in values:
        errors.append({"field": "from_version", "message": "allowed only with stream_id"})
    given = finish(ReplayRequest, values, errors)
    if given.stream_id is not None:
        replayed = await _events().replay_stream(
            given.stream_id, from_version=given.from_version or 1, limit=given.limit or MAX_PAGE
        )
        return _stream_replayed(given.stream_id, replayed)
    assert given.after_position is not None
    replayed = await _events().replay_range(
        after_position=given.after_position,
        to_position=given.to_position,
        event_type=given.event_type,
        limit=given.limit or MAX_PAGE,
    )
    return _replayed(replayed, RangeReplayed, {"next_after_position": replayed.next})


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
    errors.extend(saga_stream_errors(stream_id))
    given = finish(ReplayStreamRequest, values, errors)
    replayed = await _events().replay_stream(
        stream_id, from_version=given.from_version or 1, limit=given.limit or MAX_PAGE
    )
    return _stream_replayed(stream_id, replayed)


def _stream_replayed(stream_id: str, replayed: Replayed) -> Response:
    return _replayed(
        replayed, StreamReplayed, {"stream_id": stream_id, "next_from_version": replayed.next}
    )


def _replayed(
    replayed: Replayed, view: type[StreamReplayed | RangeReplayed], page: dict[str, Any]
) -> Response:
    body = view(
        replayed=len(replayed.event_ids),
        event_ids=list(replayed.event_ids),
        bus_stream=replayed.topic,
        **page,
    )
    return json_response(body, 202)
