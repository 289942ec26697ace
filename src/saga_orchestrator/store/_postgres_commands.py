"""Commands for a saga owned by another instance, on PostgreSQL: the command methods of
:class:`~.postgres.PostgresBackend` (a mixin over its ``_call``), and the wake-up.

A command is inserted and ``NOTIFY saga_commands, '<owner instance id>'`` sent in one
transaction (so the notification goes out when the row is visible). The owner waits on a
connection of its own that ``LISTEN``s on that channel; a notification for it ends its wait at
once. If the listening connection is lost, waits last their full time (the owner looks at its
pending commands every time a wait ends, so a command is never missed, only slower) and the
connection is made again on the next wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import trio
import trio_asyncio

from .records import SagaCommand

__all__ = ["PostgresCommands"]

log = logging.getLogger(__name__)

CHANNEL = "saga_commands"

_NOW = "extract(epoch FROM clock_timestamp())"
_PENDING = """
SELECT c.command_id, c.saga_id, c.kind, c.payload::text, c.created_at
FROM saga_commands c JOIN sagas s ON s.saga_id = c.saga_id
WHERE c.done_at IS NULL AND s.owner = $1
ORDER BY c.created_at, c.command_id LIMIT $2
"""
_FINISH = f"""
UPDATE saga_commands SET done_at = {_NOW}, outcome = $2::jsonb WHERE command_id = $1
"""
_OUTCOME = """
SELECT outcome::text FROM saga_commands WHERE command_id = $1 AND done_at IS NOT NULL
"""


class _Listener:
    """A connection that LISTENs on :data:`CHANNEL`, and the events of the waiting instances
    (asyncio objects: made and used in the asyncio loop only)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.events: dict[str, asyncio.Event] = {}

    def notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        event = self.events.get(payload)
        if event is not None:
            event.set()


class PostgresCommands:
    """The command methods of the PostgreSQL backend."""

    dsn: str
    connect_timeout: float
    command_timeout: float
    _call: Callable[..., Awaitable[Any]]
    _listener: _Listener | None = None

    async def send_command(self, command: SagaCommand, owner: str | None) -> None:
        await self._call("keep a command", _aio_send, self.command_timeout, command, owner)

    async def pending_commands(self, instance_id: str, limit: int) -> list[SagaCommand]:
        rows = await self._call(
            "read pending commands", _aio_fetch, self.command_timeout, _PENDING,
            (instance_id, max(limit, 0)),
        )  # fmt: skip
        return [
            SagaCommand(
                command_id=r[0],
                saga_id=r[1],
                kind=r[2],
                payload=json.loads(r[3]),
                created_at=r[4],
            )
            for r in rows
        ]

    async def finish_command(self, command_id: str, outcome: dict[str, object]) -> None:
        await self._call(
            "record a command's outcome", _aio_fetch, self.command_timeout, _FINISH,
            (command_id, json.dumps(outcome)),
        )  # fmt: skip

    async def command_outcome(self, command_id: str) -> dict[str, object] | None:
        rows = await self._call(
            "read a command's outcome", _aio_fetch, self.command_timeout, _OUTCOME,
            (command_id,),
        )  # fmt: skip
        return json.loads(rows[0][0]) if rows else None

    async def purge_commands(self, older_than: float) -> int:
        rows = await self._call(
            "forget old commands", _aio_fetch, self.command_timeout,
            f"WITH gone AS (DELETE FROM saga_commands WHERE created_at < {_NOW} - $1 "
            "RETURNING 1) SELECT count(*) FROM gone",
            (older_than,),
        )  # fmt: skip
        return int(rows[0][0])

    async def wait_for_commands(self, instance_id: str, at_most: float) -> None:
        listener = self._listener
        if listener is None or listener.conn.is_closed():
            try:
                listener = self._listener = await trio_asyncio.aio_as_trio(_aio_listen)(
                    self.dsn, self.connect_timeout
                )
            except Exception as exc:  # no wake-ups meanwhile: the wait lasts its full time
                log.warning("cannot listen for commands (%s): looking every %g s", exc, at_most)
                self._listener = None
                await trio.sleep(at_most)
                return
        await trio_asyncio.aio_as_trio(_aio_wait)(listener, instance_id, at_most)

    async def _close_commands(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.conn.is_closed():
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await trio_asyncio.aio_as_trio(listener.conn.close)(timeout=2.0)


# -- the units of database work (plain asyncio coroutines) ------------------------------------


async def _aio_fetch(pool: asyncpg.Pool, within: float, sql: str, args: Any) -> Any:
    async with pool.acquire(timeout=within) as conn:
        return await conn.fetch(sql, *args, timeout=within)


async def _aio_send(
    pool: asyncpg.Pool, within: float, command: SagaCommand, owner: str | None
) -> None:
    async with pool.acquire(timeout=within) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO saga_commands (command_id, saga_id, kind, payload, created_at) "
            f"VALUES ($1, $2, $3, $4::jsonb, {_NOW})",
            command.command_id,
            command.saga_id,
            command.kind,
            json.dumps(command.payload),
            timeout=within,
        )
        if owner is not None:
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, owner, timeout=within)


async def _aio_listen(dsn: str, within: float) -> _Listener:
    conn = await asyncpg.connect(dsn, timeout=within)
    listener = _Listener(conn)
    await conn.add_listener(CHANNEL, listener.notified)
    return listener


async def _aio_wait(listener: _Listener, instance_id: str, at_most: float) -> None:
    event = listener.events.get(instance_id)
    if event is None:
        event = listener.events[instance_id] = asyncio.Event()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), at_most)
    event.clear()
