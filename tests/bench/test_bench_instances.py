"""``saga-orchestrator bench saga-4 --instances N`` and ``bench failover``: tiny runs through the
real command and real server processes on one PostgreSQL database; the figures exist and add up
(their values are the lead's to measure, not a test's)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from saga_orchestrator.cli import main

pytestmark = pytest.mark.integration


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert 0 == main(["bench", *args, "--json", "-q"])
    (line,) = capsys.readouterr().out.splitlines()
    return json.loads(line)


def test_saga_4_through_two_server_processes_reports_the_aggregate(
    capsys: pytest.CaptureFixture[str], pg_server_url: str
) -> None:
    line = _run(
        capsys, "saga-4", "--instances", "2", "-n", "12", "-c", "4", "--warmup", "2",
        "--database-url", pg_server_url,
    )  # fmt: skip
    assert ("saga-4", "postgresql", 2, 12) == (
        line["workload"], line["store"], line["instances"], line["n"]
    )  # fmt: skip
    assert [6, 6] == line["starts_by_instance"]  # each server in turn
    assert line["sagas_per_s"] > 0 and 0 < line["start_p50_ms"] <= line["start_p99_ms"]
    assert 0 == line["errors"]


def test_failover_times_the_claim_and_resumption_of_a_killed_owners_sagas(
    capsys: pytest.CaptureFixture[str], pg_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTANCE_HEARTBEAT_SECONDS", "0.5")  # a quick run
    monkeypatch.setenv("INSTANCE_EXPIRY_SECONDS", "2")
    line = _run(
        capsys, "failover", "--instances", "2", "-n", "10", "-c", "4",
        "--database-url", pg_server_url,
    )  # fmt: skip
    assert ("failover", 2, 10, [10]) == (
        line["workload"], line["instances"], line["n"], line["claims_by_survivor"]
    )  # fmt: skip
    assert 0 < line["claimed_s"] <= line["resumed_s"]
    assert (0.5, 2.0) == (line["heartbeat_s"], line["expiry_s"])


def test_several_instances_need_postgresql(capsys: pytest.CaptureFixture[str]) -> None:
    assert 1 == main(["bench", "saga-4", "--instances", "2", "-n", "4", "-q"])
    assert "needs PostgreSQL" in capsys.readouterr().err
