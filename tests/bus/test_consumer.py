"""The consumer loop on both buses: acknowledgement after handling, redelivery by claiming,
dead-lettering, backpressure, and a consumer taking over what a dead one left pending."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import pytest
import trio

from saga_orchestrator.bus import (
    BusMessage,
    ConsumerOptions,
    ConsumerStats,
    EventBus,
    HandlerBusy,
    InProcessBus,
    RejectMessage,
    dead_letter_stream,
    run_consumer,
)

from .conftest import AddRaw
from .test_contract import GROUP, STREAM, message

WITHIN = 10.0


def options(consumer: str = "c1", **changes: object) -> ConsumerOptions:
    base = ConsumerOptions(
        stream=STREAM, group=GROUP, consumer=consumer, count=10, block_ms=20, claim_idle=0.2
    )
    return attrs.evolve(base, **changes)


@attrs.define
class Handler:
    """Records what it handles; fails, rejects or is busy for chosen event ids."""

    handled: list[str] = attrs.field(factory=list)
    attempts: dict[str, int] = attrs.field(factory=dict)
    fail: set[str] = attrs.field(factory=set)
    reject: set[str] = attrs.field(factory=set)
    busy_until: trio.Event | None = None

    def order_key(self, message: BusMessage) -> str:
        return str(message.data.get("key", message.event_id))

    async def handle(self, message: BusMessage) -> None:
        self.attempts[message.event_id] = self.attempts.get(message.event_id, 0) + 1
        if self.busy_until is not None and not self.busy_until.is_set():
            raise HandlerBusy("full", retry_after=0.01)
        if message.event_id in self.reject:
            raise RejectMessage("never valid")
        if message.event_id in self.fail:
            raise RuntimeError(f"cannot handle {message.event_id}")
        self.handled.append(message.event_id)


@asynccontextmanager
async def consuming(
    bus: EventBus, handler: Handler, consumer_options: ConsumerOptions
) -> AsyncIterator[ConsumerStats]:
    stats = ConsumerStats()
    async with trio.open_nursery() as nursery:
        await nursery.start(run_consumer, bus, consumer_options, handler, stats)
        yield stats
        nursery.cancel_scope.cancel()


async def eventually(condition: Callable[[], object], within: float = WITHIN) -> None:
    with trio.fail_after(within):
        while not condition():
            await trio.sleep(0.01)


async def settled(bus: EventBus) -> None:
    """Wait until nothing is pending in the group."""
    with trio.fail_after(WITHIN):
        while (await bus.info(STREAM, GROUP)).pending:
            await trio.sleep(0.01)


async def test_handled_entries_are_acknowledged(bus: EventBus) -> None:
    handler = Handler()
    async with consuming(bus, handler, options()) as stats:
        await bus.publish(STREAM, [message(n) for n in range(5)])
        await eventually(lambda: stats.handled == 5)
        await eventually(lambda: sorted(handler.handled) == [f"e-{n}" for n in range(5)])
        await settled(bus)
    assert 0 == (await bus.info(STREAM, GROUP)).dead_letters


async def test_a_failing_entry_is_redelivered_then_dead_lettered_and_the_rest_flow(
    bus: EventBus,
) -> None:
    handler = Handler(fail={"e-1"})
    async with consuming(bus, handler, options(max_deliveries=3)) as stats:
        await bus.publish(STREAM, [message(0), message(1), message(2)])
        await eventually(lambda: stats.dead_lettered == 1)
        await bus.publish(STREAM, [message(3)])
        await eventually(lambda: "e-3" in handler.handled)
        await settled(bus)
    assert 3 == handler.attempts["e-1"]  # delivered 3 times, then moved
    assert ["e-0", "e-2", "e-3"] == sorted(handler.handled)
    [dead] = await bus.entries(dead_letter_stream(STREAM))
    assert "e-1" == dead.message.event_id
    assert "failed 3 deliveries" in dead.fields["dead_reason"]
    assert "RuntimeError: cannot handle e-1" in dead.fields["dead_reason"]


async def test_a_rejected_or_malformed_entry_is_dead_lettered_at_once(
    bus: EventBus, add_raw: AddRaw
) -> None:
    handler = Handler(reject={"e-1"})
    async with consuming(bus, handler, options(claim_idle=60)) as stats:
        await bus.publish(STREAM, [message(1)])
        await add_raw(STREAM, {"not": "an event"})
        await bus.publish(STREAM, [message(2)])
        await eventually(lambda: stats.dead_lettered == 2 and handler.handled == ["e-2"])
    reasons = [d.fields["dead_reason"] for d in await bus.entries(dead_letter_stream(STREAM))]
    assert ["malformed entry: missing field(s): event_id, event_type", "rejected: never valid"] == (
        sorted(reasons)
    )
    assert 1 == handler.attempts["e-1"]


async def test_a_rejected_event_delivered_again_is_acknowledged_not_dead_lettered_again(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="saga_orchestrator.bus.consumer")
    handler = Handler(reject={"e-1"})
    async with consuming(bus, handler, options(claim_idle=60)) as stats:
        await bus.publish(STREAM, [message(1)])
        await eventually(lambda: stats.dead_lettered == 1)
        for _ in range(20):  # replayed 20 times
            await bus.publish(STREAM, [message(1)])
        await eventually(lambda: stats.repeated_dead_letters == 20)
        await bus.publish(STREAM, [message(2)])
        await eventually(lambda: handler.handled == ["e-2"])
        await settled(bus)
    assert 21 == handler.attempts["e-1"]  # handled each time: a fixed cause would let it pass
    assert (1, 1) == (stats.dead_lettered, (await bus.info(STREAM, GROUP)).dead_letters)
    consumer_lines = [r for r in caplog.records if r.name == "saga_orchestrator.bus.consumer"]
    assert 1 == len([r for r in consumer_lines if r.levelno == logging.ERROR])
    # One line for the repeats in this minute (the rest counted, reported later).
    assert 1 == len([r for r in consumer_lines if "dead-lettered before" in r.getMessage()])


async def test_an_event_that_fails_for_good_again_is_not_dead_lettered_again(
    bus: EventBus,
) -> None:
    handler = Handler(fail={"e-1"})
    async with consuming(bus, handler, options(max_deliveries=2)) as stats:
        await bus.publish(STREAM, [message(1)])
        await eventually(lambda: stats.dead_lettered == 1)
        await bus.publish(STREAM, [message(1)])
        await eventually(lambda: stats.repeated_dead_letters == 1)
        await settled(bus)
    assert (4, 1) == (handler.attempts["e-1"], (await bus.info(STREAM, GROUP)).dead_letters)


async def test_a_restarted_consumer_remembers_what_its_group_dead_lettered(
    bus: EventBus, make_bus: Callable[..., EventBus]
) -> None:
    handler = Handler(reject={"e-1"})
    async with consuming(bus, handler, options("before")) as stats:
        await bus.publish(STREAM, [message(1)])
        await eventually(lambda: stats.dead_lettered == 1)
    # On Redis a new process (a new client over the same keys); in-process the same bus.
    again = bus if isinstance(bus, InProcessBus) else make_bus()
    await again.open()
    try:
        async with consuming(again, handler, options("after")) as restarted:
            await again.publish(STREAM, [message(1)])
            await eventually(lambda: restarted.repeated_dead_letters == 1)
        assert (0, 1) == (restarted.dead_lettered, (await again.info(STREAM, GROUP)).dead_letters)
    finally:
        if again is not bus:
            await again.close()


async def test_a_busy_handler_stops_the_reading_and_does_not_count_a_failure(
    bus: EventBus,
) -> None:
    gate = trio.Event()
    handler = Handler(busy_until=gate)
    async with consuming(bus, handler, options(count=1, max_deliveries=1)) as stats:
        await bus.publish(STREAM, [message(1), message(2), message(3)])
        await eventually(lambda: handler.attempts.get("e-1", 0) >= 5)
        assert stats.paused
        info = await bus.info(STREAM, GROUP)
        assert 1 == info.pending  # e-2 and e-3 are not read while e-1 waits
        assert info.lag in (2, None)
        assert "e-2" not in handler.attempts
        gate.set()
        await eventually(lambda: handler.handled == ["e-1", "e-2", "e-3"])
    assert 0 == stats.dead_lettered and 0 == stats.failed and not stats.paused


async def test_entries_a_dead_consumer_left_pending_are_claimed_and_handled(
    bus: EventBus,
) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.publish(STREAM, [message(1), message(2)])
    taken = await bus.read(STREAM, GROUP, "killed", count=10, block_ms=10)
    assert 2 == len(taken)  # read, then the process died before acknowledging
    handler = Handler()
    async with consuming(bus, handler, options("survivor")) as stats:
        await eventually(lambda: sorted(handler.handled) == ["e-1", "e-2"])
        await settled(bus)
    assert 2 == stats.claimed


async def test_entries_with_one_order_key_are_handled_in_order(bus: EventBus) -> None:
    seen: list[str] = []

    @attrs.define
    class Slow(Handler):
        async def handle(self, message: BusMessage) -> None:
            await trio.sleep(0.05 if message.event_id == "e-1" else 0)
            seen.append(message.event_id)

    async with consuming(bus, Slow(), options()) as stats:
        await bus.publish(
            STREAM, [message(1, key="saga-a"), message(2, key="saga-a"), message(3, key="b")]
        )
        await eventually(lambda: stats.handled == 3)
    assert seen.index("e-1") < seen.index("e-2")  # same key: in order
    assert seen.index("e-3") < seen.index("e-1")  # another key: not held up
