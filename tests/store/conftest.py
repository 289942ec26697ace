"""Fixtures of the store tests: the same contract suite runs over every backend.

``backend`` is an opened backend of each kind (``memory``, ``sqlite``, ``postgresql``);
``store_target`` is where it keeps its data, and makes more backends over the same data (to
reopen, or to read through brand-new connections). Override the kinds of a test with
``@pytest.mark.parametrize("backend_kind", DURABLE_KINDS, indirect=True)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import attrs
import pytest
import trio_asyncio

from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.postgres import PostgresBackend
from saga_orchestrator.store.sqlite import SQLiteBackend

POSTGRESQL = pytest.param("postgresql", marks=pytest.mark.integration, id="postgresql")
ALL_KINDS = ["memory", "sqlite", POSTGRESQL]
DURABLE_KINDS = ["sqlite", POSTGRESQL]
SQL_KINDS = DURABLE_KINDS


@attrs.define
class BackendChoice:
    kind: str
    make_pg_database: Callable[[], AbstractAsyncContextManager[str]] | None = None


@attrs.define
class StoreTarget:
    """Where a test's store lives; :meth:`make` builds a new, unopened backend over it."""

    kind: str
    sqlite_path: Path | None = None
    dsn: str | None = None
    memory: MemoryBackend | None = None

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    def make(self) -> StoreBackend:
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            return SQLiteBackend(self.sqlite_path)
        if self.kind == "postgresql":
            assert self.dsn is not None
            return PostgresBackend(self.dsn, pool_size=4, command_timeout=10.0)
        assert self.memory is not None
        return self.memory


@pytest.fixture(params=ALL_KINDS)
def backend_kind(request: pytest.FixtureRequest) -> BackendChoice:
    kind: str = request.param
    if kind == "postgresql":
        # Skips (or fails in CI) here, in a plain fixture, when there is no server.
        return BackendChoice(kind, request.getfixturevalue("make_pg_database"))
    return BackendChoice(kind)


@pytest.fixture
async def store_target(
    backend_kind: BackendChoice,
    tmp_path: Path,
    aio_loop: trio_asyncio.TrioEventLoop,
) -> AsyncIterator[StoreTarget]:
    if backend_kind.kind == "postgresql":
        assert backend_kind.make_pg_database is not None
        async with backend_kind.make_pg_database() as dsn:
            yield StoreTarget("postgresql", dsn=dsn)
    elif backend_kind.kind == "sqlite":
        yield StoreTarget("sqlite", sqlite_path=tmp_path / "store.db")
    else:
        yield StoreTarget("memory", memory=MemoryBackend())


@pytest.fixture
async def backend(store_target: StoreTarget) -> AsyncIterator[StoreBackend]:
    """An opened backend of each kind; closed after the test."""
    opened = store_target.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
