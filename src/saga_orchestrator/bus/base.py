"""What travels on the event bus, and the protocol every bus adapter implements.

A bus holds named streams of entries. An entry is one :class:`BusMessage` (an event: id, type,
data, metadata, time) under an entry id the bus assigns. Consumers read a stream through a
consumer group: each entry goes to one consumer of the group, stays *pending* until that
consumer acknowledges it, and can be claimed by another consumer once it has been pending longer
than an idle time (its consumer died, or its handling failed). An entry that keeps failing is
moved to the stream's dead-letter stream, ``<stream>:dead``, once per event and group: the bus
remembers which events each group dead-lettered (bounded; see :meth:`EventBus.dead_letter`), so
the same event failing again (replayed, or published twice) is acknowledged, not moved again.

Two adapters: :class:`~.redis_streams.RedisStreamsBus` (Redis Streams) and
:class:`~.in_process.InProcessBus` (memory, for the embedded default and tests). Both raise only
``BusUnavailable`` (the bus cannot be reached now; retry) and ``BusError`` (anything else).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from saga_orchestrator.errors import SagaOrchestratorError
from saga_orchestrator.store.records import OutboxRecord, RecordedEvent

__all__ = [
    "BusMessage",
    "Delivery",
    "EventBus",
    "GroupFigures",
    "MalformedEntry",
    "RejectMessage",
    "SettlementCallback",
    "StreamFigures",
    "StreamInfo",
    "bus_metadata",
    "dead_letter_fields",
    "dead_letter_memory_key",
    "dead_letter_stream",
    "stream_info",
]

DEAD_LETTER_SUFFIX = ":dead"
DEAD_LETTER_MEMORY_SECONDS = 7 * 24 * 3600.0
"""How long a bus remembers that a group dead-lettered an event (and at most as many events as
a stream's maximum length)."""
ENVELOPE_METADATA = ("stream_id", "version")
"""Metadata keys the service sets on the bus (see :func:`bus_metadata`)."""


def dead_letter_stream(stream: str) -> str:
    """Where the entries of ``stream`` that kept failing go."""
    return stream + DEAD_LETTER_SUFFIX


def dead_letter_memory_key(stream: str, group: str) -> str:
    """Where the bus remembers the events ``group`` dead-lettered from ``stream`` (on Redis a
    sorted set of event ids scored by when, beside ``<stream>:dead``)."""
    return f"{dead_letter_stream(stream)}:ids:{group}"


def dead_letter_fields(group: str, delivery: Delivery, reason: str) -> dict[str, str]:
    """The dead-letter entry of ``delivery``: its own fields, and where and why it failed."""
    return {
        **delivery.fields,
        "dead_from_stream": delivery.stream,
        "dead_from_id": delivery.entry_id,
        "dead_group": group,
        "dead_deliveries": str(delivery.deliveries),
        "dead_reason": reason[:1000],
        "dead_at": repr(time.time()),
    }


def bus_metadata(
    metadata: Mapping[str, Any], *, stream_id: str, version: int | None = None
) -> dict[str, Any]:
    """``metadata`` with where the event is in the event store: ``stream_id``, and ``version``
    when it is known. These two keys are the service's: a publisher's keys of those names are
    replaced (``version`` is left out when it is not known)."""
    found = {k: v for k, v in metadata.items() if k not in ENVELOPE_METADATA}
    found["stream_id"] = stream_id
    if version is not None:
        found["version"] = version
    return found


class MalformedEntry(SagaOrchestratorError, ValueError):
    """A stream entry that is not a bus message (missing fields, data that is not JSON)."""


class RejectMessage(SagaOrchestratorError):
    """Raised by a handler for a message that can never succeed (e.g. input that fails a
    saga's schema): the consumer moves it to the dead-letter stream at once, without retries."""


@attrs.frozen(kw_only=True)
class BusMessage:
    """One event on the bus: the envelope described in ``docs/events.md``.

    On Redis an entry has the string fields ``event_id``, ``event_type``, ``data`` and
    ``metadata`` (JSON objects) and ``occurred_at`` (seconds since the epoch).
    """

    event_id: str
    """Unique per event: consumers deduplicate by it (a crash can publish an event twice)."""
    event_type: str
    data: dict[str, Any] = attrs.field(factory=dict)
    metadata: dict[str, Any] = attrs.field(factory=dict)
    """``correlation_id``, ``causation_id``; ``stream_id`` and ``version`` (where the event, or
    the saga transition a lifecycle event announces, is in the event store; see
    :func:`bus_metadata`); ``saga_id`` (replies) and whatever the publisher adds."""
    occurred_at: float = 0.0
    """When the event was recorded (committed to the store), seconds since the epoch."""

    @classmethod
    def from_outbox(cls, record: OutboxRecord) -> BusMessage:
        event = record.event
        return cls(
            event_id=event.event_id,
            event_type=event.event_type,
            data=event.data,
            metadata=event.metadata,
            occurred_at=record.occurred_at,
        )

    @classmethod
    def from_recorded(cls, event: RecordedEvent) -> BusMessage:
        return cls(
            event_id=event.event_id,
            event_type=event.event_type,
            data=event.data,
            metadata=bus_metadata(event.metadata, stream_id=event.stream_id, version=event.version),
            occurred_at=event.recorded_at,
        )

    def to_fields(self) -> dict[str, str]:
        """The entry's fields (all strings)."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "data": json.dumps(self.data, separators=(",", ":"), default=str),
            "metadata": json.dumps(self.metadata, separators=(",", ":"), default=str),
            "occurred_at": repr(float(self.occurred_at)),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> BusMessage:
        """Decode an entry; raises :class:`MalformedEntry` saying what is wrong."""
        missing = [name for name in ("event_id", "event_type") if not fields.get(name)]
        if missing:
            raise MalformedEntry(f"missing field(s): {', '.join(missing)}")
        decoded: dict[str, dict[str, Any]] = {}
        for name in ("data", "metadata"):
            try:
                value = json.loads(fields.get(name) or "{}")
            except ValueError:
                raise MalformedEntry(f"field {name!r} is not JSON") from None
            if not isinstance(value, dict):
                raise MalformedEntry(f"field {name!r} is not a JSON object")
            decoded[name] = value
        try:
            occurred_at = float(fields.get("occurred_at") or 0.0)
        except ValueError:
            raise MalformedEntry("field 'occurred_at' is not a number") from None
        if not math.isfinite(occurred_at):
            raise MalformedEntry("field 'occurred_at' is not a finite number")
        return cls(
            event_id=fields["event_id"],
            event_type=fields["event_type"],
            data=decoded["data"],
            metadata=decoded["metadata"],
            occurred_at=occurred_at,
        )


@attrs.frozen(kw_only=True)
class Delivery:
    """An entry handed to a consumer."""

    stream: str
    entry_id: str
    fields: Mapping[str, str]
    """The entry as stored (kept for the dead-letter stream)."""
    deliveries: int = 1
    """How often the entry has been delivered to the group, this time included."""

    @property
    def message(self) -> BusMessage:
        """The decoded message; raises :class:`MalformedEntry`."""
        return BusMessage.from_fields(self.fields)


@attrs.frozen(kw_only=True)
class GroupFigures:
    """One consumer group of a stream: how far behind it is."""

    group: str
    pending: int
    """Entries delivered to the group and not acknowledged yet."""
    oldest_pending_age: float | None
    """Seconds since the oldest of those entries was added to the stream (``None``: none is
    pending). On Redis: the server's time less the millisecond time of its entry id."""
    lag: int | None
    """Entries the group has not been given yet (``None`` when the bus cannot tell: Redis
    before 7)."""
    consumers: int


@attrs.frozen(kw_only=True)
class StreamFigures:
    """A stream and every consumer group it has, as the metrics show them."""

    stream: str
    length: int
    """Entries in the stream (after trimming)."""
    dead_letters: int
    """Entries in its dead-letter stream."""
    groups: tuple[GroupFigures, ...] = ()
    """By group name."""


@attrs.frozen(kw_only=True)
class StreamInfo:
    """A stream as the health check shows it, for one consumer group."""

    stream: str
    length: int
    """Entries in the stream (after trimming)."""
    pending: int
    """Entries delivered to the group and not acknowledged yet."""
    lag: int | None
    """Entries the group has not been given yet (``None`` when the bus cannot tell)."""
    dead_letters: int
    """Entries in the dead-letter stream."""
    consumers: int
    oldest_pending_age: float | None = None
    """See :attr:`GroupFigures.oldest_pending_age`."""


def stream_info(figures: StreamFigures, group: str) -> StreamInfo:
    """What ``figures`` say of ``group`` (a group that does not exist has nothing pending and
    an unknown lag)."""
    found = next((g for g in figures.groups if g.group == group), None)
    return StreamInfo(
        stream=figures.stream,
        length=figures.length,
        pending=found.pending if found is not None else 0,
        lag=found.lag if found is not None else None,
        dead_letters=figures.dead_letters,
        consumers=found.consumers if found is not None else 0,
        oldest_pending_age=found.oldest_pending_age if found is not None else None,
    )


SettlementCallback = Callable[[Sequence[str], Sequence[str]], None]
"""``callback(settled_event_ids, dropped_event_ids)``; see :meth:`EventBus.watch_settlements`."""


class EventBus(Protocol):
    """Streams with consumer groups. All methods may raise ``BusUnavailable``/``BusError``."""

    kind: str
    """``redis`` or ``in-process``: shown by the health check."""
    durable: bool
    """Whether a published entry outlives this process. When false the relay marks an outbox
    message sent only once the consumers have settled it (see :meth:`settled`)."""

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def ping(self) -> None: ...

    async def publish(self, stream: str, messages: Sequence[BusMessage]) -> list[str]:
        """Append ``messages`` in order (one round trip), trimming the stream to about its
        maximum length; returns their entry ids."""
        ...

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create ``group`` (reading from the start of ``stream``) unless it exists."""

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        """Up to ``count`` entries never delivered to ``group``, waiting up to ``block_ms`` on
        the server for the first one; they are pending for ``consumer`` until acknowledged."""
        ...

    async def claim(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Delivery]:
        """Take over up to ``count`` entries pending in ``group`` for at least ``min_idle``
        seconds (any consumer's, this one's included); their delivery count goes up by one."""
        ...

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None: ...

    async def dead_letter(
        self, group: str, delivery: Delivery, reason: str, *, event_id: str | None = None
    ) -> bool:
        """Copy the entry to ``<stream>:dead`` with the reason, and acknowledge it, at once;
        returns ``True``.

        With ``event_id``: unless ``group`` dead-lettered that event before (remembered for
        ``DEAD_LETTER_MEMORY_SECONDS``, at most the stream's maximum length of events per
        group, surviving a restart of the consumer; on Redis of the process too): then the
        entry is only acknowledged, and ``False`` returned."""

    async def entries(self, stream: str, *, count: int = 100) -> list[Delivery]:
        """The first ``count`` entries of ``stream`` (oldest first), without delivering them."""
        ...

    async def info(self, stream: str, group: str) -> StreamInfo:
        """``stream`` as ``group`` sees it: :func:`stream_info` of :meth:`figures`."""
        ...

    async def figures(self, stream: str) -> StreamFigures:
        """The length of ``stream``, its dead letters, and each of its consumer groups'
        pending entries, the age of the oldest of them, and lag (a stream that does not exist
        has none)."""
        ...

    def watch_settlements(self, callback: SettlementCallback) -> None:
        """For a bus that is not :attr:`durable`: call ``callback(settled, dropped)`` with the
        event ids of entries every group has acknowledged or dead-lettered (``settled``) and
        of entries trimmed before that (``dropped``: publish them again). A durable bus never
        calls it."""
