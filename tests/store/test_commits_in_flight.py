"""Several batches in flight: the store actor hands the next batch to the backend while the
last one commits, up to the backend's ``commits_in_flight``; each reply still waits for its
own batch's commit, and PostgreSQL commits the batches in order (positions never interleave).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing
import trio_asyncio

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.store.actor import start_store
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import AppendRequest, AppendResult, NewEvent

from .test_contract import holding_the_write_lock, opened_postgres

_WAITING_FOR_THE_LOCK = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def _request(stream: str) -> AppendRequest:
    return AppendRequest(stream_id=stream, expected_version=0, events=(NewEvent(event_type="E"),))


class _GatedBackend(MemoryBackend):
    """A memory backend whose commits wait until the test lets each one through."""

    def __init__(self, in_flight: int) -> None:
        super().__init__()
        self.commits_in_flight = in_flight
        self.waiting: list[tuple[list[str], trio.Event]] = []

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        gate = trio.Event()
        self.waiting.append(([r.stream_id for r in batch], gate))
        await gate.wait()
        return await super().commit(batch)


@pytest.mark.parametrize("in_flight", [1, 2, 3])
async def test_the_store_actor_keeps_at_most_commits_in_flight_batches_going(in_flight: int):
    backend = _GatedBackend(in_flight)
    replied: list[str] = []

    async def append(stream: str) -> None:
        await store.append(_request(stream))
        replied.append(stream)

    async with open_actor_system() as system:
        store = await start_store(system, backend)
        async with trio.open_nursery() as nursery:
            for n in range(6):  # one at a time: each is its own batch while slots are free
                nursery.start_soon(append, f"s{n}")
                await trio.testing.wait_all_tasks_blocked()
            # The first batches are in flight; the rest waits in the mailbox, as one batch.
            assert [streams for streams, _ in backend.waiting] == [
                [f"s{n}"] for n in range(in_flight)
            ]
            assert replied == []
            backend.waiting[0][1].set()  # the oldest commits: its sender is answered...
            await trio.testing.wait_all_tasks_blocked()
            assert replied == ["s0"]
            # ...and what waited goes out as the next batch, in one piece.
            assert backend.waiting[-1][0] == [f"s{n}" for n in range(in_flight, 6)]
            while len(replied) < 6:
                for _, gate in backend.waiting:
                    gate.set()
                await trio.testing.wait_all_tasks_blocked()
    assert sorted(replied) == [f"s{n}" for n in range(6)]
    assert store.stats.batches == len(backend.waiting) == in_flight + 1


@pytest.mark.integration
async def test_postgres_batches_in_flight_together_commit_in_order(
    pg_dsn: str, aio_loop: object
) -> None:
    async with opened_postgres(pg_dsn, writers=2) as backend:
        assert backend.commits_in_flight == 2
        results: dict[str, list[AppendResult | Exception]] = {}

        async def commit(name: str, streams: list[str]) -> None:
            results[name] = await backend.commit([_request(s) for s in streams])

        async with trio.open_nursery() as nursery, holding_the_write_lock(pg_dsn) as blocker:
            nursery.start_soon(commit, "a", ["a1", "a2", "a3"])
            nursery.start_soon(commit, "b", ["b1", "b2"])
            # Both batches reach the server and wait there for the write lock.
            with trio.fail_after(5):
                while await trio_asyncio.aio_as_trio(blocker.fetchval)(_WAITING_FOR_THE_LOCK) < 2:
                    await trio.sleep(0.01)
            assert results == {}
        # Once the lock is free both commit, one after the other: positions do not interleave.
        positions = {
            name: [p for r in rs if isinstance(r, AppendResult) for p in r.positions]
            for name, rs in results.items()
        }
        assert sorted(len(p) for p in positions.values()) == [2, 3]
        first, second = sorted(positions.values())
        assert max(first) < min(second)
        assert sorted(first + second) == list(range(min(first), min(first) + 5))
        assert backend.commits == 2
