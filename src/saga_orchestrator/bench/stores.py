"""A fresh, empty store for each workload, removed afterwards, so runs do not pollute each other.

* ``memory``: a new :class:`~saga_orchestrator.store.memory.MemoryBackend`;
* SQLite (``DATABASE_URL`` unset or ``sqlite://``): a new file in a temporary folder beside the
  configured SQLite file (same disk, so the same fsync cost), deleted afterwards;
* PostgreSQL: a new database ``bench_<hex>`` on the server of ``DATABASE_URL``, created and
  dropped through an admin connection to the database the URL names (so its user needs the
  ``CREATEDB`` privilege); the tables come from the backend's migrations, as in the service.

``--keep`` keeps the SQLite file or the PostgreSQL database and says where it is.

:func:`fresh_store` gives the place itself (its URL, and new backends over it: the ``recovery``
workload opens a second one as a restarted process would, ``http`` hands the URL to a server
process); :func:`fresh_backend` gives one opened backend over it.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import attrs
import trio
import trio_asyncio

from saga_orchestrator.config import Settings, mask_url
from saga_orchestrator.errors import ConfigError, SagaOrchestratorError
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.open import sqlite_path
from saga_orchestrator.store.postgres import PostgresBackend
from saga_orchestrator.store.sqlite import SQLiteBackend

__all__ = [
    "MEMORY",
    "BenchError",
    "FreshStore",
    "StoreTarget",
    "fresh_backend",
    "fresh_store",
    "opened",
    "resolve_target",
]

MEMORY = "memory"
"""The ``--database-url`` value that selects the in-memory backend."""
ADMIN_TIMEOUT = 30.0
"""Seconds allowed for connecting to PostgreSQL and for CREATE/DROP DATABASE."""


class BenchError(SagaOrchestratorError):
    """The benchmark could not run (or a saga did not end as the workload expects)."""


@attrs.frozen(kw_only=True)
class StoreTarget:
    """Where the benchmark's fresh stores are made."""

    kind: str
    """``memory``, ``sqlite`` or ``postgresql``."""
    server_url: str | None = None
    """PostgreSQL: the URL whose server gets the fresh databases (admin connection)."""
    sqlite_dir: Path | None = None
    """SQLite: the folder in which the temporary folders are made."""
    pool_size: int = 10


def resolve_target(database_url: str | None, settings: Settings) -> StoreTarget:
    """The target for ``database_url`` (``memory``, a SQLite or PostgreSQL URL, or unset for
    the embedded SQLite default in ``DATA_DIR``). Raises ``ConfigError`` for another URL."""
    if database_url == MEMORY:
        return StoreTarget(kind=MEMORY)
    if not database_url:
        return StoreTarget(kind="sqlite", sqlite_dir=Path(settings.data_dir))
    scheme, sep, _ = database_url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        return StoreTarget(kind="sqlite", sqlite_dir=sqlite_path(database_url).parent)
    if sep and scheme in ("postgresql", "postgres"):
        return StoreTarget(
            kind="postgresql", server_url=database_url, pool_size=settings.database_pool_size
        )
    raise ConfigError(
        f"--database-url {mask_url(database_url)!r} is not supported: use memory, "
        "sqlite:///path.db, postgresql://user@host:port/db, or leave it unset for SQLite"
    )


@attrs.frozen(kw_only=True)
class FreshStore:
    """A new, empty store made for one workload."""

    kind: str
    """``memory``, ``sqlite`` or ``postgresql``."""
    url: str
    """``memory``, ``sqlite:////absolute/path.db`` or the new database's PostgreSQL URL."""
    pool_size: int = 10
    memory: MemoryBackend | None = None

    def backend(self) -> StoreBackend:
        """A new, unopened backend over this store (``memory``: the same one every time, as
        its data lives in it). PostgreSQL needs a running trio-asyncio loop to open it."""
        if self.memory is not None:
            return self.memory
        if self.kind == "sqlite":
            return SQLiteBackend(sqlite_path(self.url))
        return PostgresBackend(self.url, pool_size=self.pool_size)


@asynccontextmanager
async def fresh_store(
    target: StoreTarget, *, keep: bool = False, note: Callable[[str], None] = print
) -> AsyncIterator[FreshStore]:
    """A new, empty store of ``target``, removed on exit unless ``keep`` (then ``note`` is told
    where it is). Its tables are made when a backend over it is first opened (migrations)."""
    if target.kind == MEMORY:
        yield FreshStore(kind=MEMORY, url=MEMORY, memory=MemoryBackend())
    elif target.kind == "sqlite":
        async with _sqlite_file(target, keep, note) as path:
            yield FreshStore(kind="sqlite", url=f"sqlite:///{path.resolve()}")
    else:
        async with _pg_database(target, keep, note) as dsn:
            yield FreshStore(kind="postgresql", url=dsn, pool_size=target.pool_size)


@asynccontextmanager
async def fresh_backend(
    target: StoreTarget, *, keep: bool = False, note: Callable[[str], None] = print
) -> AsyncIterator[StoreBackend]:
    """An open backend over a new, empty store; closed and removed on exit unless ``keep``
    (then ``note`` is told where it is). PostgreSQL needs a running trio-asyncio loop."""
    async with (
        fresh_store(target, keep=keep, note=note) as store,
        opened(store.backend()) as backend,
    ):
        yield backend


@asynccontextmanager
async def opened(backend: StoreBackend) -> AsyncIterator[StoreBackend]:
    """``backend`` opened for the body of the ``async with``, closed (shielded) after."""
    await backend.open()
    try:
        yield backend
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(ADMIN_TIMEOUT):
            await backend.close()


@asynccontextmanager
async def _sqlite_file(
    target: StoreTarget, keep: bool, note: Callable[[str], None]
) -> AsyncIterator[Path]:
    assert target.sqlite_dir is not None
    try:
        target.sqlite_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="saga-bench-", dir=target.sqlite_dir))
    except OSError as exc:
        raise BenchError(f"cannot make a SQLite file in {target.sqlite_dir}: {exc}") from exc
    path = folder / "bench.db"
    try:
        yield path
    finally:
        if keep:
            note(f"kept the SQLite store {path}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


async def _aio_admin(url: str, statement: str) -> None:
    """One statement on its own connection: a plain asyncio unit, called from trio once."""
    conn = await asyncpg.connect(url, timeout=ADMIN_TIMEOUT, command_timeout=ADMIN_TIMEOUT)
    try:
        await conn.execute(statement)
    finally:
        await conn.close(timeout=ADMIN_TIMEOUT)


async def _admin(url: str, statement: str, doing: str) -> None:
    try:
        await trio_asyncio.aio_as_trio(_aio_admin)(url, statement)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise BenchError(
            f"cannot {doing} on {mask_url(url)} ({type(exc).__name__}: {exc}); the benchmark "
            "makes a fresh database per workload through this URL, so its user needs CREATEDB"
        ) from exc


@asynccontextmanager
async def _pg_database(
    target: StoreTarget, keep: bool, note: Callable[[str], None]
) -> AsyncIterator[str]:
    assert target.server_url is not None
    name = f"bench_{secrets.token_hex(6)}"
    await _admin(target.server_url, f'CREATE DATABASE "{name}"', f"create database {name}")
    dsn = _with_database(target.server_url, name)
    try:
        yield dsn
    finally:
        if keep:
            note(f"kept the PostgreSQL database {mask_url(dsn)}")
        else:
            with trio.CancelScope(shield=True):
                await _admin(
                    target.server_url,
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
                    f"drop database {name}",
                )
