"""The protocol every store backend (memory, SQLite, PostgreSQL) implements.

Writes arrive only as batches from the store actor (:meth:`StoreBackend.commit`). Reads may be
called concurrently from any task and must not wait behind a batch longer than they must.
Backends translate their driver's errors: ``StoreUnavailable`` when the database cannot be
reached, ``StoreError`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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


class StoreBackend(Protocol):
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        """Commit a batch in one transaction where possible; one result per request, in order.

        A request whose ``expected_version`` does not match fails alone with
        ``ConcurrencyError``; one whose saga idempotency key is taken fails alone with
        ``DuplicateIdempotencyKey``; one whose ``lease`` the stored saga no longer matches
        fails alone with ``LeaseLost``. Requests for the same stream apply in batch order. Raises
        ``StoreUnavailable``/``StoreError`` when nothing of the batch could be committed.
        """
        ...

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[RecordedEvent]: ...

    async def find_event(self, event_id: str) -> RecordedEvent | None:
        """The stored event with this id, or ``None``."""
        ...

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        """Every event of each named stream, by stream id, in version order (for recovery);
        a stream with no events is absent."""
        ...

    async def read_all(
        self, *, after_position: int = 0, limit: int = 1000
    ) -> list[RecordedEvent]: ...

    async def event_types(self) -> list[str]: ...

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        """The saga with its steps, or ``None``."""
        ...

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None: ...

    async def list_sagas(self, query: SagaQuery) -> SagaPage:
        """Newest first (``created_at`` then ``saga_id`` descending), steps not loaded."""
        ...

    async def active_sagas(self) -> list[SagaRecord]:
        """Every saga whose status is in ``ACTIVE_STATUSES`` (steps not loaded)."""
        ...

    async def active_counts(self) -> dict[tuple[str, int], int]:
        """How many sagas are active (``ACTIVE_STATUSES``), by (saga type, version); pairs with
        none are absent."""
        ...

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        """Unsent outbox messages, oldest first."""
        ...

    async def outbox_mark_sent(self, ids: Sequence[int]) -> None: ...

    async def ping(self) -> None:
        """Round trip to the database; raises ``StoreUnavailable`` if it does not answer."""
        ...

    # -- instances and saga ownership (docs/operations.md, "Several replicas") ---------------

    async def register_instance(
        self, instance_id: str, info: dict[str, object], ttl: float
    ) -> InstanceRecord:
        """Register (or re-register) a live instance whose leases end ``ttl`` seconds from now
        (the database's clock)."""
        ...

    async def renew_instance(self, instance_id: str, ttl: float) -> bool:
        """Extend the instance's leases to ``ttl`` seconds from now; False when its row is gone
        or its leases have ended already (it was, or may have been, taken for dead: its sagas
        may be another's now, so it must stop and register again)."""
        ...

    async def deregister_instance(self, instance_id: str) -> int:
        """Release the instance's sagas (owner cleared, for others to claim at once) and remove
        it; how many sagas it released."""
        ...

    async def live_instances(self) -> list[InstanceRecord]:
        """The instances whose leases have not ended, oldest first."""
        ...

    async def claim_orphans(
        self, instance_id: str, limit: int, *, mine: bool = False, loaded: Loaded | None = None
    ) -> list[ClaimedSaga]:
        """Claim up to ``limit`` active sagas that no live instance owns (unowned, or owned by
        an instance whose lease ended), oldest first, and with ``mine`` the active sagas the
        instance owns already (its coordinator restarted: no actor drives them); each claim
        bumps the saga's epoch. Only sagas whose (type, version) is in ``loaded`` (the
        definitions the claimer has) are claimed; ``None``: any. Instances that are dead and
        own nothing any more are removed. Concurrent claimers never get the same saga."""
        ...

    async def orphans_by_definition(self) -> dict[tuple[str, int], int]:
        """How many active sagas no live instance owns, by (type, version): those whose
        definition is loaded are what :meth:`claim_orphans` would take without ``mine`` (the
        claimers share them out); the others wait for a process with their definition."""
        ...

    async def claim_saga(self, instance_id: str, saga_id: str, *, force: bool) -> int | None:
        """Claim one saga: when it is unowned or its owner is not live, or whatever its owner
        when ``force`` (a parked saga an operator retries: no instance drives it); the new
        epoch, or ``None`` when it is not claimed."""
        ...

    async def saga_owner(self, saga_id: str) -> tuple[str | None, int, bool]:
        """(owner, epoch, whether the owner is live) of a saga; ``(None, 0, False)`` for an
        unknown or unowned one."""
        ...

    # -- commands for a saga owned by another instance ----------------------------------------

    async def send_command(self, command: SagaCommand, owner: str | None) -> None:
        """Keep ``command`` until the saga's owner applies it, and wake ``owner`` (the instance
        that owns the saga now) if it is waiting in :meth:`wait_for_commands`."""
        ...

    async def pending_commands(self, instance_id: str, limit: int) -> list[SagaCommand]:
        """Commands not applied yet for the sagas ``instance_id`` owns, oldest first."""
        ...

    async def finish_command(self, command_id: str, outcome: dict[str, object]) -> None:
        """Record how a command ended (it is applied: no longer pending)."""
        ...

    async def command_outcome(self, command_id: str) -> dict[str, object] | None:
        """How a command ended, or ``None`` while it is pending."""
        ...

    async def wait_for_commands(self, instance_id: str, at_most: float) -> None:
        """Return when a command may have been sent to ``instance_id``, or after ``at_most``
        seconds (backends without notifications just wait)."""
        ...

    async def purge_commands(self, older_than: float) -> int:
        """Forget the commands created more than ``older_than`` seconds ago, applied or not."""

    def relay_leadership(self) -> RelayLeadership:
        """A new claim to lead the outbox relay of this database (one leader per database
        publishes its outbox; see :mod:`.leadership`)."""
        ...
