"""The PostgreSQL store: asyncpg, reached from trio through trio-asyncio.

(Over 400 lines: the batch writer, its error translation and the backend are one unit; leases,
commands and relay leadership live in ``_postgres_leases.py``, ``_postgres_commands.py`` and
``pg_leadership.py``.)

The rules of MEASUREMENTS.md ("Traps") hold here:

* each unit of database work (acquire, statements, release) is ONE plain asyncio coroutine (the
  ``_aio_*`` functions below), called from trio once through ``trio_asyncio.aio_as_trio``; no
  asyncpg context manager is ever entered from trio;
* the read pool is created inside the loop by ``open()`` with
  ``max_inactive_connection_lifetime=0`` and closed by ``close()`` with a bounded wait, then
  ``terminate()``.

Writes do not use the pool: batches are committed on one connection of their own (the writer),
kept open between batches and reopened by the next batch when it is lost. A batch is ONE round
trip whatever its size: ``SELECT ... FROM saga_commit_batch(...)`` (created by the migration
``0002_commit_batch_function``, replaced by ``0003_commit_batch_upserts_steps``,
``0004_outbox_occurred_at``, ``0005_instances_and_saga_owners`` and
``0007_step_errors_and_trigger_events``), sent outside an explicit transaction, so the
statement is its own transaction and its answer comes after COMMIT. The function takes the
write lock, reads the streams' versions (``FOR UPDATE``), the idempotency keys' owners and the
event ids already stored, decides each request in batch order, writes the accepted ones (one
set-based statement per table) and answers a code per request. The batch goes as ONE
``jsonb`` argument made by one ``json.dumps`` (not as arrays: asyncpg's array encoder costs
~1-2 us of CPU per element, an ``isinstance`` check against the ``collections.abc`` classes
each).

Writes take a transaction-level advisory lock (:data:`WRITE_LOCK_KEY`) first. Within one process
the store actor commits one batch at a time anyway; the lock makes that true across processes
too, so global positions are allocated in commit order (a reader paging ``read_all`` by position
never misses an event committed later with a smaller position) and two processes never race on
a new stream or an idempotency key.

Driver errors are translated where they come back into trio: the database cannot be reached ->
``StoreUnavailable`` (retry); a value or constraint the database refuses -> ``StoreRejected``
(the same request can never succeed); anything else -> ``StoreError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import attrs
import trio
import trio_asyncio

from saga_orchestrator.errors import (
    ConcurrencyError,
    DuplicateEventId,
    DuplicateIdempotencyKey,
    LeaseLost,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)

from ._postgres_commands import PostgresCommands
from ._postgres_leases import WRITE_LOCK_KEY as WRITE_LOCK_KEY
from ._postgres_leases import PostgresLeases
from ._sql import (
    ACTIVE_COUNTS_SQL,
    ACTIVE_SAGAS_SQL_TAIL,
    EVENT_COLUMNS,
    EVENT_TYPES_SQL,
    OUTBOX_COLUMNS,
    SAGA_COLUMNS,
    SAGA_WITH_STEPS_SELECT,
    active_counts,
    dumps,
    event_from_row,
    group_by_stream,
    json_error,
    outbox_from_row,
    request_error,
    saga_from_joined_rows,
    saga_from_row,
    saga_list_sql,
    saga_page,
)
from .leadership import RelayLeadership
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

# ``pg_advisory_xact_lock`` key every write transaction takes first (see the module doc);
# ``saga_commit_batch`` spells it in decimal, 99411533168642.

# -- statements ---------------------------------------------------------------------------------

_COMMIT_BATCH = "SELECT codes, versions, firsts, owners FROM saga_commit_batch($1, $2)"
"""A whole batch, one statement (migration ``0005_instances_and_saga_owners`` says what it
does; ``0007_step_errors_and_trigger_events`` re-created it to write the columns it added)."""

_MARK_SENT = "UPDATE outbox SET sent_at = $2 WHERE id = ANY($1::bigint[]) AND sent_at IS NULL"

_ACCEPTED, _CONFLICT, _KEY_TAKEN, _EVENT_ID_TAKEN, _LEASE_LOST = 0, 1, 2, 3, 4
"""The codes ``saga_commit_batch`` answers per request."""


# -- encoding a batch -----------------------------------------------------------------------------


def _exact_float(value: Any) -> float | str:
    """``float(value)``, spelled as text when JSON has no number for it (infinity, NaN): the
    function reads timestamps with ``->> ... ::double precision``, which takes ``inf``."""
    number = float(value)
    return number if math.isfinite(number) else str(number)


def _payload(request: AppendRequest, to_float: Callable[[Any], Any] = float) -> list[Any]:
    """``request`` as ``saga_commit_batch`` reads it:
    ``[stream_id, expected_version, events, saga, steps, outbox, lease]``."""
    saga = request.saga
    saga_row = None
    steps: list[list[Any]] = []
    if saga is not None:
        saga_row = [
            saga.saga_id,
            saga.saga_type,
            saga.saga_version,
            saga.status,
            saga.current_step,
            saga.input,
            saga.result,
            saga.error,
            to_float(saga.deadline_at),
            to_float(saga.created_at),
            to_float(saga.updated_at),
            saga.version,
            saga.idempotency_key,
            saga.correlation_id,
            saga.trigger_event_id,
        ]
        steps = [
            [
                step.index,
                step.name,
                step.status,
                step.attempts,
                None if step.started_at is None else to_float(step.started_at),
                None if step.finished_at is None else to_float(step.finished_at),
                step.result,
                step.error,
                step.compensation_status,
                step.compensation_attempts,
                step.compensation_error,
                step.error_type,
                list(step.error_frames) or None,
            ]
            for step in saga.steps
        ]
    return [
        request.stream_id,
        request.expected_version,
        [[e.event_id, e.event_type, e.data, e.metadata] for e in request.events],
        saga_row,
        steps,
        [
            [
                m.topic,
                m.event.event_id,
                m.event.event_type,
                m.event.data,
                m.event.metadata,
                None if m.occurred_at is None else to_float(m.occurred_at),
            ]
            for m in request.outbox
        ],
        None if request.lease is None else [request.lease.instance_id, request.lease.epoch],
    ]


@attrs.frozen
class _Batch:
    """The requests of a batch that go to the database, with their payloads; ``errors`` holds
    the others' (values JSON cannot hold), by index in the batch."""

    indexes: list[int]
    requests: list[AppendRequest]
    payloads: list[list[Any]]
    text: str
    """The JSON of ``payloads``."""
    errors: dict[int, StoreError]


def _encode(batch: Sequence[AppendRequest]) -> _Batch:
    """The whole batch as ONE JSON text; only if that fails, request by request (each request
    JSON cannot hold gets its error)."""
    try:
        payloads = [_payload(request) for request in batch]
        return _Batch(list(range(len(batch))), list(batch), payloads, dumps(payloads), {})
    except (TypeError, ValueError):
        pass
    indexes: list[int] = []
    texts: list[str] = []
    payloads = []
    errors: dict[int, StoreError] = {}
    for index, request in enumerate(batch):
        try:
            payload = _payload(request, _exact_float)
            texts.append(dumps(payload))
        except (TypeError, ValueError) as exc:
            errors[index] = json_error(request, exc)
            continue
        indexes.append(index)
        payloads.append(payload)
    requests = [batch[i] for i in indexes]
    return _Batch(indexes, requests, payloads, f"[{','.join(texts)}]", errors)


def _results(
    requests: Sequence[AppendRequest], row: Sequence[Any]
) -> list[AppendResult | Exception]:
    """Each request's result from the row :data:`_COMMIT_BATCH` returned."""
    codes, versions, firsts, owners = row
    results: list[AppendResult | Exception] = []
    for request, code, version, first, owner in zip(
        requests, codes, versions, firsts, owners, strict=True
    ):
        if code == _ACCEPTED:
            count = len(request.events)
            positions = tuple(range(first, first + count)) if count else ()
            results.append(
                AppendResult(stream_id=request.stream_id, version=version, positions=positions)
            )
        elif code == _CONFLICT:
            results.append(ConcurrencyError(request.stream_id, request.expected_version, version))
        elif code == _KEY_TAKEN:
            assert request.saga is not None and request.saga.idempotency_key is not None
            results.append(DuplicateIdempotencyKey(request.saga.idempotency_key, owner))
        elif code == _LEASE_LOST:
            assert request.saga is not None and request.lease is not None
            results.append(LeaseLost(request.saga.saga_id, request.lease.instance_id, owner))
        else:
            assert code == _EVENT_ID_TAKEN, code
            results.append(DuplicateEventId([event.event_id for event in request.events]))
    return results


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
    """``host:port/database`` of ``dsn`` (the socket directory for a Unix socket, given as
    ``?host=/path``), without the user's password."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname
        port = parts.port or 5432
    except ValueError:
        return "PostgreSQL (unparsable DATABASE_URL)"
    database = parts.path.lstrip("/") or (parts.username or "")
    query = parse_qs(parts.query)
    if parts.port is None and query.get("port", [""])[0].isdigit():
        port = int(query["port"][0])
    if not host:
        socket_dir = query.get("host", [""])[0]
        if socket_dir.startswith("/"):
            return f"PostgreSQL at the Unix socket in {socket_dir} (port {port})/{database}"
        host = "localhost"
    return f"PostgreSQL at {host}:{port}/{database}"


# -- units of work: plain asyncio coroutines, each called from trio once -------------------------


class _Writer:
    """A connection batches are committed on, kept open between batches (no pool acquire
    and release, no reset query). Used from asyncio only, one batch at a time (the backend
    hands each batch an idle writer); reopened by the next batch once it is lost."""

    def __init__(self, dsn: str, connect_timeout: float) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.conn: asyncpg.Connection | None = None
        self.connects = 0

    async def connection(self) -> asyncpg.Connection:
        conn = self.conn
        if conn is None or conn.is_closed():
            self.conn = None
            # No per-statement timer in asyncio: each one costs the trio-asyncio loop two more
            # turns per batch and stays in its timer heap until it would have fired. The
            # backend bounds each commit from the trio side instead (same cancel on the server).
            conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout)
            self.conn = conn
            self.connects += 1
        return conn

    def after_error(self, exc: BaseException) -> None:
        """Drop the connection if ``exc`` left it unusable. A server-side error leaves it
        usable, and so does a timeout or a cancel: asyncpg cancels the statement on the server
        and the next statement waits for that (or closes the connection if it cannot)."""
        conn = self.conn
        if conn is not None and (
            conn.is_closed() or isinstance(exc, asyncpg.exceptions.InternalClientError)
        ):
            self.terminate()

    def terminate(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.terminate()

    async def close(self, within: float) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            await conn.close(timeout=within)
        except Exception:
            conn.terminate()


async def _aio_commit(
    writer: _Writer, batch: _Batch, now: float
) -> tuple[list[AppendResult | Exception], int]:
    """Commit the batch with one statement, its own transaction; if a request's values make it
    fail (or it races a writer that does not take the write lock on a unique key), commit the
    requests one per statement so that each gets its own result. Returns (the results of
    ``batch.requests``, transactions committed)."""
    conn = await writer.connection()
    try:
        row = await conn.fetchrow(_COMMIT_BATCH, batch.text, now)
        return _results(batch.requests, row), 1
    except Exception as exc:
        writer.after_error(exc)
        if not _is_request_error(exc):
            raise
        first_error: Exception = exc
    results: list[AppendResult | Exception] = [first_error] * len(batch.requests)
    commits = 0
    # Even a lone request is tried again: after a race with a writer that does not take the
    # write lock, the retry's checks give it the ConcurrencyError, DuplicateIdempotencyKey or
    # DuplicateEventId it deserves rather than a StoreError.
    for n, (request, payload) in enumerate(zip(batch.requests, batch.payloads, strict=True)):
        try:
            row = await conn.fetchrow(_COMMIT_BATCH, dumps([payload]), now)
            results[n] = _results([request], row)[0]
            commits += 1
        except Exception as exc:
            writer.after_error(exc)
            if _is_request_error(exc):
                results[n] = request_error(request, exc)
                continue
            if commits == 0 or not is_unavailable(exc):
                raise
            # Some requests committed already: they must get their results.
            for j in range(n, len(batch.requests)):
                results[j] = StoreUnavailable(
                    f"the connection to PostgreSQL failed ({type(exc).__name__}: {exc}) "
                    "before this append committed; retry"
                )
            break
    return results, commits


async def _aio_open(
    writers: Sequence[_Writer], pool_size: int, command_timeout: float
) -> tuple[asyncpg.Pool, list[str]]:
    """The read pool, the migrations applied, then the writers' connections."""
    writer = writers[0]
    pool = await asyncpg.create_pool(
        writer.dsn,
        min_size=1,
        max_size=pool_size,
        max_inactive_connection_lifetime=0,  # trap 2: the idle timer leaks under trio-asyncio
        timeout=writer.connect_timeout,
        command_timeout=command_timeout,
    )
    try:
        async with pool.acquire() as conn:
            applied = await apply_postgres_migrations(conn)
        for each in writers:
            await each.connection()
    except BaseException:
        for each in writers:
            each.terminate()
        pool.terminate()
        raise
    return pool, applied


async def _aio_close(pool: asyncpg.Pool, writers: Sequence[_Writer], within: float) -> None:
    for writer in writers:
        await writer.close(within)
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


def _terminate(pool: asyncpg.Pool, writers: Sequence[_Writer]) -> None:
    with contextlib.suppress(Exception):
        for writer in writers:
            writer.terminate()
        pool.terminate()


# -- the backend --------------------------------------------------------------------------------


class PostgresBackend(PostgresLeases, PostgresCommands):
    """The store in the PostgreSQL database ``dsn``; use it inside ``trio_asyncio.open_loop()``.

    ``commits`` counts the write transactions committed (a batch is one, unless a value error
    made it retry its requests one by one); ``migrations_applied`` names the migrations the
    last ``open()`` applied. The read pool opens one connection and grows to ``pool_size``;
    batches use ``writers`` more connections, one per batch in flight (``commits_in_flight``).
    ``connect_timeout`` bounds each connection attempt, ``command_timeout`` each statement and
    each wait for a free connection, ``close_timeout`` the orderly close before ``terminate()``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        writers: int = 2,
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
        if writers < 1:
            raise ValueError(f"writers must be at least 1, not {writers}")
        self.commits_in_flight = writers
        """Batches the store actor may have in flight: one per writer connection."""
        self._writers: list[_Writer] = []
        self._idle_writers: list[_Writer] = []
        self._writer_free = trio.Semaphore(writers)
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
        writers = [_Writer(self.dsn, self.connect_timeout) for _ in range(self.commits_in_flight)]
        try:
            pool, applied = await trio_asyncio.aio_as_trio(_aio_open, loop=loop)(
                writers, self.pool_size, self.command_timeout
            )
        except Exception as exc:
            raise self._translate(exc, "open") from exc
        self._pool = pool
        self._writers = writers
        self._idle_writers = list(writers)
        self.migrations_applied = applied

    async def close(self) -> None:
        await self._close_commands()
        pool, self._pool = self._pool, None
        writers, self._writers, self._idle_writers = self._writers, [], []
        if pool is None or not writers or self._loop is None:
            return
        with trio.CancelScope(shield=True):
            if self._loop.is_closed():
                _terminate(pool, writers)
                return
            try:
                await trio_asyncio.aio_as_trio(_aio_close, loop=self._loop)(
                    pool, writers, self.close_timeout
                )
            except Exception:
                log.exception("closing the PostgreSQL connections failed; terminating them")
                _terminate(pool, writers)

    # -- plumbing ------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, doing: str) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        if is_unavailable(exc):
            return StoreUnavailable(
                f"cannot {doing}: {self._where} is unreachable ({type(exc).__name__}: {exc}); "
                "check that the server is running and DATABASE_URL is right, then retry"
            )
        if isinstance(
            exc,
            asyncpg.exceptions.DataError  # 22xxx: a value the database cannot hold (a NUL...)
            | asyncpg.exceptions.IntegrityConstraintViolationError  # 23xxx
            | asyncpg.exceptions.ProgramLimitExceededError,  # 54xxx: a value too large
        ):
            return StoreRejected(
                f"cannot {doing} on {self._where}: the database refused a value "
                f"({type(exc).__name__}: {exc}); the same request can never succeed"
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

    def _open_loop(self, doing: str) -> trio_asyncio.TrioEventLoop:
        """The asyncio loop to cross to; ``StoreUnavailable`` while the store is not open."""
        loop = self._loop
        if self._pool is None or not self._writers or loop is None:
            raise StoreUnavailable(
                f"cannot {doing}: the store on {self._where} is not connected (yet); "
                "the service keeps trying to open it"
            )
        if loop.is_closed():
            raise StoreUnavailable(f"cannot {doing}: the asyncio loop has closed (shutting down)")
        return loop

    async def _run(self, doing: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` in the asyncio loop (one crossing), errors translated."""
        loop = self._open_loop(doing)
        try:
            return await trio_asyncio.aio_as_trio(fn, loop=loop)(*args)
        except Exception as exc:
            if not _is_driver_error(exc) and not isinstance(exc, StoreError):
                raise
            raise self._translate(exc, doing) from exc

    async def _call(self, doing: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """:meth:`_run` with the read pool as ``fn``'s first argument."""
        return await self._run(doing, fn, self._pool, *args)

    async def _fetch(self, doing: str, sql: str, *args: Any) -> Any:
        return await self._call(doing, _aio_fetch, self.command_timeout, sql, args)

    # -- writes --------------------------------------------------------------------------------

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        if not batch:
            return []
        encoded = _encode(batch)
        sent: list[AppendResult | Exception] = []
        if encoded.requests:
            async with self._writer_free:  # one batch at a time on each writer connection
                self._open_loop("commit a batch")
                writer = self._idle_writers.pop()
                try:
                    with trio.move_on_after(self.command_timeout) as deadline:
                        sent, commits = await self._run(
                            "commit a batch", _aio_commit, writer, encoded, time.time()
                        )
                finally:
                    self._idle_writers.append(writer)
                if deadline.cancelled_caught:
                    raise StoreUnavailable(
                        f"cannot commit a batch: {self._where} did not answer within "
                        f"{self.command_timeout:g} s (the statement was cancelled; it may have "
                        "committed just before); retry"
                    )
            self.commits += commits
        if not encoded.errors:
            return sent
        merged: dict[int, AppendResult | Exception] = dict(encoded.errors)
        merged.update(zip(encoded.indexes, sent, strict=True))
        return [merged[index] for index in range(len(batch))]

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

    async def active_counts(self) -> dict[tuple[str, int], int]:
        return active_counts(await self._fetch("count active sagas", ACTIVE_COUNTS_SQL))

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        rows = await self._fetch(
            "read the outbox",
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            max(limit, 0),
        )
        return [outbox_from_row(row) for row in rows]

    # -- relay leadership ----------------------------------------------------------------------

    def relay_leadership(self) -> RelayLeadership:
        """A new claim to lead the outbox relay of this database: a session-level advisory lock
        on a connection of its own (:mod:`.pg_leadership`)."""
        from .pg_leadership import PostgresRelayLeadership

        return PostgresRelayLeadership(self)
