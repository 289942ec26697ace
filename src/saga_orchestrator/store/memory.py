"""An in-memory store backend: the full contract, nothing durable. For tests and benchmarks."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import attrs

from saga_orchestrator.errors import ConcurrencyError, DuplicateEventId, DuplicateIdempotencyKey

from .leadership import RelayLeadership, SingleProcessLeadership
from .records import (
    ACTIVE_STATUSES,
    ANY_VERSION,
    AppendRequest,
    AppendResult,
    OutboxRecord,
    RecordedEvent,
    SagaPage,
    SagaQuery,
    SagaRecord,
    StepRecord,
    decode_cursor,
    encode_cursor,
)


class MemoryBackend:
    """Keeps everything in dictionaries; ``commits`` counts batches committed."""

    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []
        self.streams: dict[str, list[RecordedEvent]] = {}
        self.sagas: dict[str, SagaRecord] = {}
        self.keys: dict[str, str] = {}
        self.event_ids: dict[str, RecordedEvent] = {}
        self.outbox: dict[int, OutboxRecord] = {}
        self._outbox_ids = itertools.count(1)
        self.commits = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        self.commits += 1
        return [self._apply(request) for request in batch]

    def _apply(self, request: AppendRequest) -> AppendResult | Exception:
        stream = self.streams.get(request.stream_id, [])
        current = len(stream)
        if request.expected_version not in (ANY_VERSION, current):
            return ConcurrencyError(request.stream_id, request.expected_version, current)
        ids = [e.event_id for e in request.events]
        if len(set(ids)) != len(ids) or any(i in self.event_ids for i in ids):
            return DuplicateEventId(ids)
        saga = request.saga
        if saga is not None and saga.idempotency_key is not None:
            owner = self.keys.get(saga.idempotency_key)
            if owner is not None and owner != saga.saga_id:
                return DuplicateIdempotencyKey(saga.idempotency_key, owner)
        now = time.time()
        appended = []
        for offset, event in enumerate(request.events, start=1):
            recorded = RecordedEvent(
                position=len(self.events) + 1,
                stream_id=request.stream_id,
                version=current + offset,
                event_id=event.event_id,
                event_type=event.event_type,
                data=event.data,
                metadata=event.metadata,
                recorded_at=now,
            )
            self.events.append(recorded)
            self.event_ids[recorded.event_id] = recorded
            appended.append(recorded)
        if appended:  # an append without events leaves its stream as it is
            stream.extend(appended)  # readers get slices (copies) of it
            self.streams[request.stream_id] = stream
        if saga is not None:
            previous = self.sagas.get(saga.saga_id)
            # The given steps are upserted by index and the saga's other steps stay; kept
            # sorted by index, as the SQL backends return them.
            saga = attrs.evolve(saga, steps=_merged_steps(previous, saga.steps))
            self.sagas[saga.saga_id] = saga
            if saga.idempotency_key is not None:
                self.keys[saga.idempotency_key] = saga.saga_id
        for message in request.outbox:
            outbox_id = next(self._outbox_ids)
            self.outbox[outbox_id] = OutboxRecord(
                id=outbox_id,
                topic=message.topic,
                event=message.event,
                created_at=now,
                occurred_at=now if message.occurred_at is None else message.occurred_at,
            )
        return AppendResult(
            stream_id=request.stream_id,
            version=current + len(appended),
            positions=tuple(e.position for e in appended),
        )

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[RecordedEvent]:
        stream = self.streams.get(stream_id, [])
        return stream[max(from_version, 1) - 1 :][:limit]

    async def find_event(self, event_id: str) -> RecordedEvent | None:
        return self.event_ids.get(event_id)

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        return {s: list(self.streams[s]) for s in stream_ids if self.streams.get(s)}

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return self.events[after_position : after_position + limit]

    async def event_types(self) -> list[str]:
        return sorted({e.event_type for e in self.events})

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        return self.sagas.get(saga_id)

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None:
        saga_id = self.keys.get(idempotency_key)
        return None if saga_id is None else self.sagas[saga_id]

    async def list_sagas(self, query: SagaQuery) -> SagaPage:
        rows = sorted(self.sagas.values(), key=lambda s: (s.created_at, s.saga_id), reverse=True)
        after = decode_cursor(query.cursor) if query.cursor else None
        picked: list[SagaRecord] = []
        for saga in rows:
            if after is not None and (saga.created_at, saga.saga_id) >= after:
                continue
            if query.status is not None and saga.status != query.status:
                continue
            if query.saga_type is not None and saga.saga_type != query.saga_type:
                continue
            if query.created_after is not None and saga.created_at < query.created_after:
                continue
            if query.created_before is not None and saga.created_at >= query.created_before:
                continue
            picked.append(attrs.evolve(saga, steps=()))
            if len(picked) > query.limit:
                break
        more = len(picked) > query.limit
        items = tuple(picked[: query.limit])
        cursor = encode_cursor(items[-1].created_at, items[-1].saga_id) if more and items else None
        return SagaPage(items=items, next_cursor=cursor)

    async def active_sagas(self) -> list[SagaRecord]:
        return [
            attrs.evolve(s, steps=()) for s in self.sagas.values() if s.status in ACTIVE_STATUSES
        ]

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        return [self.outbox[i] for i in sorted(self.outbox)[:limit]]

    async def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        for outbox_id in ids:
            self.outbox.pop(outbox_id, None)

    def relay_leadership(self) -> RelayLeadership:
        """Always the leader: the memory of one process."""
        return SingleProcessLeadership(self.outbox_pending)


def _merged_steps(
    previous: SagaRecord | None, given: Sequence[StepRecord]
) -> tuple[StepRecord, ...]:
    """``previous``'s steps with ``given`` upserted by index, sorted by index."""
    if previous is None:
        return tuple(sorted(given, key=lambda s: s.index))
    merged = list(previous.steps)
    for step in given:
        if step.index < len(merged) and merged[step.index].index == step.index:
            merged[step.index] = step  # the usual case: the steps are 0..n-1 in order
        else:
            by_index = {s.index: s for s in merged}
            by_index[step.index] = step
            merged = [by_index[i] for i in sorted(by_index)]
    return tuple(merged)
