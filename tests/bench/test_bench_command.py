"""``saga-orchestrator bench``: tiny workloads through the real command, figures sane.

Timings are not asserted (speed is measured by the command, not by tests); only that the
figures exist, are consistent and that the stores are cleaned up.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import trio

from saga_orchestrator.bench.harness import Progress, percentile
from saga_orchestrator.bench.workloads import ALL_WORKLOADS, DEFAULT_WORKLOADS
from saga_orchestrator.cli import main

REQUIRED = {
    "workload": str,
    "store": str,
    "n": int,
    "concurrency": int,
    "sagas_per_s": float,
    "p50_ms": float,
    "p99_ms": float,
    "cpu_ms_per_saga": float,
    "transactions_per_saga": float,
}
TINY = ["-n", "20", "-c", "4", "-q"]


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["bench", *args, *TINY, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _check(line: dict[str, Any], workload: str, store: str, concurrency: int) -> None:
    for key, kind in REQUIRED.items():
        assert isinstance(line[key], kind), (key, line)
    assert (line["workload"], line["store"]) == (workload, store)
    assert (line["n"], line["concurrency"]) == (20, concurrency)
    assert line["sagas_per_s"] > 0
    assert 0 < line["p50_ms"] <= line["p99_ms"] <= line["max_ms"]
    assert line["cpu_ms_per_saga"] > 0
    assert line["transactions_per_saga"] > 0
    assert line["errors"] == 0


def test_every_workload_on_memory(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _run_json(capsys, "--database-url", "memory")
    assert [line["workload"] for line in lines] == list(DEFAULT_WORKLOADS)
    for line in lines:
        _check(line, line["workload"], "memory", 1 if line["workload"] == "latency" else 4)
    saga_4, saga_4_fail, latency = lines
    # One append per durable point: the failing saga records more transitions.
    assert saga_4_fail["appends_per_saga"] > saga_4["appends_per_saga"]
    # One saga at a time: nothing to group, one transaction per append.
    assert latency["transactions_per_saga"] == latency["appends_per_saga"]


def test_fanout_4_runs_its_branches_together(capsys: pytest.CaptureFixture[str]) -> None:
    saga_4, fanout = _run_json(capsys, "saga-4", "fanout-4", "--database-url", "memory")
    _check(fanout, "fanout-4", "memory", 4)
    # the four steps start in the creation and complete side by side: fewer appends than
    # four steps one after another
    assert 2 <= fanout["appends_per_saga"] < saga_4["appends_per_saga"]


def test_sqlite_default_store_is_fresh_and_removed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (line,) = _run_json(capsys, "saga-4")
    _check(line, "saga-4", "sqlite", 4)
    data_dir = tmp_path / "data"
    assert list(data_dir.iterdir()) == []  # the temporary store is gone; nothing else made


def test_keep_leaves_the_store_and_says_where(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/stores/bench.db"
    assert main(["bench", "latency", "--database-url", url, "--keep", *TINY]) == 0
    out, err = capsys.readouterr()
    (kept,) = list((tmp_path / "stores").glob("saga-bench-*/bench.db"))
    assert f"kept the SQLite store {kept}" in err
    assert out.startswith("latency") and "sagas/s" in out and len(out.splitlines()) == 1


@pytest.mark.integration
def test_postgresql_database_is_made_and_dropped(
    capsys: pytest.CaptureFixture[str], pg_server_url: str
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
    (line,) = _run_json(capsys, "saga-4-fail", "--database-url", pg_server_url)
    _check(line, "saga-4-fail", "postgresql", 4)
    assert asyncio.run(bench_databases()) <= before


def test_progress_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "saga-4", "-n", "300", "-c", "1", "--database-url", "memory"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    log, *progress = err.splitlines()
    assert log.startswith("bench log: ")
    # The progress line comes every second; a quick machine may finish before the first.
    assert all("/300" in line for line in progress)


def test_the_log_goes_to_a_file_not_the_terminal(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["bench", "saga-4-fail", "-n", "5", "-c", "1", "-q", "--database-url", "memory"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1
    (line,) = err.splitlines()  # its path, and not a line per failed step
    path = Path(line.removeprefix("bench log: "))
    assert tmp_path == path.parent
    failures = [row for row in path.read_text().splitlines() if "fails on purpose" in row]
    assert len(failures) >= 5  # step 4 of each saga (and of the warm-up's) logged there


async def test_progress_prints_done_of_total_every_interval(autojump_clock: Any) -> None:
    stream = io.StringIO()
    progress = Progress(stream, interval=1.0)
    progress.done = 7
    with trio.move_on_after(2.5):
        await progress.report("saga-4", 20)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert all(line.startswith("saga-4: 7/20 (") for line in lines)


def test_unknown_workload_exits_2_listing_the_workloads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "saga-4", "nope", "--database-url", "memory"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "nope" in err
    for name in ALL_WORKLOADS:
        assert name in err


def test_bad_database_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--database-url", "mysql://localhost/x"]) == 2
    assert "not supported" in capsys.readouterr().err


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) == 0.0
