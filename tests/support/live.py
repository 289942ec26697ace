"""The real service (``run_service``: Hypercorn, SQLite, the in-process bus) on a free loopback
port, for tests that talk to it over HTTP.

* :func:`open_live_server` runs it in the test's own trio run (an ``async with``);
* :func:`live_server_thread` runs it in a thread of its own with its own trio run, for
  synchronous callers (schemathesis) and for module-scoped fixtures shared by trio tests.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.service import run_service

from .sagas import SAGAS
from .server import API_KEY

START_TIMEOUT = 20.0
"""Most seconds the service may take to listen."""


@attrs.frozen
class LiveServer:
    url: str
    """``http://127.0.0.1:<port>``."""
    api_key: str | None

    @property
    def key_headers(self) -> dict[str, str]:
        return {} if self.api_key is None else {"X-API-Key": self.api_key}

    def client(
        self, *, key: bool = True, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.AsyncClient:
        """An async client of the server, sending the API key unless ``key=False``."""
        kwargs.setdefault("timeout", 10.0)
        all_headers = {**(self.key_headers if key else {}), **(headers or {})}
        return httpx.AsyncClient(base_url=self.url, headers=all_headers, **kwargs)


def live_settings(tmp_path: Path, api_key: str | None = API_KEY, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": tmp_path,
        "api_key": api_key,
        "shutdown_grace_seconds": 1.0,
        **overrides,
    }
    return Settings(**values)


def _runner(
    tmp_path: Path,
    api_key: str | None,
    sagas: Sequence[SagaDefinition],
    settings: dict[str, Any],
    stop: trio.Event,
) -> Any:
    """``run_service`` over these settings, for ``nursery.start``; it stops when ``stop`` is set."""
    return partial(
        run_service,
        live_settings(tmp_path, api_key, **settings),
        shutdown=stop,
        catalog=SagaCatalog(sagas),
    )


@asynccontextmanager
async def open_live_server(
    tmp_path: Path,
    *,
    api_key: str | None = API_KEY,
    sagas: Sequence[SagaDefinition] = SAGAS,
    **settings: Any,
) -> AsyncIterator[LiveServer]:
    """Serve for the body of the ``async with``; stopped (bounded) at the end."""
    stop = trio.Event()
    run = _runner(tmp_path, api_key, sagas, settings, stop)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(START_TIMEOUT):
            port = await nursery.start(run)
        try:
            yield LiveServer(f"http://127.0.0.1:{port}", api_key)
        finally:
            stop.set()
            nursery.cancel_scope.deadline = trio.current_time() + 10


@contextmanager
def live_server_thread(
    tmp_path: Path,
    *,
    api_key: str | None = API_KEY,
    sagas: Sequence[SagaDefinition] = SAGAS,
    **settings: Any,
) -> Iterator[LiveServer]:
    """Serve from a thread with its own trio run for the body of the ``with``."""
    started: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.Event] | BaseException] = (
        queue.Queue()
    )

    async def main() -> None:
        stop = trio.Event()
        run = _runner(tmp_path, api_key, sagas, settings, stop)
        async with trio.open_nursery() as nursery:
            port = await nursery.start(run)
            started.put((port, trio.lowlevel.current_trio_token(), stop))

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:
            started.put(exc)

    thread = threading.Thread(target=target, name="live-server", daemon=True)
    thread.start()
    try:
        first = started.get(timeout=START_TIMEOUT)
    except queue.Empty:
        raise RuntimeError(f"the service did not listen within {START_TIMEOUT} s") from None
    if isinstance(first, BaseException):
        raise RuntimeError("the service did not start") from first
    port, token, stop = first
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", api_key)
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join(timeout=15)
        if thread.is_alive():
            raise RuntimeError("the service did not stop within 15 s")
        if not started.empty():
            raise RuntimeError("the service failed") from started.get()


async def post_in_thread(
    server: LiveServer, path: str, content: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST with a synchronous client in a worker thread.

    For bodies the server refuses before reading them (413): it answers and closes the
    connection while the body is still being sent, which leaves the async client's body
    iterator unfinished (an "exception ignored" warning at garbage collection).
    """

    def post() -> httpx.Response:
        with httpx.Client(base_url=server.url, headers=server.key_headers, timeout=10) as client:
            return client.post(path, content=content, headers=headers)

    return await trio.to_thread.run_sync(post)
