"""The outbox relay publishes only while it leads (in virtual time, a leadership we steer).

A standby publishes nothing and tries to lead every ``leader_retry`` seconds; a leader whose
leadership is lost stops before its next batch; a stopping leader releases its leadership. The
same on PostgreSQL with a real advisory lock: ``test_relay_leadership_pg.py``.
"""

from __future__ import annotations

import attrs
import trio
import trio.testing

from saga_orchestrator.bus import InProcessBus, OutboxRelay
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import OutboxRecord

from .test_relay import TOPIC, accept, relaying, running_store, stream_ids

RETRY = 2.0


@attrs.define
class SteeredLeadership:
    """A leadership the test grants and takes away; reads the outbox of ``backend``."""

    backend: MemoryBackend
    grantable: bool = False
    """What the next try gets."""
    leading: bool = False
    tries: list[float] = attrs.Factory(list)
    """When each try came (``trio.current_time()``)."""
    released: int = 0
    gone: bool = False
    """The leadership is lost and the next read finds it."""
    single_process = False

    @property
    def is_leader(self) -> bool:
        return self.leading

    async def try_lead(self) -> bool:
        self.tries.append(trio.current_time())
        self.leading = self.grantable
        return self.leading

    async def outbox_pending(self, *, limit: int) -> list[OutboxRecord] | None:
        if self.gone or not self.leading:
            self.leading = self.gone = False
            return None
        return await self.backend.outbox_pending(limit=limit)

    async def release(self) -> None:
        self.leading = False
        self.released += 1

    def lose(self) -> None:
        """As when the lock connection ends: the next read finds it (``is_leader`` does not
        know yet), and the next tries fail."""
        self.grantable = False
        self.gone = True


def steered_relay(store: object, bus: InProcessBus, leadership: SteeredLeadership) -> OutboxRelay:
    return OutboxRelay(
        store,  # type: ignore[arg-type]
        bus,
        poll_interval=60,
        leadership=leadership,  # type: ignore[arg-type]
        leader_retry=RETRY,
    )


async def test_a_standby_publishes_nothing_and_leads_once_it_can(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = MemoryBackend()
    leadership = SteeredLeadership(backend)
    bus = InProcessBus()
    async with running_store(backend) as store:
        relay = steered_relay(store, bus, leadership)
        async with relaying(relay):
            accepted = await accept(store, "a", "b")
            await trio.sleep(3 * RETRY + 0.5)
            assert [] == await stream_ids(bus)  # a standby does not publish
            assert [0.0, RETRY, 2 * RETRY, 3 * RETRY] == [
                round(t - leadership.tries[0], 6) for t in leadership.tries
            ]
            assert (False, False) == (relay.is_leader, relay.stats.leader)
            leadership.grantable = True
            await trio.sleep(RETRY)
            assert accepted == await stream_ids(bus)
            assert relay.is_leader
    assert {"acquired": 1, "lost": 0, "released": 1} == relay.stats.leader_changes
    assert 1 == leadership.released


async def test_a_leader_that_lost_its_leadership_stops_before_its_next_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = MemoryBackend()
    leadership = SteeredLeadership(backend, grantable=True)
    bus = InProcessBus()
    async with running_store(backend) as store:
        relay = steered_relay(store, bus, leadership)
        async with relaying(relay):
            first = await accept(store, "before")
            with trio.fail_after(1):
                while await backend.outbox_pending():
                    await trio.sleep(0.01)
            assert first == await stream_ids(bus)
            leadership.lose()
            lost_at = trio.current_time()
            late = await accept(store, "after")  # wakes the relay: its read finds the loss
            await trio.sleep(RETRY / 2)
            assert first == await stream_ids(bus)  # not published: the relay stands by
            assert (False, 1) == (relay.stats.leader, relay.stats.leader_changes["lost"])
            leadership.grantable = True  # e.g. the lock is free again
            with trio.fail_after(2 * RETRY):
                while len(await stream_ids(bus)) < 2:
                    await trio.sleep(0.01)
            assert [*first, *late] == await stream_ids(bus)
            # it waited a whole retry period after the loss before trying again
            assert round(leadership.tries[-1] - lost_at, 6) >= RETRY
    assert {"acquired": 2, "lost": 1, "released": 1} == relay.stats.leader_changes


async def test_a_stopping_relay_releases_its_leadership(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend = MemoryBackend()
    leadership = SteeredLeadership(backend, grantable=True)
    async with running_store(backend) as store:
        relay = steered_relay(store, InProcessBus(), leadership)
        async with relaying(relay):
            await trio.testing.wait_all_tasks_blocked()
            assert relay.is_leader
        assert (False, 1) == (leadership.leading, leadership.released)
    assert {"acquired": 1, "lost": 0, "released": 1} == relay.stats.leader_changes


async def test_on_a_store_of_one_process_the_relay_always_leads() -> None:
    backend = MemoryBackend()
    bus = InProcessBus()
    async with running_store(backend) as store:
        relay = OutboxRelay(store, bus, poll_interval=60)
        async with relaying(relay):
            [event_id] = await accept(store, "x")
            with trio.fail_after(10):
                while not await stream_ids(bus):
                    await trio.sleep(0.01)
            assert relay.is_leader
            assert relay.leadership.single_process
    assert [event_id] == await stream_ids(bus, TOPIC)
    assert {"acquired": 1, "lost": 0, "released": 1} == relay.stats.leader_changes
