"""The store actor: group commit of appends, and the :class:`Store` handle the others use.

Appends waiting in the mailbox are committed together in one transaction; each sender's reply
comes after that commit. An idle store commits a lone append at once; a busy one commits bigger
batches (up to ``max_batch``). Reads do not pass through the mailbox: they go to the backend
directly, so they never queue behind writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import attrs
import trio

from saga_orchestrator.actors import ActorRef, ActorSystem, Envelope, Mailbox
from saga_orchestrator.errors import StoreError

from .backend import StoreBackend
from .leadership import RelayLeadership
from .records import (
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
)

log = logging.getLogger(__name__)


@attrs.frozen
class Append:
    """Ask: commit this request; answers ``AppendResult`` or the request's error."""

    request: AppendRequest


@attrs.define
class StoreStats:
    """Counters of the store actor: exported as metrics (``store_batches_total``,
    ``store_outbox_messages_total``); ``GET /health`` shows ``failed_batches``."""

    batches: int = 0
    """Transactions committed (one per batch)."""
    appends: int = 0
    """Requests committed."""
    failed_batches: int = 0
    """Transactions that failed (each of their appends was answered with the error)."""
    largest_batch: int = 0
    outbox_messages: int = 0
    """Outbox messages committed."""
    outbox_committed: trio.Event = attrs.field(factory=trio.Event)
    """Set after a batch with outbox messages commits; the outbox relay waits on it, then puts
    a fresh event here."""
    on_batch: Callable[[int, float], None] | None = None
    """Called after each committed batch with its size and commit seconds (metrics)."""


async def run_store_actor(
    backend: StoreBackend,
    stats: StoreStats,
    mailbox: Mailbox[Append],
    *,
    max_batch: int,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The store actor's body: take what is waiting, commit it as one batch, reply to each.

    A backend that can have several batches in flight (``commits_in_flight``, PostgreSQL's
    writer connections) gets the next batch while the last one commits: the database orders
    them (each waits for the one before it), and what arrives meanwhile makes the next batch.
    """
    task_status.started()
    in_flight = max(1, getattr(backend, "commits_in_flight", 1))
    async with trio.open_nursery() as nursery:
        for _ in range(in_flight):
            nursery.start_soon(_commit_batches, backend, stats, mailbox, max_batch)


async def _commit_batches(
    backend: StoreBackend, stats: StoreStats, mailbox: Mailbox[Append], max_batch: int
) -> None:
    """One of the store actor's committers: take what is waiting, commit it, again. While one
    committer's batch is in flight, another gathers the next (each is idle until an append
    comes, so an idle store still commits a lone append at once)."""
    while True:
        try:
            first = await mailbox.receive()
        except trio.EndOfChannel:
            return
        batch: list[Envelope[Append]] = [first]
        while len(batch) < max_batch:
            try:
                batch.append(mailbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        await _commit(backend, stats, batch)


async def _commit(
    backend: StoreBackend, stats: StoreStats, batch: Sequence[Envelope[Append]]
) -> None:
    started = time.perf_counter()
    try:
        results = await backend.commit([envelope.message.request for envelope in batch])
    except Exception as exc:
        # Each sender gets the error; the store actor holds no state a failed batch could
        # corrupt, so it goes on with the next batch.
        stats.failed_batches += 1
        if not isinstance(exc, StoreError):
            log.exception("a batch of %d appends failed with an unexpected error", len(batch))
        for envelope in batch:
            envelope.respond_error(exc)
        return
    stats.batches += 1
    stats.appends += len(batch)
    stats.largest_batch = max(stats.largest_batch, len(batch))
    if stats.on_batch is not None:
        stats.on_batch(len(batch), time.perf_counter() - started)
    outbox = 0
    for envelope, result in zip(batch, results, strict=True):
        if isinstance(result, Exception):
            envelope.respond_error(result)
        else:
            outbox += len(envelope.message.request.outbox)
            envelope.respond(result)
    if outbox:
        stats.outbox_messages += outbox
        stats.outbox_committed.set()


class Store:
    """What the rest of the service holds: appends through the store actor, reads direct."""

    def __init__(self, ref: ActorRef[Append], backend: StoreBackend, stats: StoreStats) -> None:
        self.ref = ref
        self.backend = backend
        self.stats = stats

    async def append(self, request: AppendRequest) -> AppendResult:
        """Commit ``request`` (in a group commit); returns once it is durable.

        Raises:
            ConcurrencyError: ``expected_version`` is not the stream's version.
            DuplicateIdempotencyKey: the saga's idempotency key is taken.
            StoreUnavailable: the database cannot be reached; retry later.
        """
        # No ask timeout: the backend bounds each commit (its command timeout) and the store
        # actor answers every append, also with an error.
        return await self.ref.ask(Append(request), timeout=None)

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[RecordedEvent]:
        return await self.backend.read_stream(stream_id, from_version=from_version, limit=limit)

    async def find_event(self, event_id: str) -> RecordedEvent | None:
        return await self.backend.find_event(event_id)

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        return await self.backend.read_streams(stream_ids)

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return await self.backend.read_all(after_position=after_position, limit=limit)

    async def event_types(self) -> list[str]:
        return await self.backend.event_types()

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        return await self.backend.get_saga(saga_id)

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None:
        return await self.backend.find_saga_by_key(idempotency_key)

    async def list_sagas(self, query: SagaQuery) -> SagaPage:
        return await self.backend.list_sagas(query)

    async def active_sagas(self) -> list[SagaRecord]:
        return await self.backend.active_sagas()

    async def active_counts(self) -> dict[tuple[str, int], int]:
        return await self.backend.active_counts()

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        return await self.backend.outbox_pending(limit=limit)

    async def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        await self.backend.outbox_mark_sent(ids)

    async def ping(self) -> None:
        await self.backend.ping()

    # -- instances and saga ownership (straight to the backend, like reads) --------------------

    async def register_instance(
        self, instance_id: str, info: dict[str, object], ttl: float
    ) -> InstanceRecord:
        return await self.backend.register_instance(instance_id, info, ttl)

    async def renew_instance(self, instance_id: str, ttl: float) -> bool:
        return await self.backend.renew_instance(instance_id, ttl)

    async def deregister_instance(self, instance_id: str) -> int:
        return await self.backend.deregister_instance(instance_id)

    async def live_instances(self) -> list[InstanceRecord]:
        return await self.backend.live_instances()

    async def claim_orphans(
        self, instance_id: str, limit: int, *, mine: bool = False, loaded: Loaded | None = None
    ) -> list[ClaimedSaga]:
        return await self.backend.claim_orphans(instance_id, limit, mine=mine, loaded=loaded)

    async def orphans_by_definition(self) -> dict[tuple[str, int], int]:
        return await self.backend.orphans_by_definition()

    async def claim_saga(self, instance_id: str, saga_id: str, *, force: bool) -> int | None:
        return await self.backend.claim_saga(instance_id, saga_id, force=force)

    async def saga_owner(self, saga_id: str) -> tuple[str | None, int, bool]:
        return await self.backend.saga_owner(saga_id)

    # -- commands for a saga owned by another instance -------------------------------------------

    async def send_command(self, command: SagaCommand, owner: str | None) -> None:
        await self.backend.send_command(command, owner)

    async def pending_commands(self, instance_id: str, limit: int) -> list[SagaCommand]:
        return await self.backend.pending_commands(instance_id, limit)

    async def finish_command(self, command_id: str, outcome: dict[str, object]) -> None:
        await self.backend.finish_command(command_id, outcome)

    async def command_outcome(self, command_id: str) -> dict[str, object] | None:
        return await self.backend.command_outcome(command_id)

    async def wait_for_commands(self, instance_id: str, at_most: float) -> None:
        await self.backend.wait_for_commands(instance_id, at_most)

    async def purge_commands(self, older_than: float) -> int:
        return await self.backend.purge_commands(older_than)

    def relay_leadership(self) -> RelayLeadership:
        """A new claim to lead the outbox relay of the database (see ``store/leadership.py``)."""
        return self.backend.relay_leadership()


async def start_store(
    system: ActorSystem,
    backend: StoreBackend,
    *,
    mailbox_size: int = 4096,
    max_batch: int = 512,
) -> Store:
    """Spawn the store actor (a permanent child of the root supervisor) over an open backend."""
    stats = StoreStats()

    async def behaviour(
        mailbox: Mailbox[Append], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await run_store_actor(backend, stats, mailbox, max_batch=max_batch, task_status=task_status)

    ref = await system.spawn("store", behaviour, capacity=mailbox_size)
    return Store(ref, backend, stats)
