"""Request and response shapes of the event routes (:mod:`..routes_events`)."""

from __future__ import annotations

from typing import Any

import attrs

from ..schema import api_field
from ._base import (
    MAX_TEXT,
    count_field,
    token_field,
)
from .sagas import EventView

# =============================================================================================
# Event requests


@attrs.frozen(kw_only=True)
class PublishRequest:
    """Publish a domain event."""

    event_type: str = token_field("The event's type, e.g. `user.registered`.")
    stream_id: str = token_field("Its stream; not one starting with `saga-` (saga transitions).")
    data: dict[str, Any]
    metadata: dict[str, Any] | None = api_field(
        default=None, doc="Stored with the event; `correlation_id` is added from the request."
    )
    expected_version: int | None = count_field(
        "The stream's current version: 409 when it is not (0: a new stream).",
        minimum=0,
        default=None,
    )
    event_id: str | None = token_field(
        "A repeat with the same id returns the stored event (200); default: a new id.",
        default=None,
    )


@attrs.frozen(kw_only=True)
class ReplayRequest:
    """Re-publish a stream (``stream_id``, ``from_version``) or a range of positions
    (``after_position``, ``to_position``, ``event_type``) to the bus."""

    stream_id: str | None = token_field("The stream to replay.", default=None)
    from_version: int | None = count_field(
        "With `stream_id`: the first version (default 1).", minimum=1, default=None
    )
    after_position: int | None = count_field(
        "Without `stream_id`: replay events after this position.", minimum=0, default=None
    )
    to_position: int | None = count_field("The last position to replay.", minimum=0, default=None)
    event_type: str | None = token_field("Only events of this type.", default=None)
    limit: int | None = count_field(
        "Most events replayed (default 1000).", minimum=1, maximum=1000, default=None
    )


@attrs.frozen(kw_only=True)
class ReplayStreamRequest:
    """Re-publish a stream's events (the body is optional)."""

    from_version: int | None = count_field(
        "The first version (default 1).", minimum=1, default=None
    )
    limit: int | None = count_field(
        "Most events replayed (default 1000).", minimum=1, maximum=1000, default=None
    )


@attrs.frozen(kw_only=True)
class StreamQuery:
    """A page of a stream."""

    from_version: int = count_field("The first version to read.", minimum=1, default=1)
    limit: int = count_field("Most events in the page.", minimum=1, maximum=1000, default=100)


@attrs.frozen(kw_only=True)
class AllEventsQuery:
    """A page of every stream, in commit order."""

    after_position: int = count_field("Read events after this position.", minimum=0, default=0)
    limit: int = count_field("Most events read.", minimum=1, maximum=1000, default=100)
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
    saga_ids: list[str] | None = api_field(
        doc="The sagas the event started (empty: it triggers none, or none could start), once "
        "the router has decided on every saga type it triggers: with the in-process bus it has "
        "by the time the publish answers (it waits up to 2 s for it); with Redis, when the "
        "router was quicker than the answer. Else null: see `sagas_link`."
    )
    sagas_link: str = api_field(
        doc="Where to find the sagas the event started: `/sagas/?trigger_event_id=<event_id>`."
    )


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
