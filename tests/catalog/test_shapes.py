"""The built-in sagas' shapes on the test kit, in virtual time with every step faked: which
steps are undone, in which order, whatever step fails or wherever the engine crashes."""

from __future__ import annotations

import pytest

from saga_orchestrator.coordinator.catalog.airtable_integration import (
    AIRTABLE_INTEGRATION,
    SYNC_COMPLETED,
)
from saga_orchestrator.coordinator.catalog.user_onboarding import USER_ONBOARDING
from saga_orchestrator.coordinator.definition import NonRetryableError
from saga_orchestrator.testing import SagaTestKit, fail, hang, succeed

USER = {"user_id": "u-42", "email": "ada@example.com", "name": "Ada"}
JOB = {"user_id": "u-7", "workspace_id": "ws-7", "base_id": "appBASE"}
ONBOARDING = [step.name for step in USER_ONBOARDING.steps]
ALL_SUCCEED = {name: succeed({"id": name}) for name in ONBOARDING}
ALL_UNDONE = {step.name: succeed() for step in USER_ONBOARDING.steps if step.compensation}


@pytest.mark.parametrize("failing", ONBOARDING)
async def test_onboarding_undoes_the_steps_before_a_failure_in_reverse(autojump_clock, failing):
    actions = {**ALL_SUCCEED, failing: fail(NonRetryableError("refused"))}
    async with SagaTestKit(USER_ONBOARDING, actions=actions, compensations=ALL_UNDONE) as kit:
        saga_id = await kit.start(USER)
        record = await kit.wait(saga_id)
    before = ONBOARDING[: ONBOARDING.index(failing)]
    assert ("compensated", before[::-1]) == (record.status, kit.compensated(saga_id))


@pytest.mark.parametrize("hanging", ONBOARDING)
async def test_onboarding_cancelled_mid_step_leaves_nothing_in_doubt(autojump_clock, hanging):
    # every built-in compensation is safe when the outcome is unknown: undone by key
    actions = {**ALL_SUCCEED, hanging: hang()}
    async with SagaTestKit(USER_ONBOARDING, actions=actions, compensations=ALL_UNDONE) as kit:
        saga_id = await kit.start(USER)
        await kit.wait_for(saga_id, "StepStarted", step=hanging)
        await kit.cancel(saga_id)
        record = await kit.wait(saga_id)
    before = ONBOARDING[: ONBOARDING.index(hanging) + 1]
    assert ("cancelled", before[::-1]) == (record.status, kit.compensated(saga_id))
    [undo] = [c for c in kit.calls.of(saga_id, "compensation") if c.step == hanging]
    assert (None, f"{saga_id}:{hanging}") == (undo.result, undo.idempotency_key)


@pytest.mark.parametrize("transition", ["StepStarted", "StepCompleted"])
@pytest.mark.parametrize("step", ONBOARDING)
async def test_onboarding_survives_a_crash_at_any_step(autojump_clock, transition, step):
    async with SagaTestKit(USER_ONBOARDING, actions=ALL_SUCCEED) as kit:
        kit.crash_after(transition, step=step)
        saga_id = await kit.start(USER)
        record = await kit.wait(saga_id)
    assert ("completed", 1) == (record.status, kit.restarts)
    runs = kit.calls.steps(saga_id)
    done = ONBOARDING.index(step) + (transition == "StepCompleted")
    # steps completed before the crash never run again; the one in flight may (same key)
    assert ONBOARDING[:done] == [s for s in runs[:done] if runs.count(s) == 1]
    assert ONBOARDING == sorted(set(runs), key=ONBOARDING.index)
    assert len(runs) - len(ONBOARDING) <= 1


async def test_the_airtable_sync_waits_for_its_reply_event(autojump_clock):
    actions = {step.name: succeed({"id": step.name}) for step in AIRTABLE_INTEGRATION.steps}
    async with SagaTestKit(AIRTABLE_INTEGRATION, actions=actions) as kit:
        saga_id = await kit.start(JOB)
        await kit.wait_for(saga_id, "StepAwaitingReply", step="initial_sync")
        assert "running" == (await kit.wait(saga_id, statuses={"running"})).status
        await kit.deliver(saga_id, SYNC_COMPLETED, {"records": 3})
        record = await kit.wait(saga_id)
    assert "completed" == record.status
    assert {"records": 3} == record.result["initial_sync"]["reply"]
