"""A SQLite file serves one service process: a second one on the same file stops at once (exit
code 2, the file and the setting to change on stderr); after a SIGKILL of the first a new one
starts; ``saga-orchestrator migrate`` works beside a running service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from ..support.server import (
    API_KEY,
    free_port,
    server_env,
    server_log,
    server_process,
    wait_ready,
)

pytestmark = pytest.mark.e2e

WITHIN = 30.0


async def test_a_second_process_on_the_same_sqlite_file_exits_2_and_a_new_one_starts_after_a_kill(
    tmp_path: Path,
) -> None:
    first_port, second_port, third_port = free_port(), free_port(), free_port()
    database = tmp_path / "data" / "saga_orchestrator.db"
    async with server_process(tmp_path, log_name="first.log", PORT=str(first_port)) as first:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{first_port}", headers={"X-API-Key": API_KEY}
        ) as client:
            await wait_ready(client, WITHIN)
        async with server_process(tmp_path, log_name="second.log", PORT=str(second_port)) as second:
            with trio.fail_after(WITHIN):
                returncode = await second.wait()
        migrate = await trio.run_process(
            [sys.executable, "-m", "saga_orchestrator.cli", "migrate"],
            cwd=tmp_path,
            env=server_env(tmp_path),
            capture_stdout=True,
            stderr=subprocess.STDOUT,
            check=False,
        )
        first.kill()  # SIGKILL: the OS releases the lock
        await first.wait()

    lines = server_log(tmp_path, "second.log").splitlines()
    assert 2 == returncode, lines
    [line] = lines
    assert line.startswith(f"the SQLite database {database} is in use by process {first.pid}")
    assert "SQLite serves one process: run one instance, or use PostgreSQL for several" in line
    assert "DATA_DIR" in line and "DATABASE_URL" in line
    assert 0 == migrate.returncode, migrate.stdout
    assert b"is up to date" in migrate.stdout

    async with (
        server_process(tmp_path, log_name="third.log", PORT=str(third_port)),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{third_port}", headers={"X-API-Key": API_KEY}
        ) as client,
    ):
        await wait_ready(client, WITHIN)
        health = (await client.get("/health")).json()
    assert health["components"]["bus"]["relay_leader"] is True
