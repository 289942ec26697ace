"""``saga-orchestrator sagas retry|resolve|skip-compensation|resume`` against the real server
process: a dry run says what would happen, ``--wait`` follows the repaired saga to its end, a
missing ``--reason`` is a usage error, and an action that does not apply exits 4."""

from __future__ import annotations

import time

import httpx
import pytest

from saga_orchestrator.client import (
    EXIT_CONFLICT,
    EXIT_OK,
    EXIT_USAGE,
    ApiClient,
    wait_for_end,
)

from .conftest import RunningServer
from .test_client import Cli, cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


def parked_in_doubt(server: RunningServer) -> str:
    """A ``test_in_doubt`` saga cancelled during its charge: parked, the charge in doubt."""
    headers = {"X-API-Key": server.api_key}
    with httpx.Client(base_url=server.url, headers=headers, timeout=5) as client:
        body = {"saga_type": "test_in_doubt", "data": {"seconds": 60}}
        saga_id = client.post("/sagas/start", json=body).json()["saga_id"]
        deadline = time.monotonic() + 10
        while client.get(f"/sagas/{saga_id}").json()["current_step"] != "charge":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert 202 == client.post(f"/sagas/{saga_id}/cancel").status_code
    with ApiClient(server.url, api_key=server.api_key, timeout=5) as api:
        parked = wait_for_end(api, {"saga_id": saga_id}, interval=0.05, timeout=10)
    assert "compensation_failed" == parked["status"]
    return saga_id


def test_resolve_a_step_in_doubt_from_the_command_line(
    cli: Cli,  # noqa: F811
    running_server: RunningServer,
) -> None:
    saga_id = parked_in_doubt(running_server)
    verb = ["sagas", "resolve", saga_id, "--step", "charge", "--outcome", "not_applied"]
    assert EXIT_USAGE == cli(*verb).code  # no --reason
    dry = cli(*verb, "--reason", "no charge at the bank", "--dry-run")
    assert EXIT_OK == dry.code, dry
    assert "would be      cancelled" in dry.out  # nothing else is left to undo
    assert "would record  StepResolved, SagaCompensated" in dry.out
    assert EXIT_CONFLICT == cli("sagas", "skip-compensation", saga_id, "--step", "prepare",
                                "--reason", "x").code  # fmt: skip
    done = cli(*verb, "--reason", "no charge at the bank", "--wait")
    assert EXIT_OK == done.code, done
    assert "status           cancelled" in done.out
    events = cli("sagas", "events", saga_id)
    assert "StepResolved" in events.out
    assert EXIT_CONFLICT == cli("sagas", "retry", saga_id, "--reason", "again").code


def test_resume_from_the_command_line_with_a_patched_input(
    cli: Cli,  # noqa: F811
    running_server: RunningServer,
) -> None:
    saga_id = parked_in_doubt(running_server)
    verb = ["sagas", "resume", saga_id, "--from-step", "prepare", "--reason", "charge now"]
    refused = cli(*verb, "--input", '{"seconds": "soon"}')
    assert EXIT_USAGE == refused.code, refused
    assert "input.seconds" in refused.err
    done = cli(*verb, "--input", '{"seconds": 0}', "--wait")
    assert EXIT_OK == done.code, done
    assert "status           completed" in done.out
