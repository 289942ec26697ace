"""The service as a child process for the ``http`` workload: started on a free loopback port
against the workload's fresh store, and stopped (SIGTERM, then SIGKILL) when the workload ends.

* PostgreSQL and SQLite: ``python -m saga_orchestrator serve``, the service as deployed, with
  ``DATABASE_URL`` naming the fresh store;
* memory: ``python -m saga_orchestrator.bench.http_server``, which runs the same
  :func:`~saga_orchestrator.service.run_service` (Hypercorn, Quart-Trio, the same actors) with
  an in-memory backend, which ``DATABASE_URL`` cannot name.

Either way the settings come from the environment (and ``./.env``) as for ``serve``, with
``HOST=127.0.0.1``, a free ``PORT``, a fresh random ``API_KEY`` and the benchmark's saga types
added to ``SAGA_MODULES``. Its log goes to a file that is shown (its end) if it fails.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import attrs
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.catalog import SagaCatalog

from .http_load import build_request, fetch
from .stores import MEMORY, BenchError, FreshStore

__all__ = ["BENCH_SAGA_MODULE", "ServerProcess", "main", "server_process"]

HOST = "127.0.0.1"
BENCH_SAGA_MODULE = "saga_orchestrator.bench.workloads"
READY_TIMEOUT = 60.0
"""Seconds the server may take to answer ``GET /health/ready`` with 200."""
STOP_TIMEOUT = 20.0
"""Seconds the server may take to stop after SIGTERM before it is killed."""
LOG_TAIL = 2000
"""Characters of the server's log shown when it fails."""


@attrs.frozen(kw_only=True)
class ServerProcess:
    """A running server: where it listens and the API key it wants."""

    process: trio.Process
    host: str
    port: int
    api_key: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _saga_modules(settings: Settings) -> str:
    names = [m.strip() for m in (settings.saga_modules or "").split(",") if m.strip()]
    if BENCH_SAGA_MODULE not in names:
        names.append(BENCH_SAGA_MODULE)
    return ",".join(names)


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return text[-LOG_TAIL:].strip() or "(empty log)"


async def _wait_ready(server: ServerProcess) -> None:
    request = build_request("GET", "/health/ready", server.host, server.port)
    with trio.move_on_after(READY_TIMEOUT):
        while server.process.returncode is None:
            try:
                if await fetch(server.host, server.port, request) == 200:
                    return
            except OSError:
                pass
            await trio.sleep(0.05)
    if server.process.returncode is not None:
        raise BenchError(
            f"the server exited with code {server.process.returncode} at start-up; the end of "
            f"its log:\n{_log_tail(server.log_path)}"
        )
    raise BenchError(
        f"the server was not ready within {READY_TIMEOUT:g} s; the end of its log:\n"
        f"{_log_tail(server.log_path)}"
    )


async def _stop(server: ServerProcess, note: Callable[[str], None], *, reported: bool) -> None:
    """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; a bad exit is noted unless ``reported``."""
    process = server.process
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
        if process.returncode is None:
            note(f"the server (pid {process.pid}) did not stop within {STOP_TIMEOUT:g} s: killed")
            process.kill()
            await process.wait()
            return
    if process.returncode != 0 and not reported:
        note(
            f"the server exited with code {process.returncode}; the end of its log:\n"
            f"{_log_tail(server.log_path)}"
        )


@asynccontextmanager
async def server_process(
    store: FreshStore,
    settings: Settings,
    *,
    note: Callable[[str], None] = print,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[ServerProcess]:
    """The service running over ``store`` until the ``async with`` ends, ready (``GET
    /health/ready`` answered 200) when the body starts; ``env``: settings of its own."""
    if store.kind == MEMORY:
        command = [sys.executable, "-m", "saga_orchestrator.bench.http_server"]
        database_url = ""
    else:
        command = [sys.executable, "-m", "saga_orchestrator", "serve"]
        database_url = store.url
    api_key = secrets.token_urlsafe(24)
    port = _free_port()
    env = {**os.environ, **(env or {})}
    env.update(
        DATABASE_URL=database_url,
        HOST=HOST,
        PORT=str(port),
        API_KEY=api_key,
        SAGA_MODULES=_saga_modules(settings),
    )
    with tempfile.TemporaryDirectory(prefix="saga-bench-http-") as folder:
        log_path = Path(folder) / "server.log"
        with log_path.open("wb") as log_file:
            process = await trio.lowlevel.open_process(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            server = ServerProcess(
                process=process, host=HOST, port=port, api_key=api_key, log_path=log_path
            )
            reported = False
            try:
                try:
                    await _wait_ready(server)
                except BenchError:
                    reported = True
                    raise
                yield server
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(server, note, reported=reported)


async def _serve_on_memory(settings: Settings, catalog: SagaCatalog) -> None:
    from saga_orchestrator.service import run_service
    from saga_orchestrator.store.memory import MemoryBackend

    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    shutdown.set()

            nursery.start_soon(watch)
            await run_service(settings, shutdown=shutdown, catalog=catalog, backend=MemoryBackend())
            nursery.cancel_scope.cancel()


def main() -> int:
    """``python -m saga_orchestrator.bench.http_server``: the service over an in-memory store,
    until SIGTERM or SIGINT. Exit codes as ``serve``'s: 0 stopped, 2 bad configuration."""
    from saga_orchestrator.config import load_settings
    from saga_orchestrator.errors import ConfigError
    from saga_orchestrator.logging_setup import configure_logging, secret_values
    from saga_orchestrator.service import build_catalog

    try:
        settings = load_settings()
        catalog = build_catalog(settings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    configure_logging(
        settings.log_level, json_lines=settings.is_production, secrets=secret_values(settings)
    )
    trio.run(partial(_serve_on_memory, settings, catalog))
    return 0


if __name__ == "__main__":
    sys.exit(main())
