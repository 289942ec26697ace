"""The in-process event bus: Redis Streams semantics in memory, for the embedded default.

Same contract as the Redis adapter: consumer groups reading from the start of a stream, entries
pending until acknowledged, claiming after an idle time with a delivery count, a dead-letter
stream with the memory of the events each group dead-lettered (as long as the bus lives: a
restarted consumer keeps it, a restarted process does not), and streams trimmed to
``max_length`` entries (oldest first, pending or not). Idle times use ``trio.current_time()``,
so a test's ``MockClock`` drives them.

Nothing here outlives the process (:attr:`InProcessBus.durable` is false). The relay therefore
marks an outbox message sent only when every consumer group that existed when it was published
has acknowledged or dead-lettered it (:meth:`InProcessBus.watch_settlements`): an event accepted
before a crash is still in the outbox after it, and is published again.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import attrs
import trio

from saga_orchestrator.errors import BusError

from .base import (
    DEAD_LETTER_MEMORY_SECONDS,
    BusMessage,
    Delivery,
    GroupFigures,
    SettlementCallback,
    StreamFigures,
    StreamInfo,
    dead_letter_fields,
    dead_letter_stream,
    stream_info,
)

__all__ = ["InProcessBus"]


@attrs.define(eq=False)
class _Entry:
    fields: dict[str, str]
    waiting: set[str]
    """Groups that have neither acknowledged nor dead-lettered it yet."""
    added_at: float
    """``trio.current_time()`` when it was appended."""


@attrs.define(eq=False)
class _Pending:
    consumer: str
    delivered_at: float
    added_at: float
    """Its entry's (kept here: the entry may be trimmed while pending)."""
    deliveries: int = 1


@attrs.define(eq=False)
class _Group:
    last_seq: int = 0
    pending: dict[int, _Pending] = attrs.field(factory=dict)
    consumers: set[str] = attrs.field(factory=set)


@attrs.define(eq=False)
class _Stream:
    entries: dict[int, _Entry] = attrs.field(factory=dict)
    """Consecutive sequence numbers from ``first_seq`` to ``next_seq - 1``."""
    first_seq: int = 1
    next_seq: int = 1
    groups: dict[str, _Group] = attrs.field(factory=dict)
    changed: trio.Event = attrs.field(factory=trio.Event)


def _entry_id(seq: int) -> str:
    return f"{seq}-0"


def _seq(entry_id: str) -> int:
    try:
        return int(entry_id.partition("-")[0])
    except ValueError:
        raise BusError(f"{entry_id!r} is not an entry id of this bus") from None


class InProcessBus:
    """Streams in memory, each bounded to ``max_length`` entries."""

    kind = "in-process"
    durable = False

    def __init__(
        self,
        *,
        max_length: int = 100_000,
        dead_letter_memory: float = DEAD_LETTER_MEMORY_SECONDS,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, not {max_length}")
        self.max_length = max_length
        self.dead_letter_memory = dead_letter_memory
        self._streams: dict[str, _Stream] = {}
        self._settlements: SettlementCallback | None = None
        self._dead_ids: dict[tuple[str, str], collections.OrderedDict[str, float]] = {}
        """(stream, group) -> event id -> when it was dead-lettered, oldest first."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    def watch_settlements(self, callback: SettlementCallback) -> None:
        self._settlements = callback

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        found = self._streams.get(stream)
        if found is None or group not in found.groups:
            raise BusError(f"NOGROUP: no consumer group {group!r} on stream {stream!r}")
        return found, found.groups[group]

    def _report(self, settled: Sequence[str], dropped: Sequence[str]) -> None:
        if self._settlements is not None and (settled or dropped):
            self._settlements(settled, dropped)

    def _append(self, name: str, all_fields: Sequence[dict[str, str]]) -> list[str]:
        stream = self._stream(name)
        ids, settled, dropped = [], [], []
        now = trio.current_time()
        for fields in all_fields:
            seq = stream.next_seq
            stream.next_seq += 1
            stream.entries[seq] = _Entry(
                fields=dict(fields), waiting=set(stream.groups), added_at=now
            )
            if not stream.groups:
                settled.append(fields.get("event_id", ""))
            ids.append(_entry_id(seq))
        while len(stream.entries) > self.max_length:
            trimmed = stream.entries.pop(stream.first_seq)
            stream.first_seq += 1
            if trimmed.waiting:
                dropped.append(trimmed.fields.get("event_id", ""))
        stream.changed.set()
        stream.changed = trio.Event()
        self._report(settled, dropped)
        return ids

    async def publish(self, stream: str, messages: Sequence[BusMessage]) -> list[str]:
        return self._append(stream, [message.to_fields() for message in messages])

    async def ensure_group(self, stream: str, group: str) -> None:
        self._stream(stream).groups.setdefault(group, _Group())

    async def read(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[Delivery]:
        waited = False
        while True:
            found, state = self._group(stream, group)
            state.consumers.add(consumer)
            start = max(state.last_seq + 1, found.first_seq)
            seqs = range(start, min(found.next_seq, start + count))
            if seqs:
                now = trio.current_time()
                for seq in seqs:
                    state.pending[seq] = _Pending(
                        consumer=consumer, delivered_at=now, added_at=found.entries[seq].added_at
                    )
                state.last_seq = seqs[-1]
                return [
                    Delivery(stream=stream, entry_id=_entry_id(s), fields=found.entries[s].fields)
                    for s in seqs
                ]
            if waited:
                return []
            with trio.move_on_after(block_ms / 1000):
                await found.changed.wait()
            waited = True

    async def claim(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int
    ) -> list[Delivery]:
        found, state = self._group(stream, group)
        state.consumers.add(consumer)
        now = trio.current_time()
        claimed: list[Delivery] = []
        for seq, pending in list(state.pending.items()):
            if len(claimed) >= count:
                break
            if now - pending.delivered_at < min_idle:
                continue
            entry = found.entries.get(seq)
            if entry is None:  # trimmed while pending: gone (reported as dropped then)
                del state.pending[seq]
                continue
            pending.consumer = consumer
            pending.delivered_at = now
            pending.deliveries += 1
            claimed.append(
                Delivery(
                    stream=stream,
                    entry_id=_entry_id(seq),
                    fields=entry.fields,
                    deliveries=pending.deliveries,
                )
            )
        return claimed

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        self._ack(stream, group, entry_ids)

    def _ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> None:
        found, state = self._group(stream, group)
        settled = []
        for entry_id in entry_ids:
            seq = _seq(entry_id)
            if state.pending.pop(seq, None) is None:
                continue
            entry = found.entries.get(seq)
            if entry is not None and group in entry.waiting:
                entry.waiting.discard(group)
                if not entry.waiting:
                    settled.append(entry.fields.get("event_id", ""))
        self._report(settled, ())

    async def dead_letter(
        self, group: str, delivery: Delivery, reason: str, *, event_id: str | None = None
    ) -> bool:
        written = event_id is None or self._remember_dead(delivery.stream, group, event_id)
        if written:
            fields = dead_letter_fields(group, delivery, reason)
            self._append(dead_letter_stream(delivery.stream), [fields])
        self._ack(delivery.stream, group, [delivery.entry_id])
        return written

    def _remember_dead(self, stream: str, group: str, event_id: str) -> bool:
        """Remember that ``group`` dead-letters ``event_id`` now; ``False`` if it had."""
        now = trio.current_time()
        seen = self._dead_ids.setdefault((stream, group), collections.OrderedDict())
        while seen:  # forget what is older than the memory
            oldest, when = next(iter(seen.items()))
            if now - when < self.dead_letter_memory:
                break
            del seen[oldest]
        if event_id in seen:
            return False
        seen[event_id] = now
        while len(seen) > self.max_length:
            seen.popitem(last=False)
        return True

    async def entries(self, stream: str, *, count: int = 100) -> list[Delivery]:
        found = self._streams.get(stream)
        if found is None:
            return []
        seqs = range(found.first_seq, min(found.next_seq, found.first_seq + count))
        return [
            Delivery(
                stream=stream, entry_id=_entry_id(s), fields=found.entries[s].fields, deliveries=0
            )
            for s in seqs
        ]

    async def info(self, stream: str, group: str) -> StreamInfo:
        return stream_info(await self.figures(stream), group)

    async def figures(self, stream: str) -> StreamFigures:
        found = self._streams.get(stream)
        dead = self._streams.get(dead_letter_stream(stream))
        dead_letters = len(dead.entries) if dead is not None else 0
        if found is None:
            return StreamFigures(stream=stream, length=0, dead_letters=dead_letters)
        now = trio.current_time()
        groups = []
        for name, state in sorted(found.groups.items()):
            oldest = min((p.added_at for p in state.pending.values()), default=None)
            groups.append(
                GroupFigures(
                    group=name,
                    pending=len(state.pending),
                    oldest_pending_age=None if oldest is None else now - oldest,
                    lag=found.next_seq - max(state.last_seq + 1, found.first_seq),
                    consumers=len(state.consumers),
                )
            )
        return StreamFigures(
            stream=stream,
            length=len(found.entries),
            dead_letters=dead_letters,
            groups=tuple(groups),
        )
