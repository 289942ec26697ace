"""A real server process shared by the tests of one module, for the synchronous command-line
client (it runs in the test's thread; the server is another process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from saga_orchestrator.client import SyncSagaClient
from tests.support.server import API_KEY, free_port, server_env, server_log

SAGA_MODULES = "tests.support.sagas,tests.ops.sagas"
READ_ONLY_KEY = "auditor-key-0123456789abcdef"
"""A read-only key of the running server (``API_KEYS``), beside ``API_KEY``."""


@attrs.frozen
class RunningServer:
    url: str
    api_key: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, within: float = 20.0
) -> None:
    """Poll ``url``/health/ready until 200; fail with the log if the process ends first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"the server was not ready within {within} s:\n{log_path.read_text()}")


async def wait_live(port: int, process: trio.Process, tmp_path: Path) -> None:
    """Poll ``/health/live`` of a ``server_process`` until 200 (fail with its log if it ends)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
        with trio.fail_after(20):
            while True:
                assert process.returncode is None, server_log(tmp_path)
                try:
                    if (await client.get("/health/live")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process (group, when it leads one), then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    group = os.getpgid(process.pid) == process.pid
    (os.killpg if group else os.kill)(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        (os.killpg if group else os.kill)(process.pid, signal.SIGKILL)
        process.wait(5)


@pytest.fixture(scope="module")
def running_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """``python -m saga_orchestrator.main`` with the test saga types, ``API_KEY`` and a
    read-only key (:data:`READ_ONLY_KEY`)."""
    tmp_path = tmp_path_factory.mktemp("server")
    port = free_port()
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "saga_orchestrator.main"],
            cwd=tmp_path,
            env=server_env(
                tmp_path,
                PORT=str(port),
                SAGA_MODULES=SAGA_MODULES,
                API_KEYS=f"auditor:{READ_ONLY_KEY}:read",
            ),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process, log_path)
            yield RunningServer(url=url, api_key=API_KEY, log_path=log_path)
        finally:
            stop(process)


def parked_in_doubt(server: RunningServer) -> str:
    """A ``test_in_doubt`` saga cancelled during its charge: parked, the charge in doubt."""
    with SyncSagaClient(server.url, api_key=server.api_key, timeout=5) as sagas:
        saga_id = sagas.start("test_in_doubt", {"seconds": 60}).saga_id
        deadline = time.monotonic() + 10
        while sagas.get(saga_id).current_step != "charge":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sagas.cancel(saga_id)
        parked = sagas.wait(saga_id, timeout=10)
    assert "compensation_failed" == parked.status
    return saga_id
