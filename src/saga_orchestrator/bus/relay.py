"""The outbox relay: publishes what the store's outbox holds, then marks it sent.

Events accepted by the service (``POST /events/publish``, saga lifecycle events) are committed
to the outbox in the same transaction as their cause. The relay reads the unsent messages
(oldest first, ``batch_size`` at a time), publishes each topic's messages to the stream of that
name in one pipelined call, then marks them sent.

* *Prompt*: the store actor sets ``StoreStats.outbox_committed`` after committing a batch with
  outbox messages, which wakes the relay at once; it also looks every ``poll_interval`` seconds
  (for messages another process committed).
* *Nothing twice on the normal path*: a message is marked sent right after it is published; if
  marking fails (the store is unavailable) the relay retries the marking, not the publishing.
* *Nothing lost*: a crash between publishing and marking leaves the messages unsent; the next
  relay publishes them again. Consumers tolerate that duplicate (every event has a unique id).
* *A bus that is not durable* (the in-process bus): a message is marked sent only once the
  bus reports it settled, i.e. every consumer group has acknowledged or dead-lettered it; so an
  event accepted before a crash is still relayed (and routed) after it. At most
  ``max_in_flight`` messages wait to be settled at a time.

* *One publisher per database*: every process runs a relay, but only the one that holds the
  database's relay leadership (``store/leadership.py``: a PostgreSQL advisory lock; always
  held on SQLite and in memory) reads and publishes the outbox; the others stand by and try
  to lead every ``leader_retry`` seconds. The leader reads each batch through its leadership,
  so one whose claim is lost (its lock connection ended) stops before its next batch and
  stands by; one that stops (shutdown) releases the claim, so a standby takes over at its
  next try. A handover can publish once more at most the batch the old leader had published
  and not marked sent.

While the store or the bus is unavailable the relay backs off (up to ``retry_max`` seconds) and
goes on where it stopped, with one log line per minute and kind of error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorSystem, Mailbox, run_loop_actor
from saga_orchestrator.errors import BusError, StoreError
from saga_orchestrator.store.actor import Store
from saga_orchestrator.store.leadership import RelayLeadership
from saga_orchestrator.store.records import OutboxRecord
from saga_orchestrator.throttled_log import ThrottledLog

from .base import BusMessage, EventBus

__all__ = ["OutboxRelay", "RelayStats", "start_relay"]

log = logging.getLogger(__name__)

STEP_DOWN_TIMEOUT = 5.0
"""Most seconds a stopping relay spends marking what it published before it releases its
leadership."""


@attrs.define
class RelayStats:
    """Counters of the relay, read by health and metrics."""

    published: int = 0
    """Messages published (a message published again after a crash counts again)."""
    marked_sent: int = 0
    batches: int = 0
    in_flight: int = 0
    """Published to a bus that is not durable and not settled yet."""
    last_error: str | None = None
    leader: bool = False
    """Whether this relay leads: it alone publishes the database's outbox."""
    leader_changes: dict[str, int] = attrs.Factory(
        lambda: {"acquired": 0, "lost": 0, "released": 0}
    )
    """How often this relay became the leader, lost the leadership, or released it (stopping)."""


class OutboxRelay:
    """The relay's state; :meth:`run` is the actor body."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        retry_max: float = 5.0,
        max_in_flight: int | None = None,
        leadership: RelayLeadership | None = None,
        leader_retry: float = 2.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_max = retry_max
        self.max_in_flight = max_in_flight if max_in_flight is not None else 10 * batch_size
        self.leadership = leadership if leadership is not None else store.relay_leadership()
        self.leader_retry = leader_retry
        self.stats = RelayStats()
        self._wake = trio.Event()
        self._next_try = -math.inf
        """When a standby tries to lead next (``trio.current_time()``)."""
        self._said_standby = False
        self._unmarked: list[int] = []
        self._in_flight: dict[str, int] = {}
        """event id -> outbox id, published and not settled yet (bus not durable)."""
        self._settled: dict[str, int] = {}
        self._dropped: set[str] = set()
        self._log = ThrottledLog(log)

    @property
    def is_leader(self) -> bool:
        """Whether this relay leads now (no I/O: as the leadership last knew it)."""
        return self.leadership.is_leader

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay until cancelled, then release the leadership. Restarted (by its supervisor) it
        starts from the outbox."""
        self._unmarked.clear()
        self._in_flight.clear()
        self._settled.clear()
        self._dropped.clear()
        if not self.bus.durable:
            self.bus.watch_settlements(self._on_settled)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_store)
                task_status.started()
                await self._relay()
        finally:
            await self._step_down()

    async def _relay(self) -> None:
        delay = 0.05
        while True:
            self._wake = trio.Event()
            self._log.flush()  # the count of lines left out, once their minute is over
            try:
                if not self.leadership.is_leader:
                    self._lost()
                    await self._stand_by()
                more = await self._step()
            except (StoreError, BusError) as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self._log.warning("the outbox relay waits %.2f s: %s", delay, exc, key=type(exc))
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = 0.05
            if not more and self.leadership.is_leader:
                with trio.move_on_after(self.poll_interval):
                    await self._wake.wait()

    async def _stand_by(self) -> None:
        """Return once this relay leads: it tries at once (or ``leader_retry`` after its last
        try), then every ``leader_retry`` seconds; meanwhile it marks what it had published."""
        while True:
            await self._mark_done()
            await trio.sleep_until(self._next_try)
            self._next_try = trio.current_time() + self.leader_retry
            if await self.leadership.try_lead():
                self.stats.leader = True
                self.stats.leader_changes["acquired"] += 1
                self._say(logging.INFO, "this process leads the outbox relay: it publishes it")
                self._said_standby = False
                return
            if not self._said_standby:
                self._said_standby = True
                log.info(
                    "the outbox relay stands by: another process leads it; trying every %g s",
                    self.leader_retry,
                )

    def _lost(self) -> None:
        """Count and log a leadership that turned out lost; the next try is ``leader_retry``
        away (a standby may take over meanwhile)."""
        if not self.stats.leader:
            return
        self.stats.leader = False
        self.stats.leader_changes["lost"] += 1
        self._next_try = trio.current_time() + self.leader_retry
        log.warning(
            "the outbox relay lost its leadership (its connection to the database ended): it "
            "stopped publishing and stands by, trying again every %g s",
            self.leader_retry,
        )

    async def _step_down(self) -> None:
        """Stopping: mark what was published (bounded), then release the leadership."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(STEP_DOWN_TIMEOUT):
                try:
                    await self._mark_done()
                except (StoreError, BusError) as exc:
                    log.warning("the stopping outbox relay could not mark messages sent: %s", exc)
            await self.leadership.release()
        if self.stats.leader:
            self.stats.leader = False
            self.stats.leader_changes["released"] += 1
            self._say(logging.INFO, "the outbox relay released its leadership (stopping)")

    def _say(self, level: int, message: str) -> None:
        """Log a leadership change (at DEBUG where the database serves one process anyway)."""
        log.log(logging.DEBUG if self.leadership.single_process else level, message)

    async def _watch_store(self) -> None:
        """Wake the relay each time the store commits outbox messages."""
        stats = self.store.stats
        while True:
            committed = stats.outbox_committed
            await committed.wait()
            if stats.outbox_committed is committed:
                stats.outbox_committed = trio.Event()
            self._wake.set()

    def _on_settled(self, settled: Sequence[str], dropped: Sequence[str]) -> None:
        for event_id in settled:
            outbox_id = self._in_flight.get(event_id)
            if outbox_id is not None:
                self._settled[event_id] = outbox_id
        self._dropped.update(e for e in dropped if e in self._in_flight)
        if settled or dropped:
            self._wake.set()

    async def _step(self) -> bool:
        """One round as the leader; whether there may be more to do at once."""
        await self._mark_done()
        if self.bus.durable:
            return await self._relay_durable()
        return await self._relay_until_settled()

    async def _mark_done(self) -> None:
        """Mark sent what was published (and, on a bus that is not durable, settled)."""
        if self._unmarked:
            await self._mark(self._unmarked)
            self._unmarked = []
        if self._settled:
            settled = dict(self._settled)
            await self._mark(list(settled.values()))
            for event_id in settled:
                self._settled.pop(event_id, None)
                self._in_flight.pop(event_id, None)

    async def _read(self, limit: int) -> list[OutboxRecord] | None:
        """The next unsent messages, read through the leadership; ``None``: it was lost."""
        records = await self.leadership.outbox_pending(limit=limit)
        if records is None:
            self._lost()
        return records

    async def _relay_durable(self) -> bool:
        records = await self._read(self.batch_size)
        if not records:
            return False
        await self._publish(records)
        self._unmarked = [record.id for record in records]
        await self._mark(self._unmarked)
        self._unmarked = []
        return True

    async def _relay_until_settled(self) -> bool:
        for event_id in self._dropped:  # trimmed before it was handled: publish it again
            self._in_flight.pop(event_id, None)
        self._dropped.clear()
        self.stats.in_flight = len(self._in_flight)
        room = min(self.batch_size, self.max_in_flight - len(self._in_flight))
        if room <= 0:
            return False  # woken by the next settlement
        records = await self._read(len(self._in_flight) + room)
        if not records:
            return False
        fresh = [r for r in records if r.event.event_id not in self._in_flight][:room]
        if not fresh:
            return False
        for record in fresh:  # before publishing: the bus may settle them during the call
            self._in_flight[record.event.event_id] = record.id
        try:
            await self._publish(fresh)
        except BaseException:
            for record in fresh:
                self._in_flight.pop(record.event.event_id, None)
                self._settled.pop(record.event.event_id, None)
            raise
        self.stats.in_flight = len(self._in_flight)
        return True

    async def _publish(self, records: Sequence[OutboxRecord]) -> None:
        by_topic: dict[str, list[BusMessage]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(BusMessage.from_outbox(record))
        for topic, messages in by_topic.items():
            await self.bus.publish(topic, messages)
            self.stats.published += len(messages)
        self.stats.batches += 1

    async def _mark(self, ids: Sequence[int]) -> None:
        await self.store.outbox_mark_sent(ids)
        self.stats.marked_sent += len(ids)


async def start_relay(
    system: ActorSystem,
    store: Store,
    bus: EventBus,
    *,
    batch_size: int = 100,
    poll_interval: float = 1.0,
    leader_retry: float = 2.0,
) -> OutboxRelay:
    """Spawn the relay as the permanent actor ``relay`` of ``system``; it leads the relay of
    the store's database, or stands by trying every ``leader_retry`` seconds."""
    relay = OutboxRelay(
        store, bus, batch_size=batch_size, poll_interval=poll_interval, leader_retry=leader_retry
    )

    async def behaviour(
        mailbox: Mailbox[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await run_loop_actor(mailbox, relay.run, task_status=task_status)

    await system.spawn("relay", behaviour, capacity=1)
    return relay
