"""Fixtures shared by the whole test suite, one section per external service.

Tests that need a real server are marked ``@pytest.mark.integration``. When the server cannot be
reached they are skipped with a reason that says how to point them at one, except with
``CI=true`` in the environment, where an unreachable server fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import trio
import trio_asyncio


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unreachable(message: str) -> None:
    """Skip the test (fail it in CI) because a server the test needs is not there."""
    if _in_ci():
        pytest.fail(f"{message} (CI=true: integration tests must run)", pytrace=False)
    pytest.skip(message)


# =================================================================================================
# PostgreSQL
#
#   pg_server_url       session: URL of a server where the user may CREATE DATABASE (or skip)
#   make_pg_database    session: () -> async context manager giving the DSN of a fresh database
#   pg_dsn              a fresh, uniquely named database for one test, dropped afterwards
#   aio_loop            the trio-asyncio loop around the test (asyncpg needs it)
# =================================================================================================

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_ADMIN_TIMEOUT = 10.0
"""Seconds allowed for connecting and for CREATE/DROP DATABASE."""


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _pg_admin(server_url: str, *statements: str) -> None:
    """Run ``statements`` on ``server_url`` from plain asyncio (call it in a worker thread)."""

    async def run() -> None:
        conn = await asyncpg.connect(
            server_url, timeout=PG_ADMIN_TIMEOUT, command_timeout=PG_ADMIN_TIMEOUT
        )
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close(timeout=PG_ADMIN_TIMEOUT)

    asyncio.run(run())


def with_database(server_url: str, database: str) -> str:
    """``server_url`` with its database replaced by ``database``."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The PostgreSQL server of the tests: ``TEST_DATABASE_URL``, else the local default."""
    url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_TEST_DATABASE_URL
    try:
        _pg_admin(url, "SELECT 1")
    except Exception as exc:
        _unreachable(
            f"PostgreSQL is not reachable at {_masked(url)} ({type(exc).__name__}: {exc}); "
            "start one there or set TEST_DATABASE_URL=postgresql://user:password@host:port/db "
            "(the user must be allowed to CREATE DATABASE)"
        )
    return url


@pytest.fixture(scope="session")
def make_pg_database(pg_server_url: str) -> Callable[[], AbstractAsyncContextManager[str]]:
    """A factory: ``async with make_pg_database() as dsn:`` gives a fresh database, dropped
    on exit (also when the body fails or is cancelled)."""

    @asynccontextmanager
    async def fresh_database() -> AsyncIterator[str]:
        name = f"test_{uuid.uuid4().hex}"
        await trio.to_thread.run_sync(_pg_admin, pg_server_url, f'CREATE DATABASE "{name}"')
        try:
            yield with_database(pg_server_url, name)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(
                    _pg_admin, pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                )

    return fresh_database


@pytest.fixture
async def pg_dsn(
    make_pg_database: Callable[[], AbstractAsyncContextManager[str]],
) -> AsyncIterator[str]:
    """The DSN of a fresh database for this test; dropped after it."""
    async with make_pg_database() as dsn:
        yield dsn


@pytest.fixture
async def aio_loop() -> AsyncIterator[trio_asyncio.TrioEventLoop]:
    """A trio-asyncio loop around the test, as ``main`` opens one around the service.

    pytest-trio runs the fixtures and the test in one ``contextvars`` context, so the loop this
    fixture opens is the current one (``trio_asyncio.current_loop``) in the test.
    """
    async with trio_asyncio.open_loop() as loop:
        yield loop


# =================================================================================================
# (Redis fixtures go in their own section below.)
# =================================================================================================
