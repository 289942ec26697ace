"""The relay leadership of each backend: one leader per PostgreSQL database (a session-level
advisory lock), always the leader on SQLite and in memory (one process per store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.leadership import RelayLeadership
from saga_orchestrator.store.records import ANY_VERSION, AppendRequest, NewEvent, OutboxMessage
from tests.support.pg import relay_leader_pids, terminate_backend

from .conftest import POSTGRESQL, StoreTarget


async def accept(backend: StoreBackend, name: str) -> str:
    event = NewEvent(event_type="thing.happened", data={"name": name})
    request = AppendRequest(
        stream_id="things",
        expected_version=ANY_VERSION,
        events=(event,),
        outbox=(OutboxMessage(topic="t", event=event),),
    )
    [result] = await backend.commit([request])
    assert not isinstance(result, Exception), result
    return event.event_id


async def pending_ids(leadership: RelayLeadership) -> list[str] | None:
    records = await leadership.outbox_pending(limit=100)
    return None if records is None else [r.event.event_id for r in records]


@asynccontextmanager
async def another_process(store_target: StoreTarget) -> AsyncIterator[StoreBackend]:
    """A second backend over the same database, as another process of the service has."""
    other = store_target.make()
    await other.open()
    try:
        yield other
    finally:
        await other.close()


@pytest.mark.parametrize("backend_kind", ["memory", "sqlite"], indirect=True)
async def test_a_store_of_one_process_makes_every_relay_the_leader(
    backend: StoreBackend,
) -> None:
    first, second = backend.relay_leadership(), backend.relay_leadership()
    assert (True, True) == (first.single_process, second.single_process)
    assert not first.is_leader
    assert await first.try_lead() and await second.try_lead()
    event_id = await accept(backend, "x")
    assert [event_id] == await pending_ids(first)
    await first.release()
    assert not first.is_leader


@pytest.mark.parametrize("backend_kind", [POSTGRESQL], indirect=True)
async def test_one_relay_leads_a_postgresql_database_until_its_session_ends(
    backend: StoreBackend, store_target: StoreTarget
) -> None:
    assert store_target.dsn is not None
    leader = backend.relay_leadership()
    async with another_process(store_target) as other:
        standby = other.relay_leadership()
        try:
            assert not leader.single_process
            assert await leader.try_lead()
            assert await leader.try_lead()  # leading already
            assert not await standby.try_lead()
            assert (True, False) == (leader.is_leader, standby.is_leader)
            event_id = await accept(backend, "x")
            assert [event_id] == await pending_ids(leader)
            assert None is await pending_ids(standby)  # a standby does not read

            [pid] = await relay_leader_pids(store_target.dsn)
            await terminate_backend(store_target.dsn, pid)
            assert None is await pending_ids(leader)  # the read finds the session gone
            assert not leader.is_leader
            assert [] == await relay_leader_pids(store_target.dsn)

            assert await standby.try_lead()
            assert [event_id] == await pending_ids(standby)
            assert not await leader.try_lead()  # a new session, and the lock is taken
            await standby.release()  # stopping: the lock is free at once
            assert not standby.is_leader
            assert await leader.try_lead()
            assert [event_id] == await pending_ids(leader)
            assert 1 == len(await relay_leader_pids(store_target.dsn))
        finally:
            await leader.release()
            await standby.release()
    assert [] == await relay_leader_pids(store_target.dsn)
