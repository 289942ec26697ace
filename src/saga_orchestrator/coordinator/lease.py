"""This process's membership: its instance id, registered in the store with a heartbeat.

The sagas an instance drives are its own while its registration lives (``expires_at`` ahead, in
the database's time): :class:`InstanceLease` renews it every ``interval`` seconds (at least three
times per ``ttl``). It keeps, in this process's monotonic time, when its leases surely still hold
(the start of the last renewal that succeeded, plus ``ttl``, less one renewal period of margin).
Past that without a renewal (a renewal still unanswered then counts as failed), or when the store
says the registration is gone or has ended (another instance took it for dead and may own its
sagas now), the lease is *lost*: :attr:`on_lost` is awaited at once, so that the coordinator
stops every saga actor (their running steps are cut) before anyone else can claim their sagas
and before this instance claims anything under its next registration, and the instance
registers again under a new id (its old sagas are then orphans like any dead
instance's, for whoever claims them first). See docs/operations.md, "Several replicas".
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from saga_orchestrator import __version__
from saga_orchestrator.actors import ActorRef, ActorSystem, Mailbox, run_loop_actor
from saga_orchestrator.errors import StoreError
from saga_orchestrator.store import Store, new_id
from saga_orchestrator.store.records import InstanceRecord
from saga_orchestrator.store.retry import retry_unavailable

__all__ = ["InstanceLease", "LeaseStats", "default_instance_name", "start_lease"]

log = logging.getLogger(__name__)


def default_instance_name() -> str:
    """``<hostname>-<pid>``: a pod's name under Kubernetes."""
    return f"{socket.gethostname()}-{os.getpid()}"


@attrs.define
class LeaseStats:
    """Counters read by metrics and health."""

    renewals: int = 0
    failed_renewals: int = 0
    lost: int = 0
    """Times the lease was lost (the instance stopped its sagas and registered again)."""


@attrs.define(eq=False)
class InstanceLease:
    """The lease keeper's state; :meth:`run` is its loop."""

    store: Store
    name: str
    """The instance's name (``INSTANCE_ID``, else host and pid); each registration appends a
    short random suffix, so a process that lost its lease comes back as a new instance."""
    interval: float = 1.0
    ttl: float = 5.0
    info: dict[str, Any] = attrs.field(factory=dict)
    on_lost: Callable[[str], Awaitable[None]] | None = None
    """Awaited with the lost instance id, before the new registration (``None``: nothing)."""
    stats: LeaseStats = attrs.field(factory=LeaseStats)
    instance_id: str = ""
    live: tuple[InstanceRecord, ...] = ()
    """The live instances (this one included), as read at the last renewal."""
    registered: trio.Event = attrs.field(factory=trio.Event)
    """Set while a registration holds: claims and new sagas wait for it."""
    _holds_until: float = 0.0
    """``trio.current_time()`` up to which the leases surely hold."""
    _released: bool = False

    @property
    def holds(self) -> bool:
        """Whether this instance's leases surely hold now."""
        return self.registered.is_set() and trio.current_time() < self._holds_until

    @property
    def period(self) -> float:
        """Seconds between renewals: ``interval``, or a third of ``ttl`` if that is shorter, so
        that a renewal may take a while (a busy database) without the leases lapsing."""
        return min(self.interval, self.ttl / 3)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # the service starts; claims wait for ``registered``
        await self._register()
        while not self._released:
            started = trio.current_time()
            next_at = started + self.period
            try:
                # Not answered by the time the leases may end: too late, whatever comes after.
                with trio.fail_at(min(started + max(self.period, 0.1), self._holds_until)):
                    alive = await self.store.renew_instance(self.instance_id, self.ttl)
            except (StoreError, trio.TooSlowError) as exc:
                self.stats.failed_renewals += 1
                if trio.current_time() >= self._holds_until:
                    log.error(
                        "instance %s could not renew its leases in time (%s): stopping its sagas",
                        self.instance_id,
                        exc,
                    )
                    await self._lost()
                    continue
                log.warning("instance %s could not renew its leases: %s", self.instance_id, exc)
            else:
                if not alive:
                    log.error(
                        "instance %s was taken for dead (its registration is gone or ended): "
                        "stopping its sagas",
                        self.instance_id,
                    )
                    await self._lost()
                    continue
                self.stats.renewals += 1
                self._holds_until = started + self.ttl - self.period
                await self._read_live(until=next_at)
            await trio.sleep_until(next_at)

    async def release(self) -> int:
        """Deregister (graceful shutdown): the instance's sagas are free for others at once;
        how many it released."""
        self._released = True  # the heartbeat stops for good
        if not self.registered.is_set():
            return 0
        self.registered = trio.Event()
        released = await self.store.deregister_instance(self.instance_id)
        log.info("instance %s released %d sagas and deregistered", self.instance_id, released)
        return released

    async def _register(self) -> None:
        self.instance_id = f"{self.name}-{new_id()[:8]}"
        info = {"host": socket.gethostname(), "pid": os.getpid(), "version": __version__}
        info.update(self.info)
        started = trio.current_time()
        await retry_unavailable(
            lambda: self.store.register_instance(self.instance_id, info, self.ttl),
            doing=f"instance {self.instance_id} waits for the store to register",
            max_delay=min(self.ttl, 5.0),
            log=log,
        )
        self._holds_until = started + self.ttl - self.period
        log.info("instance %s registered (leases of %g s)", self.instance_id, self.ttl)
        self.registered.set()
        await self._read_live(until=trio.current_time() + self.period)

    async def _read_live(self, *, until: float) -> None:
        """Note the live instances (for health and metrics), if the store answers before
        ``until`` (the next renewal is not delayed for it)."""
        with trio.move_on_at(until):
            try:
                self.live = tuple(await self.store.live_instances())
            except StoreError as exc:
                log.debug("could not list the live instances: %s", exc)

    async def _lost(self) -> None:
        lost = self.instance_id
        self.stats.lost += 1
        self.registered = trio.Event()
        if self.on_lost is not None:
            await self.on_lost(lost)
        await self._register()


async def start_lease(system: ActorSystem, lease: InstanceLease) -> ActorRef[Any]:
    """Spawn the lease keeper (a permanent child of the root supervisor)."""

    async def behaviour(
        mailbox: Mailbox[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await run_loop_actor(mailbox, lease.run, task_status=task_status)

    return await system.spawn("lease", behaviour, capacity=1)
