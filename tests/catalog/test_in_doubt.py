"""The built-in sagas when a step is cut mid-call (a cancel, a step timeout) and its outcome is
unknown: against the real stand-in over HTTP, a coordinator in-process. Each compensation is
safe when in doubt (it undoes by the action's key), so the saga ends compensated or cancelled
with nothing left at the stand-in, instead of parking."""

from __future__ import annotations

import attrs
import pytest
import trio

from saga_orchestrator.coordinator.catalog.airtable_integration import AIRTABLE_INTEGRATION
from saga_orchestrator.coordinator.catalog.user_onboarding import USER_ONBOARDING
from saga_orchestrator.devservices import Fault
from saga_orchestrator.store.records import SagaRecord
from saga_orchestrator.testing import Retry

from .conftest import OPTIONS, StandIn, orchestrating

USER = {"user_id": "u-42", "email": "ada@example.com", "name": "Ada"}
JOB = {"user_id": "u-7", "workspace_id": "ws-7", "base_id": "appBASE"}
SHORT = attrs.evolve(OPTIONS, step_timeout=1.0)
"""A step times out after a second (real time)."""


def compensated_cleanly(final: SagaRecord) -> None:
    """Every compensation that ran succeeded at its first attempt."""
    ran = [s for s in final.steps if s.compensation_status != "not_run"]
    assert [("completed", 1, None)] * len(ran) == [
        (s.compensation_status, s.compensation_attempts, s.compensation_error) for s in ran
    ], final.steps


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_cancel_while_the_workspace_is_created_ends_cancelled_with_nothing_left(
    stand_in: StandIn, when: str
):
    # the reported case: a 30 s delay on create_workspace, and a cancel meanwhile; "after":
    # the workspace is made at once and only its answer is held back
    stand_in.state.faults.add(
        Fault(operation="user.create_workspace", status=None, delay=30, when=when)
    )
    async with orchestrating(stand_in, [USER_ONBOARDING]) as kit:
        saga_id = await kit.start(USER)
        await kit.wait_for(saga_id, "StepStarted", step="create_workspace", within=10)
        with trio.fail_after(10):
            while when == "after" and not stand_in.state.workspaces:
                await trio.sleep(0.01)
        await kit.cancel(saga_id)
        final = await kit.wait(saga_id, within=10)
    assert "cancelled" == final.status, final.error
    assert ("unknown", "completed") == (final.steps[1].status, final.steps[1].compensation_status)
    compensated_cleanly(final)
    assert {} == stand_in.state.leftovers()
    made = ["user.create_workspace"] if when == "after" else []
    assert [
        "user.create_profile",
        *made,
        "user.delete_workspace_by_key",
        "user.delete_profile",
    ] == stand_in.state.operations()


STEP_TIMEOUTS = [
    (USER_ONBOARDING, USER, "create_profile", "user.create_profile"),
    (USER_ONBOARDING, USER, "create_workspace", "user.create_workspace"),
    (USER_ONBOARDING, USER, "send_welcome_email", "notification.send"),
    (USER_ONBOARDING, USER, "setup_airtable_integration", "airtable.create_integration"),
    (AIRTABLE_INTEGRATION, JOB, "validate_access", "permission.check"),
    (AIRTABLE_INTEGRATION, JOB, "fetch_schema", "airtable.get_schema"),
    (AIRTABLE_INTEGRATION, JOB, "setup_webhook", "airtable.create_webhook"),
    (AIRTABLE_INTEGRATION, JOB, "initial_sync", "airtable.start_sync"),  # the request hangs
    (AIRTABLE_INTEGRATION, JOB, "initial_sync", "airtable.sync_job"),  # no reply comes
    (AIRTABLE_INTEGRATION, JOB, "notify_success", "notification.send"),
]
"""(saga, input, the step that times out, the operation made to hang)."""


@pytest.mark.parametrize(
    ("saga", "data", "step", "operation"),
    STEP_TIMEOUTS,
    ids=[f"{step}-{operation}" for _, _, step, operation in STEP_TIMEOUTS],
)
async def test_a_step_timeout_is_compensated_with_nothing_left_at_the_services(
    stand_in: StandIn, saga, data: dict[str, str], step: str, operation: str
):
    # the operation is applied, then its answer never comes: the step's effect exists, and
    # the saga cannot know it
    stand_in.state.faults.add(Fault(operation=operation, status=None, hang=True, when="after"))
    async with orchestrating(stand_in, [saga], options=SHORT) as kit:
        saga_id = await kit.start(data)
        final = await kit.wait(saga_id, within=20)
    assert "compensated" == final.status, final.error
    index = [s.name for s in saga.steps].index(step)
    in_doubt = final.steps[index]
    has_undo = saga.steps[index].compensation is not None
    assert ("unknown", "completed" if has_undo else "not_run") == (
        in_doubt.status,
        in_doubt.compensation_status,
    )
    assert all(s.status == "pending" for s in final.steps[index + 1 :])
    compensated_cleanly(final)
    if saga.steps[index].compensation is not None and operation != "airtable.sync_job":
        assert operation in stand_in.state.operations()  # it was made, then undone
    assert {} == stand_in.state.leftovers()
    queued = {
        n["template"] for n in stand_in.state.notifications.values() if n["status"] == "queued"
    }
    assert queued <= {"onboarding_failed", "airtable_integration_failed"}  # no welcome, no "ready"


async def test_a_compensation_that_keeps_failing_parks_and_a_retry_finishes_it(stand_in: StandIn):
    # the worked example of docs/sagas.md: the integration is refused, profiles cannot be
    # deleted; once the user service is back, an operator's retry undoes the rest
    for operation, status in (("airtable.create_integration", 422), ("user.delete_profile", 503)):
        stand_in.state.faults.add(Fault(operation=operation, status=status, times=None))
    async with orchestrating(stand_in, [USER_ONBOARDING]) as kit:
        saga_id = await kit.start(USER)
        parked = await kit.wait(saga_id, within=20)
        assert "compensation_failed" == parked.status
        assert [("failed", OPTIONS.compensation_attempts), ("completed", 1), ("completed", 1)] == [
            (s.compensation_status, s.compensation_attempts) for s in parked.steps[:3]
        ]
        assert "DELETE /profiles/" in (parked.steps[0].compensation_error or "")
        assert ["profiles"] == list(stand_in.state.leftovers())

        stand_in.state.faults.clear()
        await kit.operate(saga_id, Retry(), reason="user service is back")
        final = await kit.wait(saga_id, within=20)
    assert ("compensated", "completed") == (final.status, final.steps[0].compensation_status)
    assert {} == stand_in.state.leftovers()
