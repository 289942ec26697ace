"""Migrations (applied once, recorded, safe when processes start together) and opening stores."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import trio
import trio_asyncio

from saga_orchestrator.errors import ConfigError, StoreError, StoreUnavailable
from saga_orchestrator.store.migrate import (
    _SQLITE_SCHEMA_MIGRATIONS,
    _in_asyncio_loop,
    migrate,
    migrate_sync,
    split_sqlite_script,
)
from saga_orchestrator.store.migrations import load_migrations
from saga_orchestrator.store.open import make_backend
from saga_orchestrator.store.postgres import PostgresBackend
from saga_orchestrator.store.sqlite import SQLiteBackend

SQLITE_NAMES = [m.name for m in load_migrations("sqlite")]
PG_NAMES = [m.name for m in load_migrations("postgresql")]
TABLES = {"events", "streams", "sagas", "saga_steps", "outbox", "schema_migrations"}
POSTGRES_ONLY = {"0002_commit_batch_function", "0003_commit_batch_upserts_steps"}
"""PostgreSQL migrations that change no table, only server-side code (SQLite has none)."""


def test_both_dialects_have_the_same_migrations() -> None:
    sqlite_migrations = load_migrations("sqlite")
    postgres_migrations = load_migrations("postgresql")
    assert SQLITE_NAMES[0] == "0001_initial"
    # A version names the same schema in both; PostgreSQL may also have versions that only
    # create functions.
    shared = [m.name for m in postgres_migrations if m.name not in POSTGRES_ONLY]
    assert [m.name for m in sqlite_migrations] == shared
    assert [m.version for m in postgres_migrations] == list(range(1, len(PG_NAMES) + 1))
    assert {m.version for m in sqlite_migrations} <= {m.version for m in postgres_migrations}


def test_split_sqlite_script() -> None:
    script = "-- a comment; not a statement\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nSELECT 1;\n"
    assert split_sqlite_script(script) == [
        "-- a comment; not a statement\nCREATE TABLE a (x TEXT DEFAULT ';');",
        "SELECT 1;",
    ]


async def test_aio_loop_fixture_is_the_current_loop_in_the_test(
    aio_loop: trio_asyncio.TrioEventLoop,
) -> None:
    # The fixture set trio-asyncio's context variable; pytest-trio shares the context.
    assert trio_asyncio.current_loop.get() is aio_loop
    assert await trio_asyncio.aio_as_trio(asyncio.sleep)(0, "crossed") == "crossed"


# -- SQLite -------------------------------------------------------------------------------------


def _sqlite_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_sqlite_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "store.db"
    first = SQLiteBackend(path)
    await first.open()
    await first.close()
    assert first.migrations_applied == SQLITE_NAMES

    second = SQLiteBackend(path)
    await second.open()
    await second.close()
    assert second.migrations_applied == []

    rows = _sqlite_rows(path, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in load_migrations("sqlite")]
    tables = {r[0] for r in _sqlite_rows(path, "SELECT name FROM sqlite_master")}
    assert tables >= TABLES
    assert _sqlite_rows(path, "PRAGMA journal_mode") == [("wal",)]


async def test_concurrent_sqlite_migrations_apply_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    results: list[list[str]] = []

    async def run() -> None:
        results.append(await migrate(url, tmp_path))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(run)
    assert sorted(results) == [[], [], [], SQLITE_NAMES]


async def test_sqlite_refuses_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    await migrate(f"sqlite:///{path}", tmp_path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO schema_migrations VALUES (9999, '9999_future', 0)")
    conn.close()
    with pytest.raises(StoreError, match="newer release"):
        await SQLiteBackend(path).open()


def _make_sqlite_release_file(path: Path, version: int, *statements: str) -> None:
    """A SQLite file with the migrations up to ``version`` only (recorded), then
    ``statements``: what that release wrote."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(_SQLITE_SCHEMA_MIGRATIONS)
        for migration in load_migrations("sqlite"):
            if migration.version <= version:
                for statement in split_sqlite_script(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, 0)",
                    (migration.version, migration.name),
                )
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    finally:
        conn.close()


@asynccontextmanager
async def _opened_sqlite(path: Path) -> AsyncIterator[SQLiteBackend]:
    backend = SQLiteBackend(path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_the_outbox_migration_upgrades_a_first_release_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "first.db"
    _make_sqlite_release_file(
        path,
        1,
        "INSERT INTO outbox (topic, event_id, event_type, data, metadata, created_at) "
        "VALUES ('t', 'old-1', 'Happened', '{}', '{}', 1.5)",
    )
    async with _opened_sqlite(path) as backend:
        assert backend.migrations_applied == SQLITE_NAMES[1:]
        [old] = await backend.outbox_pending()
        assert ("old-1", 1.5, 1.5) == (old.event.event_id, old.created_at, old.occurred_at)


async def test_the_step_errors_migration_upgrades_a_sixth_release_sqlite_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sixth.db"
    _make_sqlite_release_file(
        path,
        6,
        "INSERT INTO sagas (saga_id, saga_type, saga_version, status, input, deadline_at, "
        "created_at, updated_at, version) VALUES ('old', 'order', 1, 'running', '{}', 9, 1, 2, 2)",
        "INSERT INTO saga_steps (saga_id, step_index, name, status, error) "
        "VALUES ('old', 0, 'one', 'retry_wait', 'boom')",
    )
    async with _opened_sqlite(path) as backend:
        assert backend.migrations_applied == ["0007_step_errors_and_trigger_events"]
        old = await backend.get_saga("old")
        assert old is not None and old.trigger_event_id is None
        (kept,) = old.steps
        assert ("boom", None, ()) == (kept.error, kept.error_type, kept.error_frames)


def test_migrate_sync_creates_the_default_sqlite_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert migrate_sync(None, data_dir) == SQLITE_NAMES
    assert (data_dir / "saga_orchestrator.db").is_file()
    assert migrate_sync("", data_dir) == []


# -- PostgreSQL ---------------------------------------------------------------------------------


async def _pg_fetch(dsn: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


@pytest.mark.integration
async def test_postgres_migrations_apply_once(pg_dsn: str, aio_loop: object) -> None:
    first = PostgresBackend(pg_dsn, pool_size=1)
    await first.open()
    await first.close()
    assert first.migrations_applied == PG_NAMES

    second = PostgresBackend(pg_dsn, pool_size=1)
    await second.open()
    await second.close()
    assert second.migrations_applied == []

    fetch = trio_asyncio.aio_as_trio(_pg_fetch)
    rows = await fetch(pg_dsn, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(i, name) for i, name in enumerate(PG_NAMES, start=1)]
    tables = await fetch(
        pg_dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    assert {t[0] for t in tables} >= TABLES


@pytest.mark.integration
async def test_concurrent_postgres_migrations_apply_once(
    pg_dsn: str, aio_loop: object, tmp_path: Path
) -> None:
    results: list[list[str]] = []

    async def run() -> None:
        results.append(await migrate(pg_dsn, tmp_path))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(run)
    assert sorted(results) == [[], [], [], PG_NAMES]
    rows = await trio_asyncio.aio_as_trio(_pg_fetch)(
        pg_dsn, "SELECT count(*) FROM schema_migrations"
    )
    assert rows == [(len(PG_NAMES),)]


@pytest.mark.integration
def test_migrate_sync_on_postgres(
    make_pg_database: Callable[[], AbstractAsyncContextManager[str]], tmp_path: Path
) -> None:
    async def main() -> tuple[list[str], list[str]]:
        async with make_pg_database() as dsn:
            # migrate_sync runs its own trio + asyncio loops: give it a thread of its own.
            first = await trio.to_thread.run_sync(migrate_sync, dsn, tmp_path)
            second = await trio.to_thread.run_sync(migrate_sync, dsn, tmp_path)
            return first, second

    assert trio.run(main) == (PG_NAMES, [])


UNREACHABLE_PG_URL = "postgresql://postgres@127.0.0.1:1/postgres"
"""Nothing listens on port 1: the connection is refused at once."""


def test_migrate_sync_raises_store_unavailable_itself(tmp_path: Path) -> None:
    # Not inside the ExceptionGroup of trio_asyncio.open_loop's nursery.
    with pytest.raises(StoreUnavailable, match="unreachable") as info:
        migrate_sync(UNREACHABLE_PG_URL, tmp_path)
    assert type(info.value) is StoreUnavailable
    assert isinstance(info.value.__cause__, OSError)


async def test_migrate_without_a_loop_raises_store_unavailable_itself(tmp_path: Path) -> None:
    assert trio_asyncio.current_loop.get() is None  # so migrate opens a loop of its own
    with pytest.raises(StoreUnavailable, match="unreachable"):
        await migrate(UNREACHABLE_PG_URL, tmp_path)


def test_migrate_sync_raises_config_error_itself(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not supported"):
        migrate_sync("mysql://db/app", tmp_path)


async def test_other_errors_stay_in_their_group() -> None:
    async def fail(*errors: Exception) -> None:
        if len(errors) == 1:
            raise errors[0]
        raise ExceptionGroup("several", list(errors))

    # The loop's nurseries wrap these (twice, in trio-asyncio 0.16); they stay wrapped.
    with pytest.RaisesGroup(ValueError, flatten_subgroups=True):
        await _in_asyncio_loop(lambda: fail(ValueError("not a store error")))
    with pytest.RaisesGroup(StoreError, StoreError, flatten_subgroups=True):
        await _in_asyncio_loop(lambda: fail(StoreError("one"), StoreError("two")))
    with pytest.RaisesGroup(StoreError, KeyError, flatten_subgroups=True):
        await _in_asyncio_loop(lambda: fail(StoreError("one"), KeyError("two")))


# -- choosing the backend -----------------------------------------------------------------------


def test_make_backend_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "not" / "yet"
    for unset in (None, ""):
        backend = make_backend(unset, data_dir=data_dir)
        assert isinstance(backend, SQLiteBackend)
        assert backend.path == data_dir / "saga_orchestrator.db"
        assert data_dir.is_dir()


def test_make_backend_sqlite_urls(tmp_path: Path) -> None:
    relative = make_backend("sqlite:///rel/dir/x.db", data_dir=tmp_path)
    assert isinstance(relative, SQLiteBackend) and relative.path == Path("rel/dir/x.db")
    absolute = make_backend("sqlite:////abs/dir/x.db", data_dir=tmp_path)
    assert isinstance(absolute, SQLiteBackend) and absolute.path == Path("/abs/dir/x.db")
    upper = make_backend("SQLITE:///x.db", data_dir=tmp_path)
    assert isinstance(upper, SQLiteBackend) and upper.path == Path("x.db")


def test_make_backend_postgres_urls(tmp_path: Path) -> None:
    for url in ("postgresql://u:p@db:5432/app", "postgres://db/app"):
        backend = make_backend(url, data_dir=tmp_path, pool_size=3)
        assert isinstance(backend, PostgresBackend)
        assert backend.dsn == url and backend.pool_size == 3
    assert "p@" not in repr(make_backend("postgresql://u:p@db/app", data_dir=tmp_path))


@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@db/app",
        "sqlite://host/x.db",
        "sqlite:///",
        "sqlite:///dir/",
        "sqlite:///x.db?mode=ro",
        "just-a-path.db",
    ],
)
def test_make_backend_refuses_other_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_backend(url, data_dir=tmp_path)
    assert "hunter2" not in str(info.value)
