"""A consumer-group reader that hands each entry to a handler and acknowledges it after.

:func:`run_consumer` is the body of an actor (the router's): it creates the group if needed,
then loops

1. every so often, claims entries pending longer than ``claim_idle`` (their consumer died, or
   their handling failed here) and handles them again;
2. reads new entries, waiting at most ``block_ms`` on the server;
3. handles a batch concurrently, one task per *order key* (entries with the same key are
   handled one after the other, in stream order), then acknowledges every entry that was
   handled, in one call.

The handler decides what an outcome means:

* it returns: handled; acknowledged;
* it raises :class:`HandlerBusy` (the coordinator is at its admission limit, the store is
  down): the consumer waits and retries the same entry, and reads nothing new meanwhile
  (backpressure); this does not count as a failed delivery;
* it raises :class:`~.base.RejectMessage`: the entry can never succeed; dead-lettered at once;
* it raises anything else: a failed delivery. The entry stays pending and is delivered again
  after ``claim_idle``; once it has been delivered more than ``max_deliveries`` times it is
  moved to the dead-letter stream instead. An entry that cannot be decoded is dead-lettered
  at once.

An event is dead-lettered once per group: the bus remembers the events the group dead-lettered
(:meth:`~.base.EventBus.dead_letter`), and an event that fails for good again (a replay, a
second publish) is acknowledged without a second dead-letter entry (counted in
``ConsumerStats.repeated_dead_letters``). Its handler still runs each time, so a replay after
the cause was fixed does handle it. Failures and dead letters are logged through a
:class:`~saga_orchestrator.throttled_log.ThrottledLog`: one line per kind (the outcome, the
event type, the error class) and minute, with the count of those left out.

While the bus fails (it is unavailable, or answers with an error) the consumer backs off (up
to ``retry_max`` seconds between attempts) and goes on where it was when it answers again.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import attrs
import trio

from saga_orchestrator.errors import BusError, BusUnavailable, SagaOrchestratorError
from saga_orchestrator.throttled_log import ThrottledLog

from .base import BusMessage, Delivery, EventBus, MalformedEntry, RejectMessage

__all__ = ["ConsumerOptions", "ConsumerStats", "Handler", "HandlerBusy", "run_consumer"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_REMEMBERED_ERRORS = 10_000
"""Last errors kept (by entry id) to name in a dead-letter entry's reason."""


class HandlerBusy(SagaOrchestratorError):
    """Raised by a handler that cannot take the message now; retry it after ``retry_after``."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Handler(Protocol):
    def order_key(self, message: BusMessage) -> str:
        """Messages with the same key are handled one at a time, in stream order."""
        ...

    async def handle(self, message: BusMessage) -> None:
        """Handle durably, or raise (see the module doc)."""
        ...


@attrs.frozen(kw_only=True)
class ConsumerOptions:
    stream: str
    group: str
    consumer: str
    """This consumer's name in the group; distinct per process."""
    count: int = 100
    """Most entries read (and handled concurrently) at once."""
    block_ms: int = 1000
    claim_idle: float = 30.0
    """Seconds an entry stays pending before it is claimed and delivered again."""
    max_deliveries: int = 5
    retry_max: float = 5.0
    """Longest pause between attempts while the bus is unavailable or the handler is busy."""


@attrs.define
class ConsumerStats:
    """Counters of a consumer, read by health and metrics."""

    handled: int = 0
    failed: int = 0
    """Failed deliveries (each is retried, then dead-lettered)."""
    rejected: int = 0
    dead_lettered: int = 0
    repeated_dead_letters: int = 0
    """Entries acknowledged without a dead-letter entry: their event had been dead-lettered by
    this group before (replayed, or published twice, and failing again)."""
    claimed: int = 0
    busy_waits: int = 0
    """Times the handler was busy and the consumer waited (backpressure)."""
    paused: bool = False
    """Waiting for a busy handler right now."""
    last_error: str | None = None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Consumer:
    def __init__(
        self, bus: EventBus, options: ConsumerOptions, handler: Handler, stats: ConsumerStats
    ) -> None:
        self.bus = bus
        self.options = options
        self.handler = handler
        self.stats = stats
        self.errors: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.claim_every = max(0.05, min(options.claim_idle / 2, 5.0))
        self.log = ThrottledLog(log)

    async def run(self, task_status: trio.TaskStatus[None]) -> None:
        options = self.options
        task_status.started()  # at once: a bus that is down must not hold up the service
        await self._retrying(lambda: self.bus.ensure_group(options.stream, options.group))
        next_claim = trio.current_time()
        while True:
            self.log.flush()  # the counts of kinds of lines that went quiet
            if trio.current_time() >= next_claim:
                claimed = await self._retrying(self._claim)
                if claimed:
                    await self._process(claimed)
                    continue  # there may be more to claim
                next_claim = trio.current_time() + self.claim_every
            batch = await self._retrying(self._read)
            if batch:
                await self._process(batch)

    async def _claim(self) -> list[Delivery]:
        o = self.options
        claimed = await self.bus.claim(
            o.stream, o.group, o.consumer, min_idle=o.claim_idle, count=o.count
        )
        self.stats.claimed += len(claimed)
        return claimed

    async def _read(self) -> list[Delivery]:
        o = self.options
        return await self.bus.read(
            o.stream, o.group, o.consumer, count=o.count, block_ms=o.block_ms
        )

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``await operation()`` until the bus answers, backing off while it fails."""
        delay = 0.05
        failing = False
        while True:
            try:
                result = await operation()
            except BusError as exc:
                # Unavailable: Redis is down or restarting. Anything else (say, the key is not
                # a stream) needs an operator: say so, and keep trying rather than crash-loop.
                if not failing:
                    level = logging.WARNING if isinstance(exc, BusUnavailable) else logging.ERROR
                    log.log(level, "the event bus failed, retrying: %s", exc)
                failing = True
                self.stats.last_error = _describe(exc)
                await trio.sleep(delay)
                delay = min(delay * 2, self.options.retry_max)
                continue
            if failing:
                log.info("the event bus answers again")
            return result

    async def _process(self, batch: Sequence[Delivery]) -> None:
        by_key: dict[str, list[tuple[Delivery, BusMessage]]] = {}
        for delivery in batch:
            try:
                message = delivery.message
            except MalformedEntry as exc:
                await self._dead_letter(delivery, "malformed", f"malformed entry: {exc}")
                continue
            if delivery.deliveries > self.options.max_deliveries:
                last = self.errors.get(delivery.entry_id, "not known to this consumer")
                reason = f"failed {delivery.deliveries - 1} deliveries; last error: {last}"
                await self._dead_letter(delivery, "failed", reason, message)
                continue
            by_key.setdefault(self.handler.order_key(message), []).append((delivery, message))
        handled: list[str] = []
        async with trio.open_nursery() as nursery:
            for items in by_key.values():
                nursery.start_soon(self._handle_in_order, items, handled)
        if handled:
            o = self.options
            await self._retrying(lambda: self.bus.ack(o.stream, o.group, handled))

    async def _handle_in_order(
        self, items: Sequence[tuple[Delivery, BusMessage]], handled: list[str]
    ) -> None:
        for delivery, message in items:
            if await self._handle(delivery, message):
                handled.append(delivery.entry_id)

    async def _handle(self, delivery: Delivery, message: BusMessage) -> bool:
        """Whether the entry may be acknowledged (dead-lettered entries are, by then)."""
        delay = 0.05
        while True:
            try:
                await self.handler.handle(message)
            except HandlerBusy as busy:
                self.stats.busy_waits += 1
                self.stats.paused = True
                await trio.sleep(min(max(busy.retry_after, delay), self.options.retry_max))
                delay = min(delay * 2, self.options.retry_max)
                continue
            except RejectMessage as exc:
                self.stats.paused = False
                self.stats.rejected += 1
                await self._dead_letter(delivery, "rejected", f"rejected: {exc}", message)
                return False
            except Exception as exc:
                self.stats.paused = False
                self.stats.failed += 1
                self.stats.last_error = _describe(exc)
                self._remember(delivery.entry_id, _describe(exc))
                self.log.warning(
                    "event %s (%s, entry %s, delivery %d of at most %d) failed: %s",
                    message.event_id,
                    message.event_type,
                    delivery.entry_id,
                    delivery.deliveries,
                    self.options.max_deliveries,
                    _describe(exc),
                    key=("failed", message.event_type, type(exc)),
                    exc_info=None if isinstance(exc, SagaOrchestratorError) else exc,
                )
                return False
            self.stats.paused = False
            self.stats.handled += 1
            self.errors.pop(delivery.entry_id, None)
            return True

    def _remember(self, entry_id: str, error: str) -> None:
        self.errors[entry_id] = error
        self.errors.move_to_end(entry_id)
        while len(self.errors) > MAX_REMEMBERED_ERRORS:
            self.errors.popitem(last=False)

    async def _dead_letter(
        self, delivery: Delivery, outcome: str, reason: str, message: BusMessage | None = None
    ) -> None:
        """Move an entry to the dead-letter stream with ``reason``, unless its event was moved
        there before (then only acknowledge it); if the bus fails now, the entry stays pending
        and comes back (and is dead-lettered) after the idle time. ``outcome`` (``malformed``,
        ``rejected``, ``failed``) makes the kind of the log line with the event type."""
        event_id = None if message is None else message.event_id
        event_type = None if message is None else message.event_type
        try:
            written = await self.bus.dead_letter(
                self.options.group, delivery, reason, event_id=event_id
            )
        except BusError as exc:
            self.log.warning(
                "could not dead-letter entry %s: %s",
                delivery.entry_id,
                exc,
                key=("not dead-lettered", type(exc)),
            )
            return
        self.errors.pop(delivery.entry_id, None)
        if not written:
            self.stats.repeated_dead_letters += 1
            self.log.warning(
                "event %s (%s, entry %s of %s) was dead-lettered before: acknowledged without "
                "a second dead-letter entry: %s",
                event_id,
                event_type,
                delivery.entry_id,
                delivery.stream,
                reason,
                key=("dead-lettered before", event_type),
            )
            return
        self.stats.dead_lettered += 1
        self.log.error(
            "entry %s of %s moved to the dead-letter stream: %s",
            delivery.entry_id,
            delivery.stream,
            reason,
            key=("dead-lettered", event_type, outcome),
        )


async def run_consumer(
    bus: EventBus,
    options: ConsumerOptions,
    handler: Handler,
    stats: ConsumerStats | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Consume ``options.stream`` with ``handler`` until cancelled (see the module doc).

    ``task_status.started()`` at once; the consumer group is created (if needed) after.
    """
    consumer = _Consumer(bus, options, handler, stats if stats is not None else ConsumerStats())
    await consumer.run(task_status)
