"""The relay leadership on PostgreSQL: a session-level advisory lock on a connection of its own.

The leader is the session holding ``pg_try_advisory_lock(RELAY_LOCK_KEY)``; PostgreSQL grants it
to one session of the database at a time and releases it when that session ends (closed,
terminated, its process killed). A standby keeps its connection open and tries the lock again
at each try (:meth:`PostgresRelayLeadership.try_lead`).

The leader reads the outbox on the lock connection itself: a batch is read only while the
session, and so the lock, is alive, and checking costs no round trip of its own. A read that
finds the connection gone (or fails in a way that leaves it in doubt) ends the leadership: the
connection is dropped, so the lock is surely released, and :meth:`outbox_pending` answers
``None``. The leader may still publish the batch it read just before, once: the duplicates a
handover can cause are at most one batch.

Each unit of database work is one plain asyncio coroutine (the ``_aio_*`` functions) called
through the backend's one crossing (``PostgresBackend._run``), as in :mod:`.postgres`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
import trio_asyncio

from saga_orchestrator.errors import StoreUnavailable

from ._sql import OUTBOX_COLUMNS, outbox_from_row
from .postgres import _Writer, is_unavailable
from .records import OutboxRecord

if TYPE_CHECKING:
    from .postgres import PostgresBackend

__all__ = ["RELAY_LOCK_KEY", "PostgresRelayLeadership"]

log = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x5A6A_0D1F_0101
"""The session-level advisory lock of the relay leader: 99411533168897, shown in ``pg_locks``
as ``classid = 23146, objid = 220135681, objsubid = 1``."""

_TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
_PENDING = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1"


async def _aio_try_lock(lock: _Writer, key: int) -> bool:
    """Try the lock on the lock connection (opened if needed). Any failure, a cancel included,
    drops the connection: a lock granted but not reported must not stay held."""
    conn = await lock.connection()
    try:
        return bool(await conn.fetchval(_TRY_LOCK, key))
    except BaseException:
        lock.terminate()
        raise


async def _aio_read_holding(lock: _Writer, limit: int) -> list[Any] | None:
    """The unsent outbox rows, read on the lock connection; ``None`` (the connection dropped)
    when that connection is gone or the read leaves it in doubt."""
    conn = lock.conn
    if conn is None or conn.is_closed():
        lock.terminate()
        return None
    try:
        return list(await conn.fetch(_PENDING, limit))
    except Exception as exc:
        if conn.is_closed() or is_unavailable(exc):
            lock.terminate()
            return None
        raise  # the server refused the statement; the session, and the lock, are intact
    except BaseException:  # cancelled: whether the session is intact is not known
        lock.terminate()
        raise


class PostgresRelayLeadership:
    """The claim of one relay to lead the outbox relay of ``backend``'s database.

    Its connection is its own (neither the read pool nor a writer), opened at the first try and
    kept while standing by. ``command_timeout`` of the backend bounds each statement; a read
    that takes longer ends the leadership.
    """

    single_process = False

    def __init__(self, backend: PostgresBackend, *, key: int = RELAY_LOCK_KEY) -> None:
        self._backend = backend
        self._key = key
        self._lock = _Writer(backend.dsn, backend.connect_timeout)
        self._leading = False

    def __repr__(self) -> str:
        return f"PostgresRelayLeadership({self._backend!r}, leading={self.is_leader})"

    @property
    def is_leader(self) -> bool:
        conn = self._lock.conn
        return self._leading and conn is not None and not conn.is_closed()

    async def try_lead(self) -> bool:
        if self.is_leader:
            return True
        self._leading = False
        timeout = self._backend.command_timeout
        with trio.move_on_after(timeout) as deadline:
            leading = await self._backend._run(
                "take the outbox relay leadership", _aio_try_lock, self._lock, self._key
            )
        if deadline.cancelled_caught:
            raise StoreUnavailable(
                f"cannot take the outbox relay leadership: {self._backend!r} did not answer "
                f"within {timeout:g} s; retry"
            )
        self._leading = leading
        return leading

    async def outbox_pending(self, *, limit: int) -> list[OutboxRecord] | None:
        rows: list[Any] | None = None
        if self.is_leader:
            with trio.move_on_after(self._backend.command_timeout):
                rows = await self._backend._run(
                    "read the outbox", _aio_read_holding, self._lock, max(limit, 0)
                )
        if rows is None:  # lost (or timed out: given up, the connection dropped)
            self._leading = False
            self._lock.terminate()
            return None
        return [outbox_from_row(row) for row in rows]

    async def release(self) -> None:
        self._leading = False
        if self._lock.conn is None:
            return
        loop = self._backend._loop
        with trio.CancelScope(shield=True):
            if loop is None or loop.is_closed():
                self._lock.terminate()
                return
            try:
                await trio_asyncio.aio_as_trio(self._lock.close, loop=loop)(
                    self._backend.close_timeout
                )
            except Exception:
                log.warning("closing the relay leader's connection failed; terminating it")
                self._lock.terminate()
