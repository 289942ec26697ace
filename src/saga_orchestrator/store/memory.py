"""An in-memory store backend: the full contract, nothing durable. For tests and benchmarks."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Sequence

import attrs

from saga_orchestrator.errors import (
    ConcurrencyError,
    DuplicateEventId,
    DuplicateIdempotencyKey,
    LeaseLost,
)

from ._command_wakers import CommandWakers
from .leadership import RelayLeadership, SingleProcessLeadership
from .records import (
    ACTIVE_STATUSES,
    ANY_VERSION,
    AppendRequest,
    AppendResult,
    ClaimedSaga,
    InstanceRecord,
    Loaded,
    OutboxRecord,
    RecordedEvent,
    SagaCommand,
    SagaPage,
    SagaQuery,
    SagaRecord,
    StepRecord,
    decode_cursor,
    encode_cursor,
)


class MemoryBackend:
    """Keeps everything in dictionaries; ``commits`` counts batches committed."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        """The database's clock: lease expiry (tests pass a virtual one)."""
        self.instances: dict[str, InstanceRecord] = {}
        self.owners: dict[str, tuple[str | None, int]] = {}
        """saga id -> (owning instance, epoch)."""
        self.commands: dict[str, tuple[SagaCommand, dict[str, object] | None, float | None]] = {}
        """command id -> (command, outcome, done at)."""
        self._command_wakers = CommandWakers()
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
        lease = request.lease
        if lease is not None and saga is not None:
            held = self.owners.get(saga.saga_id)
            if held is None:
                self.owners[saga.saga_id] = (lease.instance_id, lease.epoch)
            elif held != (lease.instance_id, lease.epoch):
                return LeaseLost(saga.saga_id, lease.instance_id, held[0])
        now = self.clock()
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
            if not query.matches(saga):
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

    async def active_counts(self) -> dict[tuple[str, int], int]:
        return dict(
            Counter(
                (s.saga_type, s.saga_version)
                for s in self.sagas.values()
                if s.status in ACTIVE_STATUSES
            )
        )

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        return [self.outbox[i] for i in sorted(self.outbox)[:limit]]

    async def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        for outbox_id in ids:
            self.outbox.pop(outbox_id, None)

    # -- instances and saga ownership -----------------------------------------------------------

    async def register_instance(
        self, instance_id: str, info: dict[str, object], ttl: float
    ) -> InstanceRecord:
        now = self.clock()
        record = InstanceRecord(
            instance_id=instance_id,
            started_at=now,
            heartbeat_at=now,
            expires_at=now + ttl,
            info=dict(info),
        )
        self.instances[instance_id] = record
        return record

    async def renew_instance(self, instance_id: str, ttl: float) -> bool:
        record = self.instances.get(instance_id)
        now = self.clock()
        if record is None or record.expires_at <= now:
            return False  # gone or expired: its sagas may be another's already
        self.instances[instance_id] = attrs.evolve(record, heartbeat_at=now, expires_at=now + ttl)
        return True

    async def deregister_instance(self, instance_id: str) -> int:
        released = 0
        for saga_id, (owner, epoch) in self.owners.items():
            if owner == instance_id:
                self.owners[saga_id] = (None, epoch)
                released += 1
        self.instances.pop(instance_id, None)
        return released

    async def live_instances(self) -> list[InstanceRecord]:
        now = self.clock()
        live = [r for r in self.instances.values() if r.expires_at > now]
        return sorted(live, key=lambda r: (r.started_at, r.instance_id))

    def _live(self, instance_id: str | None) -> bool:
        record = None if instance_id is None else self.instances.get(instance_id)
        return record is not None and record.expires_at > self.clock()

    def _orphan(self, saga: SagaRecord) -> bool:
        """Active, and no live instance owns it."""
        owner = self.owners.get(saga.saga_id, (None, 0))[0]
        return saga.status in ACTIVE_STATUSES and not self._live(owner)

    async def claim_orphans(
        self, instance_id: str, limit: int, *, mine: bool = False, loaded: Loaded | None = None
    ) -> list[ClaimedSaga]:
        def claimable(saga: SagaRecord) -> bool:
            owner = self.owners.get(saga.saga_id, (None, 0))[0]
            return (
                saga.status in ACTIVE_STATUSES
                and ((mine and owner == instance_id) or not self._live(owner))
                and _loaded(saga, loaded)
            )

        orphans = sorted(
            (saga for saga in self.sagas.values() if claimable(saga)),
            key=lambda saga: (saga.created_at, saga.saga_id),
        )[: max(limit, 0)]
        claimed = []
        for saga in orphans:
            previous, epoch = self.owners.get(saga.saga_id, (None, 0))
            self.owners[saga.saga_id] = (instance_id, epoch + 1)
            claimed.append(
                ClaimedSaga(
                    saga_id=saga.saga_id,
                    saga_type=saga.saga_type,
                    saga_version=saga.saga_version,
                    epoch=epoch + 1,
                    previous_owner=previous,
                )
            )
        if len(claimed) < limit:  # no orphan left: forget the dead that own nothing
            owning = {owner for owner, _ in self.owners.values()}
            for dead in [i for i in self.instances if not self._live(i) and i not in owning]:
                del self.instances[dead]
        return claimed

    async def orphans_by_definition(self) -> dict[tuple[str, int], int]:
        return dict(
            Counter((s.saga_type, s.saga_version) for s in self.sagas.values() if self._orphan(s))
        )

    async def claim_saga(self, instance_id: str, saga_id: str, *, force: bool) -> int | None:
        if saga_id not in self.sagas:
            return None
        owner, epoch = self.owners.get(saga_id, (None, 0))
        if owner == instance_id:
            return epoch
        if not force and self._live(owner):
            return None
        self.owners[saga_id] = (instance_id, epoch + 1)
        return epoch + 1

    async def saga_owner(self, saga_id: str) -> tuple[str | None, int, bool]:
        owner, epoch = self.owners.get(saga_id, (None, 0))
        return owner, epoch, self._live(owner)

    # -- commands for a saga owned by another instance ----------------------------------------

    async def send_command(self, command: SagaCommand, owner: str | None) -> None:
        self.commands[command.command_id] = (
            attrs.evolve(command, created_at=self.clock()),
            None,
            None,
        )
        self._command_wakers.wake(owner)

    async def pending_commands(self, instance_id: str, limit: int) -> list[SagaCommand]:
        pending = [
            command
            for command, _, done_at in self.commands.values()
            if done_at is None and self.owners.get(command.saga_id, (None, 0))[0] == instance_id
        ]
        return sorted(pending, key=lambda c: (c.created_at, c.command_id))[: max(limit, 0)]

    async def finish_command(self, command_id: str, outcome: dict[str, object]) -> None:
        found = self.commands.get(command_id)
        if found is not None:
            self.commands[command_id] = (found[0], dict(outcome), self.clock())

    async def command_outcome(self, command_id: str) -> dict[str, object] | None:
        found = self.commands.get(command_id)
        return None if found is None else found[1]

    async def wait_for_commands(self, instance_id: str, at_most: float) -> None:
        await self._command_wakers.wait(instance_id, at_most)

    async def purge_commands(self, older_than: float) -> int:
        cutoff = self.clock() - older_than
        old = [i for i, (c, _, _) in self.commands.items() if c.created_at < cutoff]
        for command_id in old:
            del self.commands[command_id]
        return len(old)

    def relay_leadership(self) -> RelayLeadership:
        """Always the leader: the memory of one process."""
        return SingleProcessLeadership(self.outbox_pending)


def _loaded(saga: SagaRecord, loaded: Loaded | None) -> bool:
    return loaded is None or (saga.saga_type, saga.saga_version) in loaded


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
