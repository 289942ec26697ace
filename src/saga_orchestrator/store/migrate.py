"""Apply the store's SQL migrations (:mod:`saga_orchestrator.store.migrations`).

The backends call :func:`apply_sqlite_migrations` / :func:`apply_postgres_migrations` from their
``open()``; the CLI calls :func:`migrate_sync`. Each run applies every pending migration in ONE
transaction and records it in ``schema_migrations``; two processes that start at once are
serialised (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``pg_advisory_xact_lock``), so the second
finds the work done and applies nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import trio
import trio_asyncio

from saga_orchestrator.errors import StoreError

from .migrations import Dialect, Migration, load_migrations

if TYPE_CHECKING:
    import asyncpg

    from .postgres import PostgresBackend
    from .sqlite import SQLiteBackend

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

MIGRATION_LOCK_KEY = 0x5A6A_0D1F_0001
"""``pg_advisory_xact_lock`` key held while migrations are checked and applied."""

_SQLITE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""

_POSTGRES_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


def _pending(dialect: Dialect, applied: set[int]) -> list[Migration]:
    migrations = load_migrations(dialect)
    known = {m.version for m in migrations}
    unknown = sorted(applied - known)
    if unknown:
        raise StoreError(
            f"the database has schema migration(s) {unknown} that this release does not know "
            f"(it knows up to {max(known, default=0)}); run a newer release of saga-orchestrator "
            "against this database"
        )
    return [m for m in migrations if m.version not in applied]


def split_sqlite_script(script: str) -> list[str]:
    """Split an SQL script into complete statements (``executescript`` would commit)."""
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement.rstrip(";").strip():
                statements.append(statement)
    if buffer.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in buffer.splitlines()
    ):
        raise StoreError(f"incomplete SQL statement in migration: {buffer.strip()[:80]!r}")
    return statements


def apply_sqlite_migrations(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations on ``conn`` (autocommit mode); returns the names applied.

    Blocking: call it from a worker thread. ``BEGIN IMMEDIATE`` takes SQLite's write lock first,
    so a second process waits (``busy_timeout``) and then finds nothing pending.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_SQLITE_SCHEMA_MIGRATIONS)
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        names: list[str] = []
        for migration in _pending("sqlite", applied):
            for statement in split_sqlite_script(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            names.append(migration.name)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return names


async def apply_postgres_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply pending migrations on ``conn``; returns the names applied.

    A plain asyncio coroutine (it runs inside the backend's unit of work). The transaction takes
    ``pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`` first, so concurrent starts are serialised.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(_POSTGRES_SCHEMA_MIGRATIONS)
        applied = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        names: list[str] = []
        for migration in _pending("postgresql", applied):
            await conn.execute(migration.sql)  # no arguments: simple protocol, many statements
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                time.time(),
            )
            names.append(migration.name)
    return names


async def migrate(database_url: str | None, data_dir: Path) -> list[str]:
    """Apply the pending migrations of the database ``database_url`` names; returns their names.

    ``database_url`` and ``data_dir`` mean what they mean in the settings (unset: the embedded
    SQLite file in ``data_dir``). PostgreSQL needs a trio-asyncio loop: when none is running
    one is opened for the duration of the call. Raises ``ConfigError`` for a URL that names no
    store and ``StoreError`` (``StoreUnavailable``: the database cannot be reached) itself, not
    inside an ``ExceptionGroup``.
    """
    return await _migrate(_make_backend(database_url, data_dir))


def migrate_sync(database_url: str | None, data_dir: Path) -> list[str]:
    """:func:`migrate` for synchronous callers (the CLI): runs its own trio (+ asyncio) loop."""
    backend = _make_backend(database_url, data_dir)  # a ConfigError is raised here, plainly
    return trio.run(_migrate, backend)


def _make_backend(database_url: str | None, data_dir: Path) -> SQLiteBackend | PostgresBackend:
    """The unopened backend of ``database_url``, with one connection (``ConfigError``)."""
    # Imported here: open imports the backends, which import this module.
    from .open import make_backend
    from .postgres import PostgresBackend
    from .sqlite import SQLiteBackend

    backend = make_backend(database_url, data_dir=data_dir, pool_size=1)
    assert isinstance(backend, SQLiteBackend | PostgresBackend)
    return backend


async def _migrate(backend: SQLiteBackend | PostgresBackend) -> list[str]:
    """Open ``backend`` (which applies the migrations) in a trio-asyncio loop if it needs one."""
    from .postgres import PostgresBackend

    if isinstance(backend, PostgresBackend) and trio_asyncio.current_loop.get() is None:
        return await _in_asyncio_loop(partial(_open_and_report, backend))
    return await _open_and_report(backend)


async def _in_asyncio_loop(fn: Callable[[], Awaitable[T]]) -> T:
    """``await fn()`` in a new trio-asyncio loop.

    The loop runs ``fn`` in a nursery, which wraps whatever ``fn`` raises in an
    ``ExceptionGroup``; a ``StoreError`` that is all the group holds is raised by itself, any
    other group (several errors, or errors of other kinds) as it is.
    """
    try:
        async with trio_asyncio.open_loop():
            return await fn()
    except BaseExceptionGroup as group:
        error = _sole_error(group, StoreError)
        if error is None:
            raise
    # Raised outside the handler, so that the group it came in is not its __context__.
    raise error


def _sole_error(group: BaseExceptionGroup[BaseException], kind: type[E]) -> E | None:
    """The ``kind`` error that is the only error in ``group`` (nested groups of one included),
    else ``None``."""
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
        inner = inner.exceptions[0]
    return inner if isinstance(inner, kind) else None


async def _open_and_report(backend: SQLiteBackend | PostgresBackend) -> list[str]:
    """Open and close ``backend``; the names of the migrations its ``open()`` applied."""
    await backend.open()
    try:
        return list(backend.migrations_applied)
    finally:
        await backend.close()
