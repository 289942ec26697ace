"""Domain events: publishing, reading and replaying them. The HTTP layer calls this; it parses
requests and shapes answers, the rules are here.

* *Publish*: the event is appended to its stream together with an outbox message for the
  event stream (``EVENT_STREAM``), in ONE append (one transaction); the outbox relay publishes
  it to the bus. A repeat of an event id the caller chose is idempotent: nothing is appended
  again and the stored event comes back (``ConflictError`` when that id holds another event).
* *Replay*: stored events are published again with their own ids, through the outbox like every
  other publish: ONE append per call carries an outbox message for each chosen event (no new
  event), group-committed like any append. A replay is durable when it returns, whether or not
  the bus can be reached then; the relay publishes it. Routing is idempotent on the event id,
  so a replay never starts a second saga for an event.
* Streams whose id starts with ``saga-`` hold saga transitions: they can be read, not published
  to or replayed.

Everything goes through :class:`~saga_orchestrator.store.Store`.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from saga_orchestrator.bus import bus_metadata
from saga_orchestrator.errors import (
    ConcurrencyError,
    ConflictError,
    DuplicateEventId,
    StoreError,
    ValidationError,
)
from saga_orchestrator.store import (
    AppendRequest,
    NewEvent,
    OutboxMessage,
    RecordedEvent,
    Store,
)
from saga_orchestrator.store.records import ANY_VERSION

from .catalog import SagaCatalog
from .projection import stream_id as saga_stream_id
from .transitions import TRANSITION_TYPES

__all__ = [
    "MAX_PAGE",
    "SAGA_STREAM_PREFIX",
    "DomainEvents",
    "EventPage",
    "EventTypes",
    "Published",
    "Replayed",
    "saga_stream_errors",
]

SAGA_STREAM_PREFIX = saga_stream_id("")
"""Streams with ids that start so hold saga transitions."""
MAX_PAGE = 1000
"""Most events read or replayed by one call."""
RANGE_REPLAY_STREAM = "$replay"
"""The stream a position-range replay's append names (it appends no event to it)."""


def saga_stream_errors(stream_id: str | None) -> list[dict[str, str]]:
    """The field error of a ``stream_id`` that may not be published to or replayed (a saga
    stream), as ``ValidationError.errors`` hold them; empty when it may."""
    if stream_id is None or not stream_id.startswith(SAGA_STREAM_PREFIX):
        return []
    return [
        {
            "field": "stream_id",
            "message": f"streams starting with {SAGA_STREAM_PREFIX!r} hold saga transitions",
        }
    ]


def _refuse_saga_stream(stream_id: str) -> None:
    errors = saga_stream_errors(stream_id)
    if errors:
        raise ValidationError(f"stream {stream_id!r} holds saga transitions", errors)


@attrs.frozen(kw_only=True)
class Published:
    """A published event as stored."""

    event: RecordedEvent
    created: bool
    """``False``: an earlier publish with the same event id stored it (nothing was appended)."""


@attrs.frozen(kw_only=True)
class Replayed:
    """What a replay committed to the outbox."""

    event_ids: tuple[str, ...]
    """The replayed events, in order."""
    topic: str
    """The bus stream the relay publishes them to."""
    next: int | None
    """Where the next page starts (a stream: the version; a range: the ``after_position``);
    ``None`` at the end."""


@attrs.frozen(kw_only=True)
class EventPage:
    """A page of stored events."""

    events: tuple[RecordedEvent, ...]
    next: int | None
    """Where the next page starts (a stream: the version; every stream: the
    ``after_position``); ``None`` when the page was not full."""


@attrs.frozen(kw_only=True)
class EventTypes:
    """The event types the service knows."""

    triggers: dict[str, tuple[str, ...]]
    """Event type -> the saga types it starts (sorted), by event type."""
    seen: tuple[str, ...]
    """The types of the stored events, saga transitions left out, sorted."""


class DomainEvents:
    """The events service over ``store``; outbox messages go to the bus stream ``topic``."""

    def __init__(self, store: Store, catalog: SagaCatalog, *, topic: str) -> None:
        self.store = store
        self.catalog = catalog
        self.topic = topic

    # -- publish --------------------------------------------------------------------------------

    async def publish(
        self,
        stream_id: str,
        event: NewEvent,
        *,
        expected_version: int = ANY_VERSION,
        repeatable: bool = False,
    ) -> Published:
        """Append ``event`` to ``stream_id`` with its outbox message; returns it as stored.

        ``repeatable``: the caller chose the event id, so a publish whose earlier attempt
        committed (its answer may have been lost) finds its event and returns it with
        ``created=False``.

        Raises:
            ValidationError: ``stream_id`` holds saga transitions.
            ConcurrencyError: ``expected_version`` is not the stream's version.
            ConflictError: the event id names another event (``DuplicateEventId``: in another
                stream).
            StoreUnavailable: the store cannot be reached; retry.
        """
        _refuse_saga_stream(stream_id)
        version = None if expected_version == ANY_VERSION else expected_version + 1
        request = AppendRequest(
            stream_id=stream_id,
            expected_version=expected_version,
            events=[event],
            outbox=[self._outbox_message(event, stream_id, version)],
        )
        try:
            result = await self.store.append(request)
        except (ConcurrencyError, DuplicateEventId):
            if not repeatable:
                raise
            stored = await self._earlier_publish(stream_id, event)
            if stored is None:
                raise
            return Published(event=stored, created=False)
        recorded = await self.store.read_stream(stream_id, from_version=result.version, limit=1)
        if not recorded:  # pragma: no cover  (the append is durable: it is there)
            raise StoreError(
                f"event {event.event_id} is not in stream {stream_id!r} after its append"
            )
        return Published(event=recorded[0], created=True)

    async def _earlier_publish(self, stream_id: str, event: NewEvent) -> RecordedEvent | None:
        """The stored event an earlier publish of ``event`` wrote, or ``None`` when the event id
        is not stored in ``stream_id``; ``ConflictError`` when it holds another event there."""
        stored = await self.store.find_event(event.event_id)
        if stored is None or stored.stream_id != stream_id:
            return None
        if (stored.event_type, stored.data) != (event.event_type, event.data):
            raise ConflictError(
                f"event id {event.event_id!r} already names another event in stream "
                f"{stream_id!r}; publish this one with a new event_id"
            )
        return stored

    def _outbox_message(
        self,
        event: NewEvent | RecordedEvent,
        stream_id: str,
        version: int | None,
        occurred_at: float | None = None,
    ) -> OutboxMessage:
        return OutboxMessage(
            topic=self.topic,
            event=NewEvent(
                event_type=event.event_type,
                data=event.data,
                metadata=bus_metadata(event.metadata, stream_id=stream_id, version=version),
                event_id=event.event_id,
            ),
            occurred_at=occurred_at,
        )

    # -- read -----------------------------------------------------------------------------------

    async def read_stream(self, stream_id: str, *, from_version: int, limit: int) -> EventPage:
        """A page of ``stream_id`` (any stream, saga transitions included; an unknown stream
        has no events)."""
        found = await self.store.read_stream(stream_id, from_version=from_version, limit=limit)
        full = len(found) == limit
        return EventPage(events=tuple(found), next=found[-1].version + 1 if full else None)

    async def read_all(
        self, *, after_position: int, limit: int, event_type: str | None = None
    ) -> EventPage:
        """``limit`` events of every stream after ``after_position``, then those of
        ``event_type`` among them (a page may hold fewer; ``next`` says where to go on)."""
        found = await self.store.read_all(after_position=after_position, limit=limit)
        kept = [e for e in found if event_type is None or e.event_type == event_type]
        return EventPage(
            events=tuple(kept), next=found[-1].position if len(found) == limit else None
        )

    async def event_types(self) -> EventTypes:
        """The types that trigger sagas, and those of the stored events."""
        triggers: dict[str, list[str]] = {}
        for definition in self.catalog.newest():
            for event_type in definition.triggers:
                triggers.setdefault(event_type, []).append(definition.name)
        seen = [t for t in await self.store.event_types() if t not in TRANSITION_TYPES]
        return EventTypes(
            triggers={t: tuple(sorted(names)) for t, names in sorted(triggers.items())},
            seen=tuple(sorted(seen)),
        )

    # -- replay ---------------------------------------------------------------------------------

    async def replay_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = MAX_PAGE
    ) -> Replayed:
        """Publish again up to ``limit`` events of ``stream_id`` from ``from_version``.

        Raises:
            ValidationError: ``stream_id`` holds saga transitions.
            StoreUnavailable: the store cannot be reached; retry.
        """
        _refuse_saga_stream(stream_id)
        page = await self.read_stream(stream_id, from_version=from_version, limit=limit)
        return await self._replay(stream_id, page.events, page.next)

    async def replay_range(
        self,
        *,
        after_position: int,
        to_position: int | None = None,
        event_type: str | None = None,
        limit: int = MAX_PAGE,
    ) -> Replayed:
        """Publish again the events after ``after_position`` (up to ``to_position``, of
        ``event_type``) among the next ``limit``; saga streams are skipped.

        Raises:
            StoreUnavailable: the store cannot be reached; retry.
        """
        found = await self.store.read_all(after_position=after_position, limit=limit)
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
        return await self._replay(
            RANGE_REPLAY_STREAM, chosen, None if reached_end else found[-1].position
        )

    async def _replay(
        self, stream_id: str, events: Sequence[RecordedEvent], next_page: int | None
    ) -> Replayed:
        """One append of an outbox message per event (the stream itself is left as it is)."""
        if events:
            await self.store.append(
                AppendRequest(
                    stream_id=stream_id,
                    expected_version=ANY_VERSION,
                    events=(),
                    outbox=[
                        self._outbox_message(e, e.stream_id, e.version, e.recorded_at)
                        for e in events
                    ],
                )
            )
        return Replayed(
            event_ids=tuple(e.event_id for e in events), topic=self.topic, next=next_page
        )
