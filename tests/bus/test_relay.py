"""The outbox relay on both buses: prompt, nothing published twice on the normal path, and
nothing lost when it crashes between publishing and marking sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio.testing

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.bus import BusMessage, EventBus, InProcessBus, OutboxRelay
from saga_orchestrator.errors import BusUnavailable, StoreUnavailable
from saga_orchestrator.store.actor import Store, start_store
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import ANY_VERSION, AppendRequest, NewEvent, OutboxMessage

TOPIC = "events"
WITHIN = 10.0


@asynccontextmanager
async def running_store(backend: MemoryBackend) -> AsyncIterator[Store]:
    async with open_actor_system(shutdown_grace=0.5) as system:
        yield await start_store(system, backend)


@asynccontextmanager
async def relaying(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        yield relay
        nursery.cancel_scope.cancel()


async def accept(store: Store, *names: str, topic: str = TOPIC) -> list[str]:
    """Commit one event per name with its outbox message, as ``POST /events/publish`` does."""
    events = [NewEvent(event_type="thing.happened", data={"name": n}) for n in names]
    await store.append(
        AppendRequest(
            stream_id="things",
            expected_version=ANY_VERSION,
            events=events,
            outbox=[OutboxMessage(topic=topic, event=e) for e in events],
        )
    )
    return [e.event_id for e in events]


async def stream_ids(bus: EventBus, stream: str = TOPIC) -> list[str]:
    return [d.message.event_id for d in await bus.entries(stream, count=10_000)]


async def wait_for_entries(bus: EventBus, count: int, stream: str = TOPIC) -> list[str]:
    with trio.fail_after(WITHIN):
        while len(ids := await stream_ids(bus, stream)) < count:
            await trio.sleep(0.01)
    return ids


async def handle_all(bus: EventBus, group: str = "router") -> int:
    """Read and acknowledge what ``group`` has not had yet (a consumer that handles it)."""
    handled = await bus.read(TOPIC, group, "c", count=100, block_ms=1)
    await bus.ack(TOPIC, group, [d.entry_id for d in handled])
    return len(handled)


async def wait_until_outbox_empty(backend: MemoryBackend) -> None:
    with trio.fail_after(WITHIN):
        while await backend.outbox_pending():
            await trio.sleep(0.01)


async def test_a_committed_event_reaches_the_bus_at_once(bus: EventBus) -> None:
    backend = MemoryBackend()
    async with running_store(backend) as store:
        # Its next look at the outbox is far beyond the wait below: only the store's wake-up
        # can bring the event to the bus in time.
        relay = OutboxRelay(store, bus, poll_interval=100 * WITHIN)
        async with relaying(relay):
            await trio.testing.wait_all_tasks_blocked()  # it looked, found nothing, and waits
            assert 0 == relay.stats.batches
            [event_id] = await accept(store, "one")
            assert [event_id] == await wait_for_entries(bus, 1)
            await wait_until_outbox_empty(backend)
    assert (1, 1, 1) == (relay.stats.batches, relay.stats.published, relay.stats.marked_sent)
    [entry] = await bus.entries(TOPIC)
    assert {"name": "one"} == entry.message.data


async def test_nothing_is_published_twice_on_the_normal_path(bus: EventBus) -> None:
    backend = MemoryBackend()
    async with running_store(backend) as store:
        accepted = [*await accept(store, *map(str, range(150)))]
        async with relaying(OutboxRelay(store, bus, batch_size=40, poll_interval=60)):
            for n in range(5):
                accepted += await accept(store, f"late-{n}", topic=TOPIC)
            await wait_for_entries(bus, len(accepted))
            await wait_until_outbox_empty(backend)
    assert accepted == await stream_ids(bus)  # each once, in commit order


class FlakyMarking(MemoryBackend):
    """Marking sent fails ``failures`` times, as a store that went away for a moment."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the database went away")
        await super().outbox_mark_sent(ids)


async def test_marking_that_fails_is_retried_without_publishing_again(bus: EventBus) -> None:
    backend = FlakyMarking(failures=2)
    async with running_store(backend) as store:
        relay = OutboxRelay(store, bus, poll_interval=60)
        async with relaying(relay):
            accepted = await accept(store, "a", "b")
            await wait_until_outbox_empty(backend)
    assert accepted == await stream_ids(bus)
    assert "StoreUnavailable: the database went away" == relay.stats.last_error


@attrs.define
class WrappedBus:
    """A bus that behaves like ``inner`` except where a subclass says otherwise."""

    inner: EventBus

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@attrs.define
class StuckAfterPublish(WrappedBus):
    """Its publish goes through, then never returns: the relay is stopped (crashes) between
    publishing and marking sent."""

    published: trio.Event = attrs.field(factory=trio.Event)

    async def publish(self, stream: str, messages: Sequence[BusMessage]) -> list[str]:
        await self.inner.publish(stream, messages)
        self.published.set()
        await trio.sleep_forever()
        raise AssertionError("not reached")


async def test_a_crash_between_publish_and_mark_sent_sends_the_event_again(
    bus: EventBus,
) -> None:
    backend = MemoryBackend()
    async with running_store(backend) as store:
        [event_id] = await accept(store, "once")
        stuck = StuckAfterPublish(bus)
        async with relaying(OutboxRelay(store, stuck, poll_interval=60)):  # type: ignore[arg-type]
            with trio.fail_after(WITHIN):
                await stuck.published.wait()
        # The relay was cancelled (the process died) before marking: still in the outbox.
        assert [event_id] == [r.event.event_id for r in await backend.outbox_pending()]
        async with relaying(OutboxRelay(store, bus, poll_interval=60)):
            await wait_for_entries(bus, 2)
            await wait_until_outbox_empty(backend)
    ids = await stream_ids(bus)
    assert [event_id, event_id] == ids  # a duplicate on the crash path...
    assert 1 == len(set(ids))  # ...that consumers recognise by its id: nothing lost


@attrs.define
class DownFor(WrappedBus):
    """Unavailable for its first ``failures`` publishes."""

    failures: int = 0

    async def publish(self, stream: str, messages: Sequence[BusMessage]) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise BusUnavailable("Redis cannot be reached")
        return await self.inner.publish(stream, messages)


async def test_the_relay_waits_for_a_bus_that_is_down_and_goes_on(bus: EventBus) -> None:
    backend = MemoryBackend()
    async with running_store(backend) as store:
        flaky = DownFor(bus, failures=3)
        async with relaying(OutboxRelay(store, flaky, poll_interval=60)):  # type: ignore[arg-type]
            accepted = await accept(store, "x")
            assert accepted == await wait_for_entries(bus, 1)
            await wait_until_outbox_empty(backend)


# -- the in-process bus: marked sent only once the consumers have handled it ------------------


async def bus_with_router_group() -> InProcessBus:
    """A fresh in-process bus (a new process) where the group ``router`` reads ``TOPIC``."""
    bus = InProcessBus()
    await bus.ensure_group(TOPIC, "router")
    return bus


async def test_in_process_an_event_stays_in_the_outbox_until_it_is_handled() -> None:
    backend = MemoryBackend()
    async with running_store(backend) as store:
        bus = await bus_with_router_group()
        async with relaying(OutboxRelay(store, bus, poll_interval=60)) as relay:
            await accept(store, "handled-later")
            await wait_for_entries(bus, 1)
            assert 1 == len(await backend.outbox_pending())  # published, not handled yet
            assert 1 == await handle_all(bus)
            await wait_until_outbox_empty(backend)
    assert (1, 1) == (relay.stats.published, relay.stats.marked_sent)


async def test_in_process_an_event_accepted_before_a_crash_is_relayed_after_it() -> None:
    backend = MemoryBackend()  # the durable store outlives the "process"; the bus does not
    async with running_store(backend) as store:
        first_life = await bus_with_router_group()
        async with relaying(OutboxRelay(store, first_life, poll_interval=60)):
            [event_id] = await accept(store, "survivor")
            await wait_for_entries(first_life, 1)
            # read by the router, which died before it had handled it
            await first_life.read(TOPIC, "router", "c", count=1, block_ms=1)
        second_life = await bus_with_router_group()
        async with relaying(OutboxRelay(store, second_life, poll_interval=60)):
            assert [event_id] == await wait_for_entries(second_life, 1)
            assert 1 == await handle_all(second_life)
            await wait_until_outbox_empty(backend)


async def test_in_process_at_most_max_in_flight_wait_to_be_handled() -> None:
    backend = MemoryBackend()
    async with running_store(backend) as store:
        bus = await bus_with_router_group()
        relay = OutboxRelay(store, bus, batch_size=2, poll_interval=60, max_in_flight=3)
        async with relaying(relay):
            await accept(store, *map(str, range(5)))
            await wait_for_entries(bus, 3)
            await trio.testing.wait_all_tasks_blocked()  # the relay waits
            assert 3 == len(await stream_ids(bus))  # the rest waits for room
            assert 3 == await handle_all(bus)
            await wait_for_entries(bus, 5)
            assert 2 == await handle_all(bus)
            await wait_until_outbox_empty(backend)
