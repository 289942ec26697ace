"""The embedded store: one SQLite file (stdlib ``sqlite3``), the default when no database is set.

Writes run on ONE dedicated connection in a worker thread, one at a time
(``trio.CapacityLimiter(1)``); a batch is one ``BEGIN IMMEDIATE`` transaction and a handful of
``executemany`` statements. The file is in WAL mode with ``synchronous=FULL``: a commit is on
disk (the WAL is fsynced) before ``commit()`` returns, which holds against a process crash and
a power loss. Reads use separate connections (a small pool, in threads) and never wait behind
the writer: WAL readers see the last committed state.

The first section of this module is dialect-neutral and shared with
:mod:`saga_orchestrator.store.postgres`: JSON encoding, the planning of a batch (version and
idempotency-key checks in batch order) and the decoding of rows. Both schemas have the same
tables and columns, so the column lists are shared too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import trio

from saga_orchestrator.errors import (
    ConcurrencyError,
    DuplicateIdempotencyKey,
    StoreError,
    StoreUnavailable,
)

from .migrate import apply_sqlite_migrations
from .records import (
    ACTIVE_STATUSES,
    ANY_VERSION,
    AppendRequest,
    AppendResult,
    NewEvent,
    OutboxRecord,
    RecordedEvent,
    SagaPage,
    SagaQuery,
    SagaRecord,
    StepRecord,
    decode_cursor,
    encode_cursor,
)

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Dialect-neutral pieces, shared with postgres.py
# ---------------------------------------------------------------------------------------------

EVENT_COLUMNS = "position, stream_id, version, event_id, event_type, data, metadata, recorded_at"
SAGA_COLUMN_NAMES = (
    "saga_id",
    "saga_type",
    "saga_version",
    "status",
    "current_step",
    "input",
    "result",
    "error",
    "deadline_at",
    "created_at",
    "updated_at",
    "version",
    "idempotency_key",
    "correlation_id",
)
SAGA_COLUMNS = ", ".join(SAGA_COLUMN_NAMES)
STEP_COLUMN_NAMES = (
    "saga_id",
    "step_index",
    "name",
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "result",
    "error",
    "compensation_status",
    "compensation_attempts",
    "compensation_error",
)
OUTBOX_COLUMNS = "id, topic, event_id, event_type, data, metadata, created_at"

EVENT_TYPES_SQL = """
WITH RECURSIVE t(event_type) AS (
    SELECT min(event_type) FROM events
    UNION ALL
    SELECT (SELECT min(e.event_type) FROM events e WHERE e.event_type > t.event_type)
    FROM t WHERE t.event_type IS NOT NULL
)
SELECT event_type FROM t WHERE event_type IS NOT NULL
"""
"""Distinct event types in order, as a loose index scan (one index probe per type)."""


def dumps(value: Any) -> str:
    """JSON text of ``value``; ``ValueError``/``TypeError`` for what JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


@attrs.frozen
class EncodedRequest:
    """An append with its JSON already encoded, as rows ready for the database."""

    request: AppendRequest
    events: tuple[tuple[str, str, str, str], ...]
    """(event_id, event_type, data, metadata) per event."""
    saga: tuple[Any, ...] | None
    """The sagas row, columns as :data:`SAGA_COLUMN_NAMES`."""
    steps: tuple[tuple[Any, ...], ...]
    """saga_steps rows, columns as :data:`STEP_COLUMN_NAMES`."""
    outbox: tuple[tuple[str, str, str, str, str], ...]
    """(topic, event_id, event_type, data, metadata) per message."""


def encode_request(request: AppendRequest) -> EncodedRequest | StoreError:
    """Encode ``request``; a value JSON cannot hold makes a ``StoreError`` for it alone."""
    try:
        events = tuple(
            (e.event_id, e.event_type, dumps(e.data), dumps(e.metadata)) for e in request.events
        )
        saga = request.saga
        saga_row = None
        steps: tuple[tuple[Any, ...], ...] = ()
        if saga is not None:
            saga_row = (
                saga.saga_id,
                saga.saga_type,
                saga.saga_version,
                saga.status,
                saga.current_step,
                dumps(saga.input),
                None if saga.result is None else dumps(saga.result),
                saga.error,
                float(saga.deadline_at),
                float(saga.created_at),
                float(saga.updated_at),
                saga.version,
                saga.idempotency_key,
                saga.correlation_id,
            )
            steps = tuple(
                (
                    saga.saga_id,
                    step.index,
                    step.name,
                    step.status,
                    step.attempts,
                    None if step.started_at is None else float(step.started_at),
                    None if step.finished_at is None else float(step.finished_at),
                    None if step.result is None else dumps(step.result),
                    step.error,
                    step.compensation_status,
                    step.compensation_attempts,
                    step.compensation_error,
                )
                for step in saga.steps
            )
        outbox = tuple(
            (
                m.topic,
                m.event.event_id,
                m.event.event_type,
                dumps(m.event.data),
                dumps(m.event.metadata),
            )
            for m in request.outbox
        )
    except (TypeError, ValueError) as exc:
        return StoreError(
            f"cannot store the append to stream {request.stream_id!r}: {exc}; event data and "
            "metadata, saga input and result, and step results must be JSON values "
            "(no NaN or infinity)"
        )
    return EncodedRequest(request, events, saga_row, steps, outbox)


def batch_stream_ids(encoded: Iterable[EncodedRequest | Exception]) -> list[str]:
    """The distinct streams of the requests still to try, sorted (a stable lock order)."""
    return sorted({e.request.stream_id for e in encoded if isinstance(e, EncodedRequest)})


def batch_idempotency_keys(encoded: Iterable[EncodedRequest | Exception]) -> list[str]:
    keys = set()
    for item in encoded:
        if isinstance(item, EncodedRequest) and item.request.saga is not None:
            key = item.request.saga.idempotency_key
            if key is not None:
                keys.add(key)
    return sorted(keys)


@attrs.define
class BatchPlan:
    """What a batch writes, decided from the streams' versions and the keys' owners."""

    results: list[AppendResult | Exception | None] = attrs.Factory(list)
    """A request's error, or ``None`` until the positions of its events are known."""
    accepted: dict[int, tuple[str, int]] = attrs.Factory(dict)
    """Request index -> (stream_id, version after it)."""
    events: list[tuple[str, int, str, str, str, str]] = attrs.Factory(list)
    """(stream_id, version, event_id, event_type, data, metadata), in commit order."""
    event_request: list[int] = attrs.Factory(list)
    streams: dict[str, int] = attrs.Factory(dict)
    """New version of each stream that grew."""
    sagas: dict[str, tuple[Any, ...]] = attrs.Factory(dict)
    """The last row written for each saga in the batch."""
    steps: dict[str, tuple[tuple[Any, ...], ...]] = attrs.Factory(dict)
    """Sagas whose steps are replaced, with their new step rows."""
    outbox: list[tuple[str, str, str, str, str]] = attrs.Factory(list)

    def finish(self, positions: Sequence[int]) -> list[AppendResult | Exception]:
        """The results, given the global position of each row of :attr:`events`."""
        per_request: dict[int, list[int]] = {}
        for index, position in zip(self.event_request, positions, strict=True):
            per_request.setdefault(index, []).append(position)
        results: list[AppendResult | Exception] = []
        for index, result in enumerate(self.results):
            if result is None:
                stream_id, version = self.accepted[index]
                result = AppendResult(
                    stream_id=stream_id,
                    version=version,
                    positions=tuple(per_request.get(index, ())),
                )
            results.append(result)
        return results


def plan_batch(
    encoded: Sequence[EncodedRequest | Exception],
    versions: Mapping[str, int],
    owners: Mapping[str, str],
) -> BatchPlan:
    """Check each request in order against ``versions`` (stream -> current version) and
    ``owners`` (idempotency key -> saga id), as the earlier requests of the batch left them."""
    versions = dict(versions)
    owners = dict(owners)
    plan = BatchPlan()
    for index, item in enumerate(encoded):
        if not isinstance(item, EncodedRequest):
            plan.results.append(item)
            continue
        request = item.request
        current = versions.get(request.stream_id, 0)
        if request.expected_version not in (ANY_VERSION, current):
            plan.results.append(
                ConcurrencyError(request.stream_id, request.expected_version, current)
            )
            continue
        saga = request.saga
        key = None if saga is None else saga.idempotency_key
        if saga is not None and key is not None:
            owner = owners.get(key)
            if owner is not None and owner != saga.saga_id:
                plan.results.append(DuplicateIdempotencyKey(key, owner))
                continue
        for offset, (event_id, event_type, data, metadata) in enumerate(item.events, start=1):
            plan.events.append(
                (request.stream_id, current + offset, event_id, event_type, data, metadata)
            )
            plan.event_request.append(index)
        version = current + len(item.events)
        if item.events:
            versions[request.stream_id] = version
            plan.streams[request.stream_id] = version
        if saga is not None and item.saga is not None:
            plan.sagas[saga.saga_id] = item.saga
            if item.steps:
                plan.steps[saga.saga_id] = item.steps
            if key is not None:
                owners[key] = saga.saga_id
        plan.outbox.extend(item.outbox)
        plan.accepted[index] = (request.stream_id, version)
        plan.results.append(None)
    return plan


def event_from_row(row: Sequence[Any]) -> RecordedEvent:
    """A row of :data:`EVENT_COLUMNS`."""
    return RecordedEvent(
        position=row[0],
        stream_id=row[1],
        version=row[2],
        event_id=row[3],
        event_type=row[4],
        data=loads(row[5]),
        metadata=loads(row[6]),
        recorded_at=row[7],
    )


def saga_from_row(row: Sequence[Any], steps: Iterable[StepRecord] = ()) -> SagaRecord:
    """A row starting with :data:`SAGA_COLUMNS`."""
    return SagaRecord(
        saga_id=row[0],
        saga_type=row[1],
        saga_version=row[2],
        status=row[3],
        current_step=row[4],
        input=loads(row[5]),
        result=loads(row[6]),
        error=row[7],
        deadline_at=row[8],
        created_at=row[9],
        updated_at=row[10],
        version=row[11],
        idempotency_key=row[12],
        correlation_id=row[13],
        steps=tuple(steps),
    )


def step_from_row(row: Sequence[Any], start: int = 0) -> StepRecord:
    """Step columns (from ``step_index`` on) at ``row[start:]``."""
    r = row[start:]
    return StepRecord(
        index=r[0],
        name=r[1],
        status=r[2],
        attempts=r[3],
        started_at=r[4],
        finished_at=r[5],
        result=loads(r[6]),
        error=r[7],
        compensation_status=r[8],
        compensation_attempts=r[9],
        compensation_error=r[10],
    )


SAGA_WITH_STEPS_SELECT = (
    "SELECT "
    + ", ".join(f"s.{c}" for c in SAGA_COLUMN_NAMES)
    + ", "
    + ", ".join(f"st.{c}" for c in STEP_COLUMN_NAMES[1:])
    + " FROM sagas s LEFT JOIN saga_steps st ON st.saga_id = s.saga_id"
)
"""A saga and its steps in ONE statement (one snapshot); add ``WHERE`` and ``ORDER BY``."""


def saga_from_joined_rows(rows: Sequence[Sequence[Any]]) -> SagaRecord | None:
    """The saga of :data:`SAGA_WITH_STEPS_SELECT` rows ordered by ``st.step_index``."""
    if not rows:
        return None
    width = len(SAGA_COLUMN_NAMES)
    steps = [step_from_row(row, width) for row in rows if row[width] is not None]
    return saga_from_row(rows[0], steps)


def outbox_from_row(row: Sequence[Any]) -> OutboxRecord:
    """A row of :data:`OUTBOX_COLUMNS`."""
    return OutboxRecord(
        id=row[0],
        topic=row[1],
        event=NewEvent(
            event_id=row[2], event_type=row[3], data=loads(row[4]), metadata=loads(row[5])
        ),
        created_at=row[6],
    )


def saga_list_sql(query: SagaQuery, placeholder: Callable[[int], str]) -> tuple[str, list[Any]]:
    """The ``list_sagas`` statement and its parameters; ``placeholder(n)`` spells parameter n
    (1-based). Raises ``ValueError`` for a bad cursor."""
    conditions: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return placeholder(len(params))

    if query.cursor:
        created_at, saga_id = decode_cursor(query.cursor)
        conditions.append(f"(created_at, saga_id) < ({param(created_at)}, {param(saga_id)})")
    if query.status is not None:
        conditions.append(f"status = {param(query.status)}")
    if query.saga_type is not None:
        conditions.append(f"saga_type = {param(query.saga_type)}")
    if query.created_after is not None:
        conditions.append(f"created_at >= {param(float(query.created_after))}")
    if query.created_before is not None:
        conditions.append(f"created_at < {param(float(query.created_before))}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = (
        f"SELECT {SAGA_COLUMNS} FROM sagas{where} "
        f"ORDER BY created_at DESC, saga_id DESC LIMIT {param(max(query.limit, 0) + 1)}"
    )
    return sql, params


def saga_page(rows: Sequence[Sequence[Any]], limit: int) -> SagaPage:
    """The page of ``saga_list_sql`` rows (it fetches one more than ``limit``)."""
    limit = max(limit, 0)
    items = tuple(saga_from_row(row) for row in rows[:limit])
    more = len(rows) > limit
    cursor = encode_cursor(items[-1].created_at, items[-1].saga_id) if more and items else None
    return SagaPage(items=items, next_cursor=cursor)


ACTIVE_SAGAS_SQL_TAIL = "ORDER BY created_at, saga_id"

# ---------------------------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------------------------

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


class SQLiteBackend:
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
        return StoreError(f"SQLite database {self.path} failed to {doing}: {exc}")

    async def _write(self, doing: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        writer = self._writer
        if writer is None or self._write_limiter is None:
            raise StoreError(f"the SQLite store {self.path} is not open")
        try:
            # Not abandoned on cancel: a transaction in progress finishes (or rolls back)
            # before the caller sees the cancellation.
            return await trio.to_thread.run_sync(fn, writer, limiter=self._write_limiter)
        except (sqlite3.Error, OSError) as exc:
            raise self._translate(exc, doing) from exc

    async def _read(self, doing: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None or self._read_limiter is None:
            raise StoreError(f"the SQLite store {self.path} is not open")
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

    async def outbox_pending(self, *, limit: int = 100) -> list[OutboxRecord]:
        sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?"
        rows = await self._read(
            "read the outbox", lambda c: c.execute(sql, (max(limit, 0),)).fetchall()
        )
        return [outbox_from_row(row) for row in rows]


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


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
            results[i] = _request_error(encoded[i], first_error)
        return results, commits
    for i in pending:
        try:
            results[i] = _commit_once(conn, [encoded[i]])[0]
            commits += 1
        except _REQUEST_ERRORS as exc:
            results[i] = _request_error(encoded[i], exc)
    return results, commits


def _request_error(item: EncodedRequest | Exception, exc: Exception) -> StoreError:
    stream = item.request.stream_id if isinstance(item, EncodedRequest) else "?"
    return StoreError(f"cannot store the append to stream {stream!r}: {exc}")


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
        plan = plan_batch(encoded, versions, owners)
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
            updates = ", ".join(f"{c} = excluded.{c}" for c in SAGA_COLUMN_NAMES[1:])
            conn.executemany(
                f"INSERT INTO sagas ({SAGA_COLUMNS}) VALUES ({_marks(len(SAGA_COLUMN_NAMES))}) "
                f"ON CONFLICT (saga_id) DO UPDATE SET {updates}",
                list(plan.sagas.values()),
            )
        if plan.steps:
            saga_ids = list(plan.steps)
            for chunk in _chunks(saga_ids):
                conn.execute(
                    f"DELETE FROM saga_steps WHERE saga_id IN ({_marks(len(chunk))})", chunk
                )
            conn.executemany(
                f"INSERT INTO saga_steps ({', '.join(STEP_COLUMN_NAMES)}) "
                f"VALUES ({_marks(len(STEP_COLUMN_NAMES))})",
                [row for rows in plan.steps.values() for row in rows],
            )
        if plan.outbox:
            conn.executemany(
                "INSERT INTO outbox (topic, event_id, event_type, data, metadata, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(*row, now) for row in plan.outbox],
            )
    return plan.finish(positions)
