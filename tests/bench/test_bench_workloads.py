"""The ``wait``, ``recovery`` and ``http`` workloads at tiny N through the real command: the
figures exist and agree with each other, and stores and server processes are cleaned up.

Timings are not asserted (speed is measured by the command, not by tests).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from saga_orchestrator.bench import http_workload
from saga_orchestrator.bench.http_server import ServerProcess
from saga_orchestrator.cli import main

N = 20
TINY = ["-n", str(N), "-c", "4", "-q", "--json"]
COMMON = {
    "workload": str,
    "store": str,
    "n": int,
    "concurrency": int,
    "sagas_per_s": float,
    "p50_ms": float,
    "p99_ms": float,
    "max_ms": float,
    "errors": int,
}


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["bench", *args, *TINY]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _check_common(line: dict[str, Any], workload: str, store: str) -> None:
    for key, kind in COMMON.items():
        assert isinstance(line[key], kind), (key, line)
    assert (workload, store, N, 0) == (line["workload"], line["store"], line["n"], line["errors"])
    assert line["sagas_per_s"] > 0
    assert 0 < line["p50_ms"] <= line["p99_ms"] <= line["max_ms"]


def _check_wait(line: dict[str, Any], store: str) -> None:
    _check_common(line, "wait", store)
    assert 4 == line["concurrency"]
    for key in ("rss_kb_per_saga", "rss_before_mb", "rss_parked_mb", "park_s", "release_s"):
        assert isinstance(line[key], float), (key, line)
    assert 0 < line["rss_before_mb"]
    growth_kb = (line["rss_parked_mb"] - line["rss_before_mb"]) * 1024
    assert growth_kb / N == pytest.approx(line["rss_kb_per_saga"], abs=0.01)
    # (the JSON rounds to 4 decimals)
    assert N / line["sagas_per_s"] == pytest.approx(line["release_s"], abs=2e-4)
    assert N / line["parked_per_s"] == pytest.approx(line["park_s"], abs=2e-4)
    assert line["max_active_sagas"] >= N
    assert line["appends_per_saga"] >= 1  # the reply, then the end: both durable
    assert line["cpu_ms_per_saga"] > 0


def _check_recovery(line: dict[str, Any], store: str) -> None:
    _check_common(line, "recovery", store)
    assert N == line["concurrency"] == line["recovered"]  # every saga resumed at once
    assert 0 <= line["open_s"] <= line["ready_s"]
    assert 0 < line["resumed_s"] <= line["completed_s"]
    assert line["completed_s"] * 1000 == pytest.approx(line["max_ms"], abs=0.2)
    assert N / line["sagas_per_s"] == pytest.approx(line["completed_s"], abs=2e-4)
    assert line["populate_s"] > 0
    assert line["transactions_per_saga"] > 0


def _check_http(line: dict[str, Any], store: str) -> None:
    _check_common(line, "http", store)
    assert {"200": N} == line["get_statuses"]
    assert {"202": N} == line["post_statuses"]
    assert (0, 0) == (line["get_errors"], line["post_errors"])
    assert line["requests_per_s"] == line["sagas_per_s"]
    ratio = line["requests_per_s"] / line["get_requests_per_s"]
    assert ratio == pytest.approx(line["post_to_get"], abs=2e-4)
    assert 0 < line["get_p50_ms"] <= line["get_p99_ms"]
    assert "python" == line["load_generator"]


def test_wait_and_recovery_on_memory(capsys: pytest.CaptureFixture[str]) -> None:
    wait, recovery = _run(capsys, "wait", "recovery", "--database-url", "memory")
    _check_wait(wait, "memory")
    _check_recovery(recovery, "memory")


def test_wait_and_recovery_on_sqlite_remove_their_stores(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    wait, recovery = _run(capsys, "wait", "recovery")
    _check_wait(wait, "sqlite")
    _check_recovery(recovery, "sqlite")
    assert [] == list((tmp_path / "data").iterdir())


def test_wait_says_it_raises_the_admission_limit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_ACTIVE_SAGAS", "8")
    assert 0 == main(["bench", "wait", "--database-url", "memory", *TINY])
    out, err = capsys.readouterr()
    assert "MAX_ACTIVE_SAGAS raised from 8 to 24" in err
    assert json.loads(out)["max_active_sagas"] == 24


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> list[ServerProcess]:
    """The server processes the http workload starts, recorded to look at afterwards."""
    started: list[ServerProcess] = []
    real = http_workload.server_process

    @asynccontextmanager
    async def recording(*args: Any, **kwargs: Any) -> AsyncIterator[ServerProcess]:
        async with real(*args, **kwargs) as server:
            started.append(server)
            yield server

    monkeypatch.setattr(http_workload, "server_process", recording)
    return started


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_http_runs_the_server_and_stops_it(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    servers: list[ServerProcess],
    store: str,
) -> None:
    args = ["--database-url", "memory"] if store == "memory" else []
    (line,) = _run(capsys, "http", *args)
    _check_http(line, store)
    (server,) = servers
    assert 0 == server.process.returncode  # stopped in order by SIGTERM
    assert _gone(server.pid)
    assert not server.log_path.exists()
    if store == "sqlite":
        assert [] == list((tmp_path / "data").iterdir())


@pytest.mark.integration
def test_new_workloads_on_postgresql_drop_their_databases(
    capsys: pytest.CaptureFixture[str], pg_server_url: str, servers: list[ServerProcess]
) -> None:
    import asyncio

    import asyncpg

    async def bench_databases() -> set[str]:
        conn = await asyncpg.connect(pg_server_url, timeout=10)
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'bench_%'")
        finally:
            await conn.close()
        return {row[0] for row in rows}

    before = asyncio.run(bench_databases())
    wait, recovery, http = _run(capsys, "wait", "recovery", "http", "--database-url", pg_server_url)
    _check_wait(wait, "postgresql")
    _check_recovery(recovery, "postgresql")
    _check_http(http, "postgresql")
    assert 0 == servers[0].process.returncode
    assert asyncio.run(bench_databases()) <= before


def test_a_server_that_cannot_start_is_reported_with_its_log(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAGA_MODULES", "no_such_module_here")
    assert 1 == main(["bench", "http", *TINY])
    out, err = capsys.readouterr()
    assert "" == out
    assert "the server exited with code 2 at start-up" in err
    assert "no_such_module_here" in err
    assert [] == list((tmp_path / "data").iterdir())
