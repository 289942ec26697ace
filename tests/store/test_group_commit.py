"""Group commit through the store actor, over the durable backends.

Concurrent appends share transactions (far fewer batches than appends), and each append's reply
comes only once its data is visible to a brand-new connection, i.e. committed.

Transactions are counted twice: by the store actor (``stats.batches``) and the backend
(``commits``), and, on PostgreSQL, independently by the database itself: every row of
``events`` carries the id of the transaction that inserted it (``xmin``), so the number of
distinct ``xmin`` values is the number of transactions that wrote the events.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest
import trio
import trio_asyncio

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.store.actor import start_store
from saga_orchestrator.store.records import AppendRequest, NewEvent

from .conftest import DURABLE_KINDS, StoreTarget

N = 200
"""Concurrent tasks, each on its own stream."""
FRESH_CONNECTIONS = 8
"""Brand-new connections open at once to read back (PostgreSQL allows ~100 in all)."""


def _read_back_sqlite(path: Path, stream_id: str) -> list[str]:
    conn = sqlite3.connect(path)  # a brand-new connection
    try:
        rows = conn.execute(
            "SELECT event_id FROM events WHERE stream_id = ? ORDER BY version", (stream_id,)
        ).fetchall()
    finally:
        conn.close()
    return [row[0] for row in rows]


async def _read_back_postgres(dsn: str, stream_id: str) -> list[str]:
    conn = await asyncpg.connect(dsn, timeout=5)  # a brand-new connection
    try:
        rows = await conn.fetch(
            "SELECT event_id FROM events WHERE stream_id = $1 ORDER BY version", stream_id
        )
    finally:
        await conn.close()
    return [row[0] for row in rows]


async def _count_postgres_transactions(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return await conn.fetchval("SELECT count(DISTINCT xmin::text) FROM events")
    finally:
        await conn.close()


@pytest.mark.parametrize("backend_kind", DURABLE_KINDS, indirect=True)
async def test_concurrent_appends_share_transactions_and_reply_when_durable(
    store_target: StoreTarget,
) -> None:
    backend = store_target.make()
    await backend.open()
    limiter = trio.CapacityLimiter(FRESH_CONNECTIONS)
    seen_durable: list[str] = []

    async def read_back(stream_id: str) -> list[str]:
        async with limiter:
            if store_target.kind == "sqlite":
                assert store_target.sqlite_path is not None
                return await trio.to_thread.run_sync(
                    _read_back_sqlite, store_target.sqlite_path, stream_id
                )
            assert store_target.dsn is not None
            return await trio_asyncio.aio_as_trio(_read_back_postgres)(store_target.dsn, stream_id)

    first_wave_done = trio.Event()
    first_wave_left = N

    async def append_and_check(i: int) -> None:
        nonlocal first_wave_left
        # Two waves: the second appends to the streams again once the first is all read back.
        sent: list[str] = []
        for expected in (0, 1):
            new = NewEvent(event_type="Appended", data={"i": i, "n": expected})
            result = await store.append(
                AppendRequest(stream_id=f"stream-{i}", expected_version=expected, events=(new,))
            )
            assert result.version == expected + 1
            sent.append(new.event_id)
            # The reply has come: the event must be visible to a brand-new connection already.
            assert await read_back(f"stream-{i}") == sent
            seen_durable.append(new.event_id)
            if expected == 0:
                first_wave_left -= 1
                if first_wave_left == 0:
                    first_wave_done.set()
                await first_wave_done.wait()

    try:
        with trio.fail_after(30):
            async with open_actor_system() as system:
                store = await start_store(system, backend)
                async with trio.open_nursery() as nursery:
                    for i in range(N):
                        nursery.start_soon(append_and_check, i)
    finally:
        await backend.close()

    assert len(seen_durable) == 2 * N
    assert store.stats.appends == 2 * N
    assert store.stats.failed_batches == 0
    assert store.stats.batches < N / 4, store.stats
    assert backend.commits == store.stats.batches  # type: ignore[attr-defined]
    assert store.stats.largest_batch > 1

    if store_target.kind == "postgresql":
        assert store_target.dsn is not None
        transactions = await trio.to_thread.run_sync(
            lambda: asyncio.run(_count_postgres_transactions(store_target.dsn or ""))
        )
        assert transactions == store.stats.batches
