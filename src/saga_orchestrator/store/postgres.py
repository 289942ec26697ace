"""The PostgreSQL store: asyncpg, reached from trio through trio-asyncio.

The rules of MEASUREMENTS.md ("Traps") hold here:

* each unit of database work (acquire, transaction, statements, release) is ONE plain asyncio
  coroutine (the ``_aio_*`` functions below), called from trio once through
  ``trio_asyncio.aio_as_trio``; no asyncpg context manager is ever entered from trio;
* the pool is created inside the loop by ``open()`` with ``max_inactive_connection_lifetime=0``
  and closed by ``close()`` with a bounded wait, then ``terminate()``;
* a batch is one transaction of five round trips whatever its size: BEGIN, the write lock, one
  SELECT of the streams' versions (``FOR UPDATE``) and the idempotency keys' owners, one
  statement that writes everything (data-modifying CTEs over ``unnest`` of arrays), COMMIT.

Writes take a transaction-level advisory lock (:data:`WRITE_LOCK_KEY`) first. Within one process
the store actor commits one batch at a time anyway; the lock makes that true across processes
too, so global positions are allocated in commit order (a reader paging ``read_all`` by position
never misses an event committed later with a smaller position) and two processes never race on
a new stream or an idempotency key.

Driver errors are translated where they come back into trio: the database cannot be reached ->
``StoreUnavailable``; anything else -> ``StoreError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import trio
import trio_asyncio

from saga_orchestrator.errors import StoreError, StoreUnavailable

from ._sql import (
    ACTIVE_SAGAS_SQL_TAIL,
    EVENT_COLUMNS,
    EVENT_TYPES_SQL,
    OUTBOX_COLUMNS,
    SAGA_COLUMN_NAMES,
    SAGA_COLUMNS,
    SAGA_WITH_STEPS_SELECT,
    STEP_COLUMN_NAMES,
    EncodedRequest,
    batch_idempotency_keys,
    batch_stream_ids,
    encode_request,
    event_from_row,
    group_by_stream,
    outbox_from_row,
    plan_batch,
    request_error,
    saga_from_joined_rows,
    saga_from_row,
    saga_list_sql,
    saga_page,
)
from .migrate import apply_postgres_migrations
from .records import (
    ACTIVE_STATUSES,
    AppendRequest,
    AppendResult,
    OutboxRecord,
    RecordedEvent,
    SagaPage,
    SagaQuery,
    SagaRecord,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_LOCK_KEY = 0x5A6A_0D1F_0002
"""``pg_advisory_xact_lock`` key every write transaction takes first (see the module doc)."""

# -- statements ---------------------------------------------------------------------------------

_LOCK_WRITES = "SELECT pg_advisory_xact_lock($1)"

# What the checks of a batch need, in one statement: the versions of its streams (locked) and
# the owners of its idempotency keys. The lock is taken by the statement before, so this one's
# snapshot already sees every write that committed before the lock was granted.
_READ_STATE = """
WITH locked AS (
    SELECT stream_id, version FROM streams
    WHERE stream_id = ANY($1::text[]) ORDER BY stream_id FOR UPDATE
)
SELECT false AS is_key, stream_id AS name, version, NULL::text AS saga_id FROM locked
UNION ALL
SELECT true, idempotency_key, NULL::bigint, saga_id FROM sagas
WHERE idempotency_key = ANY($2::text[])
"""


class _Params:
    """Numbers the parameters of a statement: ``p.arrays("text", "int")`` -> ``$1::text[], ...``."""

    def __init__(self) -> None:
        self.count = 0

    def one(self, pg_type: str) -> str:
        self.count += 1
        return f"${self.count}::{pg_type}"

    def arrays(self, *pg_types: str) -> str:
        return ", ".join(self.one(f"{t}[]") for t in pg_types)


def _write_statement() -> str:
    """Every write of a batch as ONE statement (data-modifying CTEs, one ``unnest`` each).

    Parameters: now, then the columns of events (6), streams (2), sagas (14), steps (12), the
    sagas whose steps are replaced (1) and outbox (5). Empty arrays write nothing. Returns the
    position of each event. The steps of a saga are replaced by an upsert of the given steps
    and a delete of the saga's other steps: the two touch different rows.
    """
    p = _Params()
    now = p.one("float8")
    events = p.arrays("text", "bigint", "text", "text", "text", "text")
    streams = p.arrays("text", "bigint")
    saga_types = ("text", "text", "int", "text", "text", "text", "text", "text")
    saga_types += ("float8", "float8", "float8", "bigint", "text", "text")
    sagas = p.arrays(*saga_types)
    step_types = ("text", "int", "text", "text", "int", "float8", "float8", "text", "text")
    step_types += ("text", "int", "text")
    first_step_param = p.count + 1
    steps = p.arrays(*step_types)
    replaced = p.one("text[]")
    outbox = p.arrays("text", "text", "text", "text", "text")

    def cast(columns: Sequence[str], json_columns: set[str]) -> str:
        return ", ".join(f"u.{c}::jsonb" if c in json_columns else f"u.{c}" for c in columns)

    def updates(columns: Sequence[str]) -> str:
        return ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)

    step_columns = ", ".join(STEP_COLUMN_NAMES)
    return f"""
WITH new_events AS (
    INSERT INTO events (stream_id, version, event_id, event_type, data, metadata, recorded_at)
    SELECT u.stream_id, u.version, u.event_id, u.event_type, u.data::jsonb, u.metadata::jsonb,
        {now}
    FROM unnest({events})
        WITH ORDINALITY AS u(stream_id, version, event_id, event_type, data, metadata, ord)
    ORDER BY u.ord
    RETURNING position, stream_id, version
), new_versions AS (
    INSERT INTO streams (stream_id, version)
    SELECT * FROM unnest({streams})
    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version
), new_sagas AS (
    INSERT INTO sagas ({SAGA_COLUMNS})
    SELECT {cast(SAGA_COLUMN_NAMES, {"input", "result"})}
    FROM unnest({sagas}) AS u({SAGA_COLUMNS})
    ON CONFLICT (saga_id) DO UPDATE SET {updates(SAGA_COLUMN_NAMES[1:])}
), new_steps AS (
    INSERT INTO saga_steps ({step_columns})
    SELECT {cast(STEP_COLUMN_NAMES, {"result"})}
    FROM unnest({steps}) AS u({step_columns})
    ON CONFLICT (saga_id, step_index) DO UPDATE SET {updates(STEP_COLUMN_NAMES[2:])}
), old_steps AS (
    DELETE FROM saga_steps s
    WHERE s.saga_id = ANY({replaced}) AND NOT EXISTS (
        SELECT 1 FROM unnest(${first_step_param}::text[], ${first_step_param + 1}::int[])
            AS k(saga_id, step_index)
        WHERE k.saga_id = s.saga_id AND k.step_index = s.step_index
    )
), new_outbox AS (
    INSERT INTO outbox (topic, event_id, event_type, data, metadata, created_at)
    SELECT u.topic, u.event_id, u.event_type, u.data::jsonb, u.metadata::jsonb, {now}
    FROM unnest({outbox}) WITH ORDINALITY AS u(topic, event_id, event_type, data, metadata, ord)
    ORDER BY u.ord
)
SELECT position, stream_id, version FROM new_events
"""


_WRITE_BATCH = _write_statement()
_MARK_SENT = "UPDATE outbox SET sent_at = $2 WHERE id = ANY($1::bigint[]) AND sent_at IS NULL"


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Transpose rows into one list per column (the arrays ``unnest`` takes)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


# -- error classification ---------------------------------------------------------------------


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached (or refuses work) right now."""
    if isinstance(
        exc,
        OSError  # refused, reset, TimeoutError (connect and command timeouts)
        | asyncpg.PostgresConnectionError  # 08xxx, connection does not exist
        | asyncpg.exceptions.OperatorInterventionError  # 57xxx: shutdown, cannot connect now
        | asyncpg.exceptions.InsufficientResourcesError  # 53xxx: too many connections, disk full
        | asyncpg.exceptions.TransactionRollbackError  # 40xxx: serialization failure, deadlock
        # asyncpg's protocol in a state it did not expect, e.g. "another operation is in
        # progress" on a connection the server has just terminated: retrying gets a new one.
        | asyncpg.exceptions.InternalClientError,
    ):
        return True
    # InterfaceError: "connection is closed", "pool is closing"... except the client-side
    # errors about the values passed (DataError, ClientConfigurationError are ValueErrors).
    return isinstance(exc, asyncpg.InterfaceError) and not isinstance(
        exc, ValueError | asyncpg.exceptions.UnsupportedClientFeatureError
    )


def _is_request_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about the values of the batch (a constraint, a bad value)."""
    return not is_unavailable(exc) and isinstance(
        exc, asyncpg.PostgresError | asyncpg.InterfaceError
    )


def _is_driver_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        OSError
        | asyncpg.PostgresError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.InternalClientError,
    )


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` of ``dsn``, without the user's password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "PostgreSQL (unparsable DATABASE_URL)"
    database = parts.path.lstrip("/") or (parts.username or "")
    return f"PostgreSQL at {host}:{port}/{database}"


# -- units of work: plain asyncio coroutines, each called from trio once -------------------------


async def _aio_open(
    dsn: str, pool_size: int, connect_timeout: float, command_timeout: float
) -> tuple[asyncpg.Pool, list[str]]:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=pool_size,
        max_inactive_connection_lifetime=0,  # trap 2: the idle timer leaks under trio-asyncio
        timeout=connect_timeout,
        command_timeout=command_timeout,
    )
    try:
        async with pool.acquire() as conn:
            applied = await apply_postgres_migrations(conn)
    except BaseException:
        pool.terminate()
        raise
    return pool, applied


async def _aio_close(pool: asyncpg.Pool, within: float) -> None:
    try:
        await asyncio.wait_for(pool.close(), within)
    except Exception:
        log.warning("PostgreSQL pool did not close within %.1f s; terminating it", within)
        pool.terminate()


async def _aio_fetch(
    pool: asyncpg.Pool, acquire_within: float, sql: str, args: Sequence[Any]
) -> Any:
    async with pool.acquire(timeout=acquire_within) as conn:
        return await conn.fetch(sql, *args)


async def _aio_execute(
    pool: asyncpg.Pool, acquire_within: float, sql: str, args: Sequence[Any]
) -> None:
    async with pool.acquire(timeout=acquire_within) as conn:
        await conn.execute(sql, *args)


async def _aio_commit(
    pool: asyncpg.Pool, acquire_within: float, encoded: list[EncodedRequest | StoreError]
) -> tuple[list[AppendResult | Exception], int]:
    """Commit the batch in one transaction; if a request's values make it fail (or it races
    another writer on a unique key), commit the requests one per transaction so that each gets
    its own result. Returns (results, transactions committed)."""
    async with pool.acquire(timeout=acquire_within) as conn:
        try:
            return await _aio_commit_once(conn, encoded), 1
        except Exception as exc:
            if not _is_request_error(exc):
                raise
            first_error: Exception = exc
        pending = [i for i, item in enumerate(encoded) if isinstance(item, EncodedRequest)]
        results: list[AppendResult | Exception] = [
            item if isinstance(item, Exception) else first_error for item in encoded
        ]
        commits = 0
        # Even a lone request is tried again: after a race with a writer that does not take the
        # write lock, the retry's checks give it the ConcurrencyError or
        # DuplicateIdempotencyKey it deserves rather than a StoreError.
        for n, i in enumerate(pending):
            try:
                results[i] = (await _aio_commit_once(conn, [encoded[i]]))[0]
                commits += 1
            except Exception as exc:
                if _is_request_error(exc):
                    results[i] = request_error(encoded[i], exc)
                    continue
                if commits == 0 or not is_unavailable(exc):
                    raise
                # Some requests committed already: they must get their results.
                for j in pending[n:]:
                    results[j] = StoreUnavailable(
                        f"the connection to PostgreSQL failed ({type(exc).__name__}: {exc}) "
                        "before this append committed; retry"
                    )
                break
        return results, commits


async def _aio_commit_once(
    conn: asyncpg.Connection, encoded: Sequence[EncodedRequest | Exception]
) -> list[AppendResult | Exception]:
    """One transaction: lock, read the state the checks need, plan, write (5 round trips)."""
    async with conn.transaction():
        await conn.execute(_LOCK_WRITES, WRITE_LOCK_KEY)
        versions: dict[str, int] = {}
        owners: dict[str, str] = {}
        stream_ids = batch_stream_ids(encoded)
        keys = batch_idempotency_keys(encoded)
        if stream_ids or keys:
            for is_key, name, version, saga_id in await conn.fetch(_READ_STATE, stream_ids, keys):
                if is_key:
                    owners[name] = saga_id
                else:
                    versions[name] = version
        plan = plan_batch(encoded, versions, owners)
        positions: list[int] = []
        if plan.accepted:
            step_rows = [row for rows in plan.steps.values() for row in rows]
            rows = await conn.fetch(
                _WRITE_BATCH,
                time.time(),
                *_columns(plan.events, 6),
                *_columns(list(plan.streams.items()), 2),
                *_columns(list(plan.sagas.values()), len(SAGA_COLUMN_NAMES)),
                *_columns(step_rows, len(STEP_COLUMN_NAMES)),
                list(plan.steps),
                *_columns(plan.outbox, 5),
            )
            by_version = {(row[1], row[2]): row[0] for row in rows}
            positions = [by_version[(event[0], event[1])] for event in plan.events]
    return plan.finish(positions)


# -- the backend --------------------------------------------------------------------------------


class PostgresBackend:
    """The store in the PostgreSQL database ``dsn``; use it inside ``trio_asyncio.open_loop()``.

    ``commits`` counts the write transactions committed (a batch is one, unless a value error
    made it retry its requests one by one); ``migrations_applied`` names the migrations the
    last ``open()`` applied. The pool opens one connection and grows to ``pool_size``;
    ``connect_timeout`` bounds each connection attempt, ``command_timeout`` each statement and
    each wait for a free connection, ``close_timeout`` the orderly close before ``terminate()``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.close_timeout = close_timeout
        self.commits = 0
        self.migrations_applied: list[str] = []
        self._pool: asyncpg.Pool | None = None
        self._loop: trio_asyncio.TrioEventLoop | None = None
        self._where = describe_dsn(dsn)

    def __repr__(self) -> str:
        return f"PostgresBackend({self._where!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        loop = trio_asyncio.current_loop.get()
        if loop is None:
            raise StoreError(
                "the PostgreSQL store needs a trio-asyncio loop: run it inside "
                "`async with trio_asyncio.open_loop():`"
            )
        self._loop = loop
        try:
            pool, applied = await trio_asyncio.aio_as_trio(_aio_open, loop=loop)(
                self.dsn, self.pool_size, self.connect_timeout, self.command_timeout
            )
        except Exception as exc:
            raise self._translate(exc, "open") from exc
        self._pool = pool
        self.migrations_applied = applied

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None or self._loop is None:
            return
        with trio.CancelScope(shield=True):
            if self._loop.is_closed():
                with contextlib.suppress(Exception):
                    pool.terminate()
                return
            try:
                await trio_asyncio.aio_as_trio(_aio_close, loop=self._loop)(
                    pool, self.close_timeout
                )
            except Exception:
                log.exception("closing the PostgreSQL pool failed; terminating it")
                with contextlib.suppress(Exception):
                    pool.terminate()

    # -- plumbing ------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, doing: str) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        if is_unavailable(exc):
            return StoreUnavailable(
                f"cannot {doing}: {self._where} is unreachable ({type(exc).__name__}: {exc}); "
                "check that the server is running and DATABASE_URL is right, then retry"
            )
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return StoreError(
                f"cannot {doing}: the database of {self._where} does not exist ({exc}); "
                "create it or fix DATABASE_URL"
            )
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
            return StoreError(
                f"cannot {doing}: {self._where} refused the credentials ({exc}); "
                "fix the user or password in DATABASE_URL"
            )
        return StoreError(f"cannot {doing} on {self._where}: {type(exc).__name__}: {exc}")

    async def _call(self, doing: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        pool, loop = self._pool, self._loop
        if pool is None or loop is None:
            raise StoreError(f"cannot {doing}: the store on {self._where} is not open")
        if loop.is_closed():
            raise StoreUnavailable(f"cannot {doing}: the asyncio loop has closed (shutting down)")
        try:
            return await trio_asyncio.aio_as_trio(fn, loop=loop)(pool, *args)
        except Exception as exc:
            if not _is_driver_error(exc) and not isinstance(exc, StoreError):
                raise
            raise self._translate(exc, doing) from exc

    async def _fetch(self, doing: str, sql: str, *args: Any) -> Any:
        return await self._call(doing, _aio_fetch, self.command_timeout, sql, args)

    # -- writes --------------------------------------------------------------------------------

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        if not batch:
            return []
        encoded = [encode_request(request) for request in batch]
        results, commits = await self._call(
            "commit a batch", _aio_commit, self.command_timeout, encoded
        )
        self.commits += commits
        return results

    async def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        await self._call(
            "mark outbox messages sent",
            _aio_execute,
            self.command_timeout,
            _MARK_SENT,
            (list(ids), time.time()),
        )

    # -- reads ---------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._fetch("answer a ping", "SELECT 1")

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[RecordedEvent]:
        rows = await self._fetch(
            "read a stream",
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = $1 AND version >= $2 "
            "ORDER BY version LIMIT $3",
            stream_id,
            from_version,
            max(limit, 0),
        )
        return [event_from_row(row) for row in rows]

    async def find_event(self, event_id: str) -> RecordedEvent | None:
        rows = await self._fetch(
            "find an event", f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1", event_id
        )
        return event_from_row(rows[0]) if rows else None

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        rows = await self._fetch(
            "read streams",
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ANY($1::text[]) "
            "ORDER BY stream_id, version",
            list(dict.fromkeys(stream_ids)),
        )
        return group_by_stream(event_from_row(row) for row in rows)

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        rows = await self._fetch(
            "read events",
            f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after_position,
            max(limit, 0),
        )
        return [event_from_row(row) for row in rows]

    async def event_types(self) -> list[str]:
        rows = await self._fetch("list event types", EVENT_TYPES_SQL)
        return [row[0] for row in rows]

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        rows = await self._fetch(
            "read a saga",
            f"{SAGA_WITH_STEPS_SELECT} WHERE s.saga_id = $1 ORDER BY st.step_index",
            saga_id,
        )
        return saga_from_joined_rows(rows)

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None:
        rows = await self._fetch(
            "find a saga by key",
            f"{SAGA_WITH_STEPS_SELECT} WHERE s.idempotency_key = $1 ORDER BY st.step_index",
            idempotency_key,
        )
        return saga_from_joined_rows(rows)

    async def list_sagas(self, query: SagaQuery) -> SagaPage:
        sql, params = saga_list_sql(query, lambda n: f"${n}")
        rows = await self._fetch("list sagas", sql, *params)
        return saga_page(rows, query.limit)

    async def active_sagas(self) -> list[SagaRecord]:
        rows = await self._fetch(
            "list active sagas",
            f"SELECT {SAGA_COLUMNS} FROM sagas WHERE status = ANY($1::text[]) "
            f"{ACTIVE_SAGAS_SQL_TAIL}",
            list(ACTIVE_STATUSES),
        )
        return [saga_from_row(row) for row in rows]

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        rows = await self._fetch(
            "read the outbox",
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            max(limit, 0),
        )
        return [outbox_from_row(row) for row in rows]
