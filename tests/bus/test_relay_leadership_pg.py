"""Two outbox relays on one PostgreSQL database and one Redis, as in two processes: one leads
(a session-level advisory lock), the other stands by. A leader whose lock connection is killed
(``pg_terminate_backend``) publishes nothing more; a leader that stops releases the lock. Either
way the standby takes over, and every message reaches the stream once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio_asyncio

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.bus import OutboxRelay, RedisStreamsBus
from saga_orchestrator.store.actor import Store, start_store
from saga_orchestrator.store.postgres import PostgresBackend
from tests.support.pg import relay_leader_pids, terminate_backend

from .test_relay import TOPIC, accept, relaying, stream_ids

pytestmark = pytest.mark.integration

WITHIN = 15.0
STANDBY_RETRY = 0.2
NEVER = 3600.0
"""A retry period no test waits for: that relay does not try to lead again."""


@pytest.fixture
async def store(pg_dsn: str, aio_loop: trio_asyncio.TrioEventLoop) -> AsyncIterator[Store]:
    backend = PostgresBackend(pg_dsn, pool_size=2, command_timeout=10.0)
    await backend.open()
    try:
        async with open_actor_system(shutdown_grace=0.5) as system:
            yield await start_store(system, backend)
    finally:
        await backend.close()


@pytest.fixture
async def bus(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStreamsBus]:
    opened = RedisStreamsBus(redis_url, prefix=redis_prefix, read_timeout=5.0, command_timeout=2.0)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def relay(store: Store, bus: RedisStreamsBus, leader_retry: float) -> OutboxRelay:
    return OutboxRelay(store, bus, poll_interval=0.2, leader_retry=leader_retry)


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``WITHIN`` seconds."""
    with trio.move_on_after(WITHIN):
        while not await condition():
            await trio.sleep(0.02)
        return
    pytest.fail(f"timed out waiting until {what}")


async def outbox_empty(store: Store) -> bool:
    return not await store.outbox_pending()


async def test_a_leader_whose_lock_connection_is_killed_stops_and_the_standby_takes_over(
    store: Store, bus: RedisStreamsBus, pg_dsn: str
) -> None:
    first = relay(store, bus, leader_retry=NEVER)
    second = relay(store, bus, leader_retry=STANDBY_RETRY)
    async with relaying(first):

        async def first_leads() -> bool:
            return first.is_leader

        await wait_until(first_leads, "the first relay leads")
        async with relaying(second):
            early = await accept(store, "early-1", "early-2")
            await wait_until(lambda: outbox_empty(store), "the leader relays")
            assert not second.is_leader
            assert 0 == second.stats.published
            published = first.stats.published

            [pid] = await relay_leader_pids(pg_dsn)
            await terminate_backend(pg_dsn, pid)
            late = await accept(store, *(f"late-{n}" for n in range(5)))  # wakes both relays
            await wait_until(lambda: outbox_empty(store), "the standby takes over and relays")

            assert published == first.stats.published  # no batch after its lock was gone
            assert {"acquired": 1, "lost": 1, "released": 0} == first.stats.leader_changes
            assert not first.is_leader
            assert second.is_leader
            assert 5 == second.stats.published
            assert [pid] != await relay_leader_pids(pg_dsn)
    assert [*early, *late] == await stream_ids(bus, TOPIC)  # each once, in outbox order


async def test_a_stopping_leader_releases_the_lock_and_the_standby_takes_over(
    store: Store, bus: RedisStreamsBus, pg_dsn: str
) -> None:
    first = relay(store, bus, leader_retry=NEVER)
    second = relay(store, bus, leader_retry=STANDBY_RETRY)
    async with trio.open_nursery() as nursery:
        first_running = trio.CancelScope()

        async def run_first(task_status: trio.TaskStatus[None]) -> None:
            with first_running:
                await first.run(task_status=task_status)

        await nursery.start(run_first)

        async def first_leads() -> bool:
            return first.is_leader

        await wait_until(first_leads, "the first relay leads")
        await nursery.start(second.run)
        before = await accept(store, "before")
        await wait_until(lambda: outbox_empty(store), "the leader relays")
        assert not second.is_leader

        first_running.cancel()  # the first process shuts down: it releases the lock

        async def second_leads() -> bool:
            return second.is_leader

        await wait_until(second_leads, "the standby leads")
        assert {"acquired": 1, "lost": 0, "released": 1} == first.stats.leader_changes
        after = await accept(store, "after")
        await wait_until(lambda: outbox_empty(store), "the new leader relays")
        assert 1 == second.stats.published
        assert 1 == len(await relay_leader_pids(pg_dsn))
        nursery.cancel_scope.cancel()
    assert [*before, *after] == await stream_ids(bus, TOPIC)
