"""The bus contract: the same tests on the in-process bus and on Redis (real clock, short
idle times)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from saga_orchestrator.bus import (
    BusMessage,
    EventBus,
    InProcessBus,
    MalformedEntry,
    RedisStreamsBus,
    StreamFigures,
    dead_letter_stream,
)

from .conftest import AddRaw

STREAM = "events"
GROUP = "router"


def message(n: int, **data: object) -> BusMessage:
    return BusMessage(
        event_id=f"e-{n}",
        event_type="user.registered",
        data={"n": n, **data},
        metadata={"correlation_id": f"c-{n}"},
        occurred_at=1700000000.5 + n,
    )


def ids_of(deliveries: list) -> list[str]:
    return [d.message.event_id for d in deliveries]


async def read(bus: EventBus, consumer: str = "c1", count: int = 100, group: str = GROUP):
    return await bus.read(STREAM, group, consumer, count=count, block_ms=20)


async def test_published_messages_are_read_in_order_with_every_field(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)
    entry_ids = await bus.publish(STREAM, [message(1, email="a@example.com"), message(2)])
    got = await read(bus)
    assert entry_ids == [d.entry_id for d in got]
    assert [message(1, email="a@example.com"), message(2)] == [d.message for d in got]
    assert [1, 1] == [d.deliveries for d in got]
    assert [] == await read(bus)  # delivered once to the group


async def test_a_group_made_after_publishing_reads_from_the_start(bus: EventBus) -> None:
    await bus.publish(STREAM, [message(1)])
    await bus.ensure_group(STREAM, GROUP)
    await bus.ensure_group(STREAM, GROUP)  # idempotent
    assert ["e-1"] == ids_of(await read(bus))


async def test_a_read_waits_on_the_server_for_new_entries(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)

    async def publish_later() -> None:
        await trio.sleep(0.05)
        await bus.publish(STREAM, [message(1)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish_later)
        with trio.fail_after(5):
            got = await bus.read(STREAM, GROUP, "c1", count=10, block_ms=2000)
    assert ["e-1"] == ids_of(got)
    start = trio.current_time()
    assert [] == await bus.read(STREAM, GROUP, "c1", count=10, block_ms=100)
    assert trio.current_time() - start >= 0.08


async def test_consumers_of_a_group_share_entries_and_groups_each_get_all(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.ensure_group(STREAM, "audit")
    await bus.publish(STREAM, [message(n) for n in range(4)])
    first = await read(bus, "c1", count=3)
    second = await read(bus, "c2", count=3)
    assert ["e-0", "e-1", "e-2"] == ids_of(first)
    assert ["e-3"] == ids_of(second)
    assert ["e-0", "e-1", "e-2", "e-3"] == ids_of(await read(bus, "a1", group="audit"))


async def test_acknowledged_entries_are_not_claimed_and_the_others_are(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.publish(STREAM, [message(1), message(2)])
    got = await read(bus, "dead-consumer")
    await bus.ack(STREAM, GROUP, [got[0].entry_id])
    assert 1 == (await bus.info(STREAM, GROUP)).pending
    assert [] == await bus.claim(STREAM, GROUP, "c2", min_idle=60, count=10)  # not idle enough
    await trio.sleep(0.15)
    claimed = await bus.claim(STREAM, GROUP, "c2", min_idle=0.1, count=10)
    assert ["e-2"] == ids_of(claimed)
    assert [2] == [d.deliveries for d in claimed]
    assert [] == await bus.claim(STREAM, GROUP, "c3", min_idle=0.1, count=10)  # idle reset
    await trio.sleep(0.15)
    again = await bus.claim(STREAM, GROUP, "c3", min_idle=0.1, count=10)
    assert [3] == [d.deliveries for d in again]
    await bus.ack(STREAM, GROUP, [again[0].entry_id])
    assert 0 == (await bus.info(STREAM, GROUP)).pending


async def test_claim_takes_at_most_count(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.publish(STREAM, [message(n) for n in range(5)])
    await read(bus, "dead-consumer")
    claimed = await bus.claim(STREAM, GROUP, "c2", min_idle=0, count=3)
    assert ["e-0", "e-1", "e-2"] == ids_of(claimed)
    everything = await bus.claim(STREAM, GROUP, "c3", min_idle=0, count=10)
    assert ["e-0", "e-1", "e-2", "e-3", "e-4"] == ids_of(everything)
    assert [3, 3, 3, 2, 2] == [d.deliveries for d in everything]


async def test_dead_letter_moves_the_entry_with_its_reason_and_acknowledges_it(
    bus: EventBus,
) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.publish(STREAM, [message(1)])
    [delivery] = await read(bus)
    await bus.dead_letter(GROUP, delivery, "failed 3 deliveries; last error: boom")
    info = await bus.info(STREAM, GROUP)
    assert (0, 1) == (info.pending, info.dead_letters)
    [dead] = await bus.entries(dead_letter_stream(STREAM))
    assert message(1) == dead.message  # the original event, intact
    assert "failed 3 deliveries; last error: boom" == dead.fields["dead_reason"]
    assert (STREAM, delivery.entry_id, GROUP) == (
        dead.fields["dead_from_stream"],
        dead.fields["dead_from_id"],
        dead.fields["dead_group"],
    )


async def test_an_event_is_dead_lettered_once_per_group(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.ensure_group(STREAM, "audit")
    await bus.publish(STREAM, [message(1), message(1), message(2)])  # e-1 published twice
    first, again, other = await read(bus)
    assert await bus.dead_letter(GROUP, first, "rejected: never valid", event_id="e-1")
    assert not await bus.dead_letter(GROUP, again, "rejected: never valid", event_id="e-1")
    assert await bus.dead_letter(GROUP, other, "rejected: never valid", event_id="e-2")
    [in_audit, *_] = await read(bus, group="audit")
    assert await bus.dead_letter("audit", in_audit, "audit failed", event_id="e-1")
    info = await bus.info(STREAM, GROUP)
    assert (0, 3) == (info.pending, info.dead_letters)  # the repeat acknowledged, not moved
    dead = await bus.entries(dead_letter_stream(STREAM))
    assert [("e-1", GROUP), ("e-2", GROUP), ("e-1", "audit")] == [
        (d.message.event_id, d.fields["dead_group"]) for d in dead
    ]


async def test_without_an_event_id_every_dead_letter_is_written(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.publish(STREAM, [message(1), message(1)])
    for delivery in await read(bus):
        assert await bus.dead_letter(GROUP, delivery, "malformed entry")
    assert 2 == (await bus.info(STREAM, GROUP)).dead_letters


@pytest.mark.integration
async def test_the_memory_of_dead_letters_outlives_the_process_on_redis(
    redis_url: str, redis_prefix: str
) -> None:
    def make_bus() -> EventBus:
        return RedisStreamsBus(redis_url, prefix=redis_prefix, read_timeout=5.0)

    first = make_bus()
    await first.open()
    await first.ensure_group(STREAM, GROUP)
    await first.publish(STREAM, [message(1)])
    [delivery] = await read(first)
    assert await first.dead_letter(GROUP, delivery, "rejected", event_id="e-1")
    await first.close()
    second = make_bus()  # another process on the same server
    await second.open()
    try:
        await second.publish(STREAM, [message(1)])
        [replayed] = await read(second)
        assert not await second.dead_letter(GROUP, replayed, "rejected", event_id="e-1")
        info = await second.info(STREAM, GROUP)
        assert (0, 1) == (info.pending, info.dead_letters)
    finally:
        await second.close()


async def test_the_memory_of_dead_letters_is_bounded_in_size_and_time(
    make_bus: Callable[..., EventBus],
) -> None:
    small = make_bus(max_length=3, dead_letter_memory=0.5)
    await small.open()
    try:
        await small.ensure_group(STREAM, GROUP)

        async def dead_letter(n: int) -> bool:
            await small.publish(STREAM, [message(n)])
            [delivery] = await read(small)
            return await small.dead_letter(GROUP, delivery, "rejected", event_id=f"e-{n}")

        assert [True] * 4 == [await dead_letter(n) for n in range(4)]
        assert [True, False] == [await dead_letter(0), await dead_letter(3)]  # e-0 forgotten
        await trio.sleep(0.6)
        assert await dead_letter(3)  # forgotten after its time
    finally:
        await small.close()


async def test_streams_are_trimmed_to_about_their_maximum_length(
    make_bus: Callable[..., EventBus],
) -> None:
    small = make_bus(max_length=50)
    await small.open()
    try:
        for batch in range(10):
            await small.publish(STREAM, [message(batch * 100 + n) for n in range(100)])
        info = await small.info(STREAM, GROUP)
        # Redis trims whole nodes (MAXLEN ~): at least the maximum, at most a node more.
        assert 50 <= info.length <= 250
        kept = ids_of(await small.entries(STREAM, count=1000))
        assert "e-999" == kept[-1] and "e-0" not in kept
    finally:
        await small.close()


async def test_a_malformed_entry_is_delivered_and_says_what_is_wrong(
    bus: EventBus, add_raw: AddRaw
) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await add_raw(STREAM, {"event_id": "x-1", "event_type": "t", "data": "not json"})
    await add_raw(STREAM, {"something": "else"})
    first, second = await read(bus)
    with pytest.raises(MalformedEntry, match="'data' is not JSON"):
        first.message  # noqa: B018
    with pytest.raises(MalformedEntry, match="missing field"):
        second.message  # noqa: B018


async def test_info_counts_entries_pending_and_not_yet_delivered(bus: EventBus) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.publish(STREAM, [message(n) for n in range(5)])
    await read(bus, count=2)
    info = await bus.info(STREAM, GROUP)
    assert (STREAM, 5, 2, 0, 1) == (
        info.stream,
        info.length,
        info.pending,
        info.dead_letters,
        info.consumers,
    )
    assert info.lag in (3, None)  # Redis before 7 does not tell
    empty = await bus.info("nothing-here", GROUP)
    assert (0, 0) == (empty.length, empty.pending)


async def test_figures_show_every_group_its_pending_entries_their_age_and_its_lag(
    bus: EventBus,
) -> None:
    await bus.ensure_group(STREAM, GROUP)
    await bus.ensure_group(STREAM, "audit")
    await bus.publish(STREAM, [message(n) for n in range(5)])
    await trio.sleep(0.3)  # the entries are this old when read
    await read(bus, count=2)
    figures = await bus.figures(STREAM)
    assert (STREAM, 5, 0) == (figures.stream, figures.length, figures.dead_letters)
    audit, router = figures.groups
    assert ("audit", 0, None, 0) == (
        audit.group,
        audit.pending,
        audit.oldest_pending_age,
        audit.consumers,
    )
    assert (GROUP, 2, 1) == (router.group, router.pending, router.consumers)
    assert router.oldest_pending_age is not None
    assert 0.25 <= router.oldest_pending_age < 60  # seconds (Redis ids count milliseconds)
    assert (audit.lag, router.lag) in ((5, 3), (None, None))  # Redis before 7 does not tell
    info = await bus.info(STREAM, GROUP)  # the health check's view of the same group
    assert info.oldest_pending_age is not None
    assert (2, True) == (info.pending, info.oldest_pending_age >= router.oldest_pending_age)

    first, second = await bus.entries(STREAM, count=2)
    await bus.ack(STREAM, GROUP, [first.entry_id, second.entry_id])
    router = (await bus.figures(STREAM)).groups[1]
    assert (0, None) == (router.pending, router.oldest_pending_age)
    assert StreamFigures(stream="nothing-here", length=0, dead_letters=0) == await bus.figures(
        "nothing-here"
    )


async def test_ping(bus: EventBus) -> None:
    await bus.ping()


# -- settlement: the in-process bus tells the relay when an entry has been handled ------------


async def test_in_process_entries_settle_when_every_group_has_handled_them() -> None:
    bus = InProcessBus(max_length=3)
    reports: list[tuple[list[str], list[str]]] = []
    bus.watch_settlements(lambda settled, dropped: reports.append((list(settled), list(dropped))))
    await bus.publish("lifecycle", [message(0)])  # no group: nobody to wait for
    assert [(["e-0"], [])] == reports
    await bus.ensure_group(STREAM, "a")
    await bus.ensure_group(STREAM, "b")
    await bus.publish(STREAM, [message(1)])
    [in_a] = await bus.read(STREAM, "a", "c", count=1, block_ms=1)
    [in_b] = await bus.read(STREAM, "b", "c", count=1, block_ms=1)
    await bus.ack(STREAM, "a", [in_a.entry_id])
    assert 1 == len(reports)  # b has not handled it yet
    await bus.dead_letter("b", in_b, "poison")
    assert ["e-1"] in [settled for settled, _ in reports]
    reports.clear()
    await bus.publish(STREAM, [message(n) for n in range(2, 6)])  # trims unhandled e-2, e-3
    assert [([], ["e-1", "e-2"])] == reports or [([], ["e-2"])] == reports
