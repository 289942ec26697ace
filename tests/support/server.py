"""Run the real server as a subprocess (``python -m saga_orchestrator.main``) for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

REPO_ROOT = Path(__file__).parents[2]
API_KEY = "e2e-key-0123456789"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "src")]),
        HOST="127.0.0.1",
        DATA_DIR=str(tmp_path / "data"),
        ENVIRONMENT="test",
        SAGA_MODULES="tests.support.sagas",
        API_KEY=API_KEY,
        SHUTDOWN_GRACE_SECONDS="2",
    )
    env.update(extra)
    return env


@asynccontextmanager
async def server_process(
    tmp_path: Path, *, log_name: str = "server.log", **env: str
) -> AsyncIterator[trio.Process]:
    """``python -m saga_orchestrator.main`` in ``tmp_path`` (no .env there); killed at the end."""
    log_path = tmp_path / log_name
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "saga_orchestrator.main"],
            cwd=tmp_path,
            env=server_env(tmp_path, **env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(5, shield=True):
                    await process.wait()


def server_log(tmp_path: Path, log_name: str = "server.log") -> str:
    return (tmp_path / log_name).read_text(encoding="utf-8", errors="replace")


async def wait_ready(client: httpx.AsyncClient, within: float = 30.0) -> None:
    """Poll ``/health/ready`` until it answers 200."""
    with trio.fail_after(within):
        while True:
            try:
                if (await client.get("/health/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.1)


async def wait_terminal(
    client: httpx.AsyncClient, ids: list[str], within: float = 60.0
) -> dict[str, dict[str, Any]]:
    """Poll ``/sagas/{id}`` until every saga in ``ids`` has ended or parked; their bodies."""
    final: dict[str, dict[str, Any]] = {}
    with trio.fail_after(within):
        while len(final) < len(ids):
            for saga_id in ids:
                if saga_id in final:
                    continue
                body = (await client.get(f"/sagas/{saga_id}")).json()
                if body["status"] in (
                    "completed",
                    "compensated",
                    "cancelled",
                    "timed_out",
                    "compensation_failed",
                    "failed",
                ):
                    final[saga_id] = body
            await trio.sleep(0.1)
    return final
