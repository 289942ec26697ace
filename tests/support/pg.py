"""PostgreSQL from a test's side, as an operator would look: plain asyncpg in a worker thread
(its own asyncio loop), so it needs no trio-asyncio loop and shares no connection with the
service under test."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import trio

from saga_orchestrator.store.pg_leadership import RELAY_LOCK_KEY

TIMEOUT = 10.0

RELAY_LEADER_PIDS = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
    f"AND classid = {RELAY_LOCK_KEY >> 32} AND objid = {RELAY_LOCK_KEY & 0xFFFF_FFFF} "
    "AND objsubid = 1 "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
"""The server process of the session that holds the relay leadership of this database
(``pg_locks`` shows a ``bigint`` key as its high and low 32 bits, and lists every database's
locks: other tests' servers may hold theirs meanwhile)."""


def _fetch(dsn: str, query: str, args: tuple[Any, ...]) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=TIMEOUT, command_timeout=TIMEOUT)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close(timeout=TIMEOUT)

    return asyncio.run(fetch())


async def pg_fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of ``query`` on a connection of its own."""
    return await trio.to_thread.run_sync(_fetch, dsn, query, args)


async def relay_leader_pids(dsn: str) -> list[int]:
    """The server pids holding the relay leadership of ``dsn``'s database (one, or none)."""
    return [row["pid"] for row in await pg_fetch(dsn, RELAY_LEADER_PIDS)]


async def terminate_backend(dsn: str, pid: int) -> None:
    """``pg_terminate_backend(pid)``, and wait until that session is gone."""
    [row] = await pg_fetch(dsn, "SELECT pg_terminate_backend($1, $2)", pid, int(TIMEOUT * 1000))
    assert row[0], f"server process {pid} was not terminated"
