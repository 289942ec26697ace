"""Which sagas this instance drives: it claims them from the store, and resumes each claimed one
from its history.

* *Recovery* (start-up, and after the lease was lost): claim the active sagas no live instance
  owns, and this instance's own (its coordinator restarted), in bounded batches.
* *Failover*: every ``scan_interval`` seconds, claim the sagas of instances whose lease ended
  (and those released by an instance that shut down): this instance's share of them (the
  orphans over the live instances, at least one batch), as many as it admits. Concurrent
  claimers never take the same saga, and each takes its share, so the orphans spread across
  the live instances; a look that finds none takes no lock.
* *One saga* for a command that arrives here when no live instance drives it.

Only the sagas whose definition version this process has loaded are claimed. Those no live
instance owns and whose version is not loaded here *wait for their definition*: counted at
recovery and at every failover look (:attr:`Ownership.waiting`, logged when it changes), they
are claimed like any orphan once a process that has the version runs.

A claim is one atomic statement in the store that takes a saga only from no live owner, and
bumps its epoch: the old owner's appends are fenced from then on (docs/operations.md).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

from saga_orchestrator.errors import OverloadedError, UnknownSagaType, UnknownSagaVersion
from saga_orchestrator.store import Store
from saga_orchestrator.store.records import ClaimedSaga, Lease
from saga_orchestrator.store.retry import retry_unavailable

from . import state as sm
from .lease import InstanceLease
from .options import EngineOptions
from .projection import stream_id
from .saga_supervision import SagaSupervision
from .transitions import from_record

__all__ = ["CLAIM_CAUSES", "Ownership"]

log = logging.getLogger(__name__)

T = TypeVar("T")

CLAIM_CAUSES = ("recovery", "failover", "hand-over", "command")
"""Why sagas were claimed, as the ``saga_claims`` metric counts them: at start-up (or after a
lost lease), from a dead instance, released by one that shut down, for a command."""


@attrs.define(eq=False)
class Ownership:
    """Claims sagas for this instance and hands them to :class:`SagaSupervision`."""

    store: Store
    lease: InstanceLease
    sagas: SagaSupervision
    options: EngineOptions
    capacity: Callable[[], int]
    """How many more sagas this instance admits now."""
    claims: Counter[str] = attrs.field(factory=Counter)
    """Sagas claimed, by cause (:data:`CLAIM_CAUSES`)."""
    recovered: int = 0
    """Sagas the last recovery resumed."""
    waiting: dict[tuple[str, int], int] = attrs.field(factory=dict)
    """Active sagas no live instance owns whose definition version this process has not
    loaded, by (type, version), as of the last look."""

    async def recover(self) -> int:
        """Claim and resume every saga that is this instance's to drive now; how many."""
        await self.lease.registered.wait()
        self.recovered = await self._claim_all(mine=True, limit=self.capacity())
        log.info("recovery done: %d sagas resumed", self.recovered)
        await self._look()  # reports the sagas that wait for their definition
        return self.recovered

    async def failover(self) -> None:
        """Look for sagas no live instance owns every ``scan_interval`` seconds, forever."""
        while True:
            await trio.sleep(self.options.scan_interval)
            if not self.lease.holds:
                continue
            try:
                share = self._share(await self._look())
                if share > 0:
                    await self._claim_all(mine=False, limit=share)
            except Exception:  # one bad look must not stop the next ones
                log.exception("looking for sagas to take over failed")

    async def _look(self) -> int:
        """Count the sagas no live instance owns (one read): how many of them this process
        can drive; the others wait for their definition (:attr:`waiting`, a WARNING when more
        or others wait)."""
        loaded = self.sagas.catalog.loaded()
        orphans = await self._read("count the orphans", self.store.orphans_by_definition)
        self._report_waiting({pair: n for pair, n in orphans.items() if pair not in loaded})
        return sum(n for pair, n in orphans.items() if pair in loaded)

    def _share(self, orphans: int) -> int:
        """How many sagas this look claims: this instance's share of the ``orphans`` among the
        live instances (at least a batch), within what it admits; 0 when there is none."""
        if orphans == 0:
            return 0
        share = max(self.options.claim_batch, math.ceil(orphans / max(1, len(self.lease.live))))
        return min(self.capacity(), share)

    async def claim_one(self, saga_id: str, *, force: bool) -> Lease | None:
        """This instance's lease on ``saga_id`` when it is (now) its own: claimed when no live
        instance owns it, or whatever its owner when ``force`` (a parked saga)."""
        if not self.lease.holds:
            return None
        instance_id = self.lease.instance_id
        epoch = await self._read(
            "claim a saga", lambda: self.store.claim_saga(instance_id, saga_id, force=force)
        )
        if epoch is None:
            return None
        self.claims["command"] += 1
        return Lease(instance_id, epoch)

    async def _claim_all(self, *, mine: bool, limit: int | None) -> int:
        """Claim in batches until no orphan is left (or ``limit`` is reached); resume each
        claimed saga. Histories are read in bulk and replayed here, so an actor starts from
        its state without a read of its own."""
        resumed = 0
        instance_id = self.lease.instance_id
        while limit is None or resumed < limit:
            if not self.lease.holds or self.lease.instance_id != instance_id:
                break  # lost meanwhile: claim nothing more for a registration that ended
            size = (
                self.options.claim_batch
                if limit is None
                else min(self.options.claim_batch, limit - resumed)
            )
            if size <= 0:
                break
            batch = await self._read(
                "claim sagas",
                lambda size=size: self.store.claim_orphans(
                    instance_id, size, mine=mine, loaded=self.sagas.catalog.loaded()
                ),
            )
            resumed += await self._resume(batch, instance_id, mine=mine)
            if len(batch) < size:
                break
        return resumed

    async def _resume(self, batch: list[ClaimedSaga], instance_id: str, *, mine: bool) -> int:
        ids = [stream_id(c.saga_id) for c in batch]
        histories = await self._read("read saga histories", lambda: self.store.read_streams(ids))
        if batch and (self.lease.instance_id != instance_id or not self.lease.holds):
            # the lease was lost while the claim waited for the store: these sagas belong to
            # a dead id now, orphans the next look (under the new id) takes; an actor started
            # here under the dead id would keep that claim from starting its own
            log.warning("instance %s lost its lease while claiming %d sagas: left to the next "
                        "look", instance_id, len(batch))  # fmt: skip
            return 0
        resumed = 0
        for claimed in batch:
            cause = _cause(claimed, instance_id, mine=mine)
            self.claims[cause] += 1
            if self.sagas.busy(claimed.saga_id):
                continue  # a command got there first and started it
            try:
                definition = self.sagas.catalog.get(claimed.saga_type, claimed.saga_version)
            except (UnknownSagaType, UnknownSagaVersion):  # claimed by loaded pairs: not here
                log.error("saga %s runs on %s version %d, not loaded: not resumed",
                          claimed.saga_id, claimed.saga_type, claimed.saga_version)  # fmt: skip
                continue
            history = histories.get(stream_id(claimed.saga_id), [])
            state = sm.replay(
                self.sagas.shape(definition), [from_record(e.event_type, e.data) for e in history]
            )
            lease = Lease(instance_id, claimed.epoch)
            try:
                # Started without waiting for each to run: the service is ready sooner.
                self.sagas.spawn_soon(claimed.saga_id, definition, lease, state=state)
            except OverloadedError:  # the lease was lost while the histories were read
                log.warning("instance %s lost its lease: %d claimed sagas left to others",
                            instance_id, len(batch) - resumed)  # fmt: skip
                break
            resumed += 1
        if batch:
            log.info(
                "instance %s claimed %d sagas (%s)",
                instance_id,
                len(batch),
                ", ".join(f"{k}: {v}" for k, v in Counter(
                    _cause(c, instance_id, mine=mine) for c in batch
                ).items()),
            )  # fmt: skip
        return resumed

    def _report_waiting(self, waiting: dict[tuple[str, int], int]) -> None:
        if waiting == self.waiting:
            return
        self.waiting = waiting
        if waiting:
            log.warning(
                "sagas wait for a definition this process has not loaded (deploy a process "
                "that loads it): %s",
                ", ".join(f"{t} version {v}: {n}" for (t, v), n in sorted(waiting.items())),
            )
        else:
            log.info("no saga waits for its definition any more")

    async def _read(self, doing: str, read: Callable[[], Awaitable[T]]) -> T:
        """``read()``, waiting while the store is unavailable."""
        return await retry_unavailable(
            read,
            doing=f"instance {self.lease.instance_id} waits for the store to {doing}",
            max_delay=self.options.store_retry_max,
            log=log,
        )


def _cause(claimed: ClaimedSaga, instance_id: str, *, mine: bool) -> str:
    if mine:
        return "recovery"
    if claimed.previous_owner is None:
        return "hand-over"  # released by an instance that shut down (or never owned)
    return "failover"
