"""The embedded store: one SQLite file (stdlib ``sqlite3``), the default when no database is set.

(Over 400 lines: the store contract is one class; the lease and command statements live in
``_sqlite_leases.py``.)

Writes run on ONE dedicated connection in a worker thread, one at a time
(``trio.CapacityLimiter(1)``); a batch is one ``BEGIN IMMEDIATE`` transaction and a handful of
``executemany`` statements. The file is in WAL mode with ``synchronous=FULL``: a commit is on
disk (the WAL is fsynced) before ``commit()`` returns, which holds against a process crash and
a power loss. Reads use separate connections (a small pool, in threads) and never wait behind
the writer: WAL readers see the last committed state.

The dialect-neutral pieces (JSON encoding, batch planning, row decoding, column lists) are in
:mod:`saga_orchestrator.store._sql`, shared with :mod:`saga_orchestrator.store.postgres`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import trio

from saga_orchestrator.errors import StoreError, StoreRejected, StoreUnavailable

from ._sql import (
    ACTIVE_COUNTS_SQL,
    ACTIVE_SAGAS_SQL_TAIL,
    EVENT_COLUMNS,
    EVENT_TYPES_SQL,
    OUTBOX_COLUMNS,
    SAGA_COLUMN_NAMES,
    SAGA_COLUMNS,
    SAGA_WITH_STEPS_SELECT,
    STEP_COLUMN_NAMES,
    EncodedRequest,
    active_counts,
    batch_idempotency_keys,
    batch_leased_sagas,
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
from ._sqlite_leases import SQLiteLeases
from ._sqlite_tx import transaction as _transaction
from .leadership import RelayLeadership, SingleProcessLeadership
from .migrate import apply_sqlite_migrations
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

T = TypeVar("T")

_CHUNK = 500
"""Parameters per ``IN (...)`` list (SQLite allows 32,766 per statement since 3.32)."""

_UNAVAILABLE_CODES = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_PERM",
)

_REQUEST_ERRORS = (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                   sqlite3.DataError, OverflowError)  # fmt: skip
"""Errors one request's values cause: the batch is retried one request per transaction."""


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _upsert(table: str, columns: Sequence[str], keys: int) -> str:
    """``INSERT`` a row of ``columns`` into ``table``, or update the row with the same first
    ``keys`` columns (its primary key)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[keys:])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_marks(len(columns))}) "
        f"ON CONFLICT ({', '.join(columns[:keys])}) DO UPDATE SET {updates}"
    )


_UPSERT_SAGAS = (
    f"INSERT INTO sagas ({SAGA_COLUMNS}, owner, owner_epoch) "
    f"VALUES ({_marks(len(SAGA_COLUMN_NAMES) + 2)}) "
    "ON CONFLICT (saga_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SAGA_COLUMN_NAMES[1:])
)
"""A saga row: a new saga gets its owner and epoch; an existing one keeps them."""
_UPSERT_STEPS = _upsert("saga_steps", STEP_COLUMN_NAMES, 2)

READ_STREAMS_CHUNK = 500
"""Stream ids per query of ``read_streams`` (SQLite limits the parameters of a statement)."""


class SQLiteBackend(SQLiteLeases):
    """The store in the SQLite file ``path`` (created with its directory if missing).

    ``commits`` counts the write transactions committed (a batch is one, unless a value error
    made it retry its requests one by one); ``migrations_applied`` names the migrations the
    last ``open()`` applied.
    """

    def __init__(self, path: Path, *, busy_timeout: float = 5.0, read_connections: int = 4) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.read_connections = read_connections
        self.commits = 0
        self.migrations_applied: list[str] = []
        self._writer: sqlite3.Connection | None = None
        self._idle_readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._write_limiter: trio.CapacityLimiter | None = None
        self._read_limiter: trio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"SQLiteBackend({str(self.path)!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._closed = False
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(self.read_connections)
        try:
            writer, applied = await trio.to_thread.run_sync(
                self._open_writer, limiter=self._write_limiter
            )
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc, "open") from exc
        self._writer = writer
        self.migrations_applied = applied

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,  # autocommit: transactions are explicit
            check_same_thread=False,  # used from worker threads, one at a time (limiters)
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open_writer(self) -> tuple[sqlite3.Connection, list[str]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        try:
            mode = self._switch_to_wal(conn)
            if mode != "wal":
                raise StoreError(
                    f"SQLite file {self.path} cannot use WAL mode (got {mode!r}); put DATA_DIR "
                    "on a local file system"
                )
            # FULL: the WAL is fsynced at every commit, durable against power loss too
            # (NORMAL would be durable against a process crash only).
            conn.execute("PRAGMA synchronous = FULL")
            applied = apply_sqlite_migrations(conn)
        except BaseException:
            conn.close()
            raise
        return conn, applied

    def _switch_to_wal(self, conn: sqlite3.Connection) -> str:
        """Set WAL mode (it persists in the file); returns the journal mode in effect.

        Switching needs an exclusive lock and SQLite does not call the busy handler for it, so
        two processes opening a new file at once retry here until ``busy_timeout``.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                return str(mode).lower()
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY")
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _connect_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        return conn

    async def close(self) -> None:
        if self._writer is None or self._write_limiter is None:
            return
        writer, self._writer = self._writer, None
        with self._lock:
            self._closed = True
            readers, self._idle_readers = self._idle_readers, []

        def close_all() -> None:
            for conn in readers:
                conn.close()
            writer.close()  # the last connection to close checkpoints the WAL

        with trio.CancelScope(shield=True):
            # Waits for a write in progress (the writer limiter), then closes.
            await trio.to_thread.run_sync(close_all, limiter=self._write_limiter)

    # -- plumbing ------------------------------------------------------------------------------

    def _translate(self, exc: BaseException, doing: str) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        code = getattr(exc, "sqlite_errorname", "") or ""
        if isinstance(exc, OSError) or code.startswith(_UNAVAILABLE_CODES):
            if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                hint = (
                    "another process holds the database's write lock; run one service per "
                    "database file, and retry"
                )
            else:
                hint = (
                    "check that the directory exists, is writable and has free space "
                    "(DATA_DIR / DATABASE_URL), then retry"
                )
            return StoreUnavailable(f"SQLite database {self.path} failed to {doing}: {exc}; {hint}")
        if isinstance(exc, _REQUEST_ERRORS):
            return StoreRejected(
                f"SQLite database {self.path} refused to {doing}: {exc}; the same request can "
                "never succeed"
            )
        return StoreError(f"SQLite database {self.path} failed to {doing}: {exc}")

    async def _write(self, doing: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._writer
        if writer is None or self._write_limiter is None:
            raise StoreUnavailable(f"the SQLite store {self.path} is not open (yet)")
        try:
            # Not abandoned on cancel: a transaction in progress finishes (or rolls back)
            # before the caller sees the cancellation.
            return await trio.to_thread.run_sync(fn, writer, limiter=self._write_limiter)
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc, doing) from exc

    async def _read(self, doing: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None or self._read_limiter is None:
            raise StoreUnavailable(f"the SQLite store {self.path} is not open (yet)")
        try:
            return await trio.to_thread.run_sync(self._read_sync, fn, limiter=self._read_limiter)
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc, doing) from exc

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._idle_readers.pop() if self._idle_readers else None
        if conn is None:
            conn = self._connect_reader()
        try:
            return fn(conn)
        finally:
            with self._lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle_readers.append(conn)

    # -- writes --------------------------------------------------------------------------------

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        if not batch:
            return []

        def commit(conn: sqlite3.Connection) -> tuple[list[AppendResult | Exception], int]:
            # Encoding JSON in the worker thread keeps that CPU off the trio thread.
            return _commit(conn, [encode_request(request) for request in batch])

        results, commits = await self._write("commit a batch", commit)
        self.commits += commits
        return results

    async def outbox_mark_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        now = time.time()

        def mark(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
                    [(now, outbox_id) for outbox_id in ids],
                )

        await self._write("mark outbox messages sent", mark)

    # -- reads ---------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read("answer a ping", lambda c: c.execute("SELECT 1").fetchone())

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int = 1000
    ) -> list[RecordedEvent]:
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND version >= ? "
            "ORDER BY version LIMIT ?"
        )
        rows = await self._read(
            "read a stream",
            lambda c: c.execute(sql, (stream_id, from_version, max(limit, 0))).fetchall(),
        )
        return [event_from_row(row) for row in rows]

    async def find_event(self, event_id: str) -> RecordedEvent | None:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?"
        rows = await self._read("find an event", lambda c: c.execute(sql, (event_id,)).fetchall())
        return event_from_row(rows[0]) if rows else None

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        ids = list(dict.fromkeys(stream_ids))

        def read(c: sqlite3.Connection) -> list[tuple[object, ...]]:
            rows: list[tuple[object, ...]] = []
            for start in range(0, len(ids), READ_STREAMS_CHUNK):
                chunk = ids[start : start + READ_STREAMS_CHUNK]
                marks = ", ".join("?" * len(chunk))
                sql = (
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE stream_id IN ({marks}) "
                    "ORDER BY stream_id, version"
                )
                rows.extend(c.execute(sql, chunk).fetchall())
            return rows

        rows = await self._read("read streams", read)
        return group_by_stream(event_from_row(row) for row in rows)

    async def read_all(self, *, after_position: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
        rows = await self._read(
            "read events",
            lambda c: c.execute(sql, (after_position, max(limit, 0))).fetchall(),
        )
        return [event_from_row(row) for row in rows]

    async def event_types(self) -> list[str]:
        rows = await self._read("list event types", lambda c: c.execute(EVENT_TYPES_SQL).fetchall())
        return [row[0] for row in rows]

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        sql = f"{SAGA_WITH_STEPS_SELECT} WHERE s.saga_id = ? ORDER BY st.step_index"
        rows = await self._read("read a saga", lambda c: c.execute(sql, (saga_id,)).fetchall())
        return saga_from_joined_rows(rows)

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None:
        sql = f"{SAGA_WITH_STEPS_SELECT} WHERE s.idempotency_key = ? ORDER BY st.step_index"
        rows = await self._read(
            "find a saga by key", lambda c: c.execute(sql, (idempotency_key,)).fetchall()
        )
        return saga_from_joined_rows(rows)

    async def list_sagas(self, query: SagaQuery) -> SagaPage:
        sql, params = saga_list_sql(query, lambda _: "?")
        rows = await self._read("list sagas", lambda c: c.execute(sql, params).fetchall())
        return saga_page(rows, query.limit)

    async def active_sagas(self) -> list[SagaRecord]:
        sql = (
            f"SELECT {SAGA_COLUMNS} FROM sagas WHERE status IN ({_marks(len(ACTIVE_STATUSES))}) "
            f"{ACTIVE_SAGAS_SQL_TAIL}"
        )
        rows = await self._read(
            "list active sagas", lambda c: c.execute(sql, ACTIVE_STATUSES).fetchall()
        )
        return [saga_from_row(row) for row in rows]

    async def active_counts(self) -> dict[tuple[str, int], int]:
        rows = await self._read(
            "count active sagas", lambda c: c.execute(ACTIVE_COUNTS_SQL).fetchall()
        )
        return active_counts(rows)

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?"
        rows = await self._read(
            "read the outbox", lambda c: c.execute(sql, (max(limit, 0),)).fetchall()
        )
        return [outbox_from_row(row) for row in rows]

    # -- relay leadership ----------------------------------------------------------------------

    def relay_leadership(self) -> RelayLeadership:
        """Always the leader: a SQLite file serves one process (the service holds
        ``<file>.lock``, :mod:`.sqlite_lock`)."""
        return SingleProcessLeadership(self.outbox_pending)


def _commit(
    conn: sqlite3.Connection, encoded: list[EncodedRequest | StoreError]
) -> tuple[list[AppendResult | Exception], int]:
    """Commit the batch in one transaction; if a request's values make it fail, commit the
    requests one per transaction so that only the bad one fails. Returns (results, commits)."""
    try:
        return _commit_once(conn, encoded), 1
    except _REQUEST_ERRORS as exc:
        first_error: Exception = exc
    pending = [i for i, item in enumerate(encoded) if isinstance(item, EncodedRequest)]
    results: list[AppendResult | Exception] = [
        item if isinstance(item, Exception) else first_error for item in encoded
    ]
    commits = 0
    if len(pending) <= 1:
        for i in pending:
            results[i] = request_error(encoded[i], first_error)
        return results, commits
    for i in pending:
        try:
            results[i] = _commit_once(conn, [encoded[i]])[0]
            commits += 1
        except _REQUEST_ERRORS as exc:
            results[i] = request_error(encoded[i], exc)
    return results, commits


def _commit_once(
    conn: sqlite3.Connection, encoded: Sequence[EncodedRequest | Exception]
) -> list[AppendResult | Exception]:
    with _transaction(conn):
        versions: dict[str, int] = {}
        for chunk in _chunks(batch_stream_ids(encoded)):
            versions.update(
                conn.execute(
                    "SELECT stream_id, version FROM streams "
                    f"WHERE stream_id IN ({_marks(len(chunk))})",
                    chunk,
                ).fetchall()
            )
        owners: dict[str, str] = {}
        for chunk in _chunks(batch_idempotency_keys(encoded)):
            owners.update(
                conn.execute(
                    "SELECT idempotency_key, saga_id FROM sagas "
                    f"WHERE idempotency_key IN ({_marks(len(chunk))})",
                    chunk,
                ).fetchall()
            )
        leases: dict[str, tuple[str | None, int]] = {}
        for chunk in _chunks(batch_leased_sagas(encoded)):
            leases.update(
                (row[0], (row[1], row[2]))
                for row in conn.execute(
                    "SELECT saga_id, owner, owner_epoch FROM sagas "
                    f"WHERE saga_id IN ({_marks(len(chunk))})",
                    chunk,
                )
            )
        plan = plan_batch(encoded, versions, owners, leases)
        now = time.time()
        positions: list[int] = []
        if plan.events:
            (last,) = conn.execute(
                "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),"
                " coalesce((SELECT max(position) FROM events), 0))"
            ).fetchone()
            positions = list(range(last + 1, last + 1 + len(plan.events)))
            conn.executemany(
                f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(p, *row, now) for p, row in zip(positions, plan.events, strict=True)],
            )
        if plan.streams:
            conn.executemany(
                "INSERT INTO streams (stream_id, version) VALUES (?, ?) "
                "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version",
                list(plan.streams.items()),
            )
        if plan.sagas:
            conn.executemany(_UPSERT_SAGAS, list(plan.sagas.values()))
        if plan.steps:  # the given step rows; the sagas' other steps stay as they are
            conn.executemany(_UPSERT_STEPS, list(plan.steps.values()))
        if plan.outbox:
            conn.executemany(
                "INSERT INTO outbox "
                "(topic, event_id, event_type, data, metadata, occurred_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in plan.outbox],
            )
    return plan.finish(positions)
