"""The real path's workloads at tiny N through the real command: ``http-steps`` (the engine
here, a stub service in its own process), ``onboarding`` and ``events`` (the server and
``devservices`` in processes of their own, ``events`` over Redis Streams). The figures exist
and agree, every saga ends as expected, and the processes, stores and streams are cleaned up.

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
import redis

from saga_orchestrator.bench import api_workload, http_server, http_steps
from saga_orchestrator.bench.http_server import ServerProcess
from saga_orchestrator.cli import main

N = 12
TINY = ["-n", str(N), "-c", "3", "--warmup", "2", "-q", "--json"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["bench", *args, *TINY]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[ServerProcess]:
    """The processes the workloads start, recorded to look at afterwards."""
    started: list[ServerProcess] = []
    real = api_workload.child_process

    @asynccontextmanager
    async def recording(*args: Any, **kwargs: Any) -> AsyncIterator[ServerProcess]:
        async with real(*args, **kwargs) as process:
            started.append(process)
            yield process

    for module in (api_workload, http_steps, http_server):
        monkeypatch.setattr(module, "child_process", recording)
    return started


def _all_stopped(children: list[ServerProcess]) -> bool:
    for child in children:
        assert 0 == child.process.returncode
        try:
            os.kill(child.pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def _check(line: dict[str, Any], workload: str, store: str) -> None:
    assert (workload, store, N, 3, 0) == (
        line["workload"],
        line["store"],
        line["n"],
        line["concurrency"],
        line["errors"],
    )
    assert line["sagas_per_s"] > 0
    assert 0 < line["p50_ms"] <= line["p99_ms"] <= line["max_ms"]


def test_http_steps_calls_a_stub_service_in_its_own_process(
    capsys: pytest.CaptureFixture[str], children: list[ServerProcess]
) -> None:
    (line,) = _run(capsys, "http-steps", "--database-url", "memory")
    _check(line, "http-steps", "memory")
    assert 5 == line["appends_per_saga"]  # as saga-4: the steps' calls changed nothing there
    assert line["cpu_ms_per_saga"] > 0
    assert line["service_cpu_ms_per_saga"] is not None
    assert 1 == len(children)
    assert _all_stopped(children)


def _check_api(line: dict[str, Any], workload: str, store: str) -> None:
    _check(line, workload, store)
    assert {"completed": N} == line["statuses"]
    assert line["refused"] >= 0
    assert line["server_cpu_ms_per_saga"] > 0
    assert line["services_cpu_ms_per_saga"] > 0
    assert N / line["sagas_per_s"] == pytest.approx(line["elapsed_s"], abs=2e-4)


def test_onboarding_runs_through_the_server_against_devservices(
    capsys: pytest.CaptureFixture[str],
    children: list[ServerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the server closes a connection idle this long: a starter's, while it waits for its
    # saga's end, is opened again for the next start
    monkeypatch.setenv("HTTP_KEEP_ALIVE_SECONDS", "0.01")
    (line,) = _run(capsys, "onboarding")
    _check_api(line, "onboarding", "sqlite")
    assert 2 == len(children)  # devservices, then the server
    assert _all_stopped(children)
    assert [] == list((tmp_path / "data").iterdir())


def test_onboarding_needs_a_store_it_can_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 == main(["bench", "onboarding", "--database-url", "memory", *TINY])
    assert "use PostgreSQL or SQLite" in capsys.readouterr().err


@pytest.mark.integration
def test_events_start_sagas_through_the_outbox_redis_and_the_router(
    capsys: pytest.CaptureFixture[str],
    children: list[ServerProcess],
    pg_server_url: str,
    redis_url: str,
) -> None:
    client = redis.Redis.from_url(redis_url)
    before = set(client.keys("bench-*"))
    lines = _run(
        capsys, "onboarding", "events", "--database-url", pg_server_url, "--redis-url", redis_url
    )
    _check_api(lines[0], "onboarding", "postgresql")
    _check_api(lines[1], "events", "postgresql")
    assert 4 == len(children)
    assert _all_stopped(children)
    assert set(client.keys("bench-*")) <= before  # the run's streams are deleted
    client.close()
