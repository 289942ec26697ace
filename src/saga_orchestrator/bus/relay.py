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

While the store or the bus is unavailable the relay backs off (up to ``retry_max`` seconds) and
goes on where it stopped, with one log line per minute and kind of error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorSystem, Mailbox, run_loop_actor
from saga_orchestrator.errors import BusError, StoreError
from saga_orchestrator.store.actor import Store
from saga_orchestrator.store.records import OutboxRecord
from saga_orchestrator.throttled_log import ThrottledLog

from .base import BusMessage, EventBus

__all__ = ["OutboxRelay", "RelayStats", "start_relay"]

log = logging.getLogger(__name__)


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
    ) -> None:
        self.store = store
        self.bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retry_max = retry_max
        self.max_in_flight = max_in_flight if max_in_flight is not None else 10 * batch_size
        self.stats = RelayStats()
        self._wake = trio.Event()
        self._unmarked: list[int] = []
        self._in_flight: dict[str, int] = {}
        """event id -> outbox id, published and not settled yet (bus not durable)."""
        self._settled: dict[str, int] = {}
        self._dropped: set[str] = set()
        self._log = ThrottledLog(log)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay until cancelled. Restarted (by its supervisor) it starts from the outbox."""
        self._unmarked.clear()
        self._in_flight.clear()
        self._settled.clear()
        self._dropped.clear()
        if not self.bus.durable:
            self.bus.watch_settlements(self._on_settled)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_store)
            task_status.started()
            delay = 0.05
            while True:
                self._wake = trio.Event()
                self._log.flush()  # the count of lines left out, once their minute is over
                try:
                    more = await self._step()
                except (StoreError, BusError) as exc:
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    self._log.warning(
                        "the outbox relay waits %.2f s: %s", delay, exc, key=type(exc)
                    )
                    await trio.sleep(delay)
                    delay = min(delay * 2, self.retry_max)
                    continue
                delay = 0.05
                if not more:
                    with trio.move_on_after(self.poll_interval):
                        await self._wake.wait()

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
        """One round; whether there may be more to do at once."""
        if self._unmarked:
            await self._mark(self._unmarked)
            self._unmarked = []
        if self.bus.durable:
            return await self._relay_durable()
        return await self._relay_until_settled()

    async def _relay_durable(self) -> bool:
        records = await self.store.outbox_pending(limit=self.batch_size)
        if not records:
            return False
        await self._publish(records)
        self._unmarked = [record.id for record in records]
        await self._mark(self._unmarked)
        self._unmarked = []
        return True

    async def _relay_until_settled(self) -> bool:
        if self._settled:
            settled = dict(self._settled)
            await self._mark(list(settled.values()))
            for event_id in settled:
                self._settled.pop(event_id, None)
                self._in_flight.pop(event_id, None)
        for event_id in self._dropped:  # trimmed before it was handled: publish it again
            self._in_flight.pop(event_id, None)
        self._dropped.clear()
        self.stats.in_flight = len(self._in_flight)
        room = min(self.batch_size, self.max_in_flight - len(self._in_flight))
        if room <= 0:
            return False  # woken by the next settlement
        records = await self.store.outbox_pending(limit=len(self._in_flight) + room)
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
) -> OutboxRelay:
    """Spawn the relay as the permanent actor ``relay`` of ``system``."""
    relay = OutboxRelay(store, bus, batch_size=batch_size, poll_interval=poll_interval)

    async def behaviour(
        mailbox: Mailbox[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await run_loop_actor(mailbox, relay.run, task_status=task_status)

    await system.spawn("relay", behaviour, capacity=1)
    return relay
