"""``saga-orchestrator sagas retry|resolve|skip-compensation|resume`` against the real server
process: a dry run says what would happen, ``--wait`` follows the repaired saga to its end, a
missing ``--reason`` is a usage error, and an action that does not apply exits 4."""

from __future__ import annotations

import pytest

from saga_orchestrator.client import EXIT_CONFLICT, EXIT_OK, EXIT_USAGE

from .conftest import RunningServer, parked_in_doubt
from .test_client import Cli, cli  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


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
