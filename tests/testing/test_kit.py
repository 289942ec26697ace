"""The test kit, as a saga author uses it: fakes, retries, timeouts, cancels, crashes, replies,
operator actions, all in virtual time on the memory store."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from saga_orchestrator.coordinator.definition import NonRetryableError, StepContext
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.errors import SagaStateConflict, ValidationError
from saga_orchestrator.testing import (
    FakeStepError,
    Retry,
    SagaTestKit,
    fail,
    hang,
    per_attempt,
    succeed,
    succeed_after,
)

from .open_account import OPEN_ACCOUNT, VERIFIED_ACCOUNT, Accounts

ACCOUNT = {"create_account": succeed({"account_id": "a-1"})}
UNDO = {"create_account": succeed()}
FORWARD = [
    "SagaStarted",
    "StepStarted create_account",
    "StepCompleted create_account",
    "StepStarted charge",
    "StepCompleted charge",
    "SagaCompleted",
]


async def test_the_real_step_code_runs_with_the_resources_given(autojump_clock):
    accounts = Accounts()
    async with SagaTestKit(OPEN_ACCOUNT, resources={"accounts": accounts}) as kit:
        saga_id = await kit.start({"user_id": "u-1", "plan": "pro"})
        record = await kit.wait(saga_id)
    assert "completed" == record.status
    assert FORWARD == kit.trace(saga_id)
    [account_id] = accounts.accounts
    assert {"charged": 12, "account_id": account_id} == record.result["charge"]
    assert ["create_account", "charge"] == kit.calls.steps(saga_id)
    assert {f"{saga_id}:create_account"} == set(accounts.accounts.values())


async def test_a_failing_step_compensates_the_completed_ones_and_not_itself(autojump_clock):
    actions = {**ACCOUNT, "charge": fail(NonRetryableError("card declined"))}
    async with SagaTestKit(OPEN_ACCOUNT, actions=actions, compensations=UNDO) as kit:
        saga_id = await kit.start({"user_id": "u-1"})
        record = await kit.wait(saga_id)
    assert "compensated" == record.status
    assert "card declined" in record.error
    assert ["create_account"] == kit.compensated(saga_id)
    [undo] = kit.calls.of(saga_id, "compensation")
    assert ("create_account", {"account_id": "a-1"}) == (undo.step, undo.result)


async def test_retries_wait_their_backoff_in_virtual_time_under_one_key(autojump_clock):
    actions = {**ACCOUNT, "charge": succeed_after(2, {"charged": 0})}
    async with SagaTestKit(OPEN_ACCOUNT, actions=actions) as kit:
        began = trio.current_time()
        saga_id = await kit.start({"user_id": "u-1"})
        record = await kit.wait(saga_id)
    assert "completed" == record.status
    charges = kit.calls.of(saga_id, "action")[1:]
    assert [1, 2, 3] == [c.attempt for c in charges]
    assert {f"{saga_id}:charge"} == {c.idempotency_key for c in charges}
    assert trio.current_time() - began >= 2.0 * 0.8 + 4.0 * 0.8  # two backoffs, jitter ≤ 20 %
    assert 2 == kit.trace(saga_id).count("StepAttemptFailed charge")


async def test_a_hanging_step_times_out_and_the_saga_compensates(autojump_clock):
    options = EngineOptions(step_timeout=10, retry_attempts=1)
    async with SagaTestKit(OPEN_ACCOUNT, actions={**ACCOUNT, "charge": hang()},
                           compensations=UNDO, options=options) as kit:  # fmt: skip
        saga_id = await kit.start({"user_id": "u-1"})
        record = await kit.wait(saga_id)
    assert "compensated" == record.status
    assert ["create_account"] == kit.compensated(saga_id)
    assert "StepFailed charge" in kit.trace(saga_id)


async def test_a_cancel_mid_step_interrupts_it_and_compensates(autojump_clock):
    async with SagaTestKit(OPEN_ACCOUNT, actions={**ACCOUNT, "charge": hang()},
                           compensations=UNDO) as kit:  # fmt: skip
        saga_id = await kit.start({"user_id": "u-1"})
        await kit.wait_for(saga_id, "StepStarted", step="charge")
        await kit.cancel(saga_id, "the user changed their mind")
        record = await kit.wait(saga_id)
        with pytest.raises(SagaStateConflict):
            await kit.cancel(saga_id)
    assert "cancelled" == record.status
    assert ["create_account"] == kit.compensated(saga_id)
    assert "SagaInterrupted" in kit.trace(saga_id)


async def test_a_crash_at_any_transition_resumes_from_the_history(autojump_clock):
    for transition, step in [
        ("SagaStarted", None),
        ("StepCompleted", "create_account"),
        ("StepStarted", "charge"),
        ("StepCompleted", "charge"),
    ]:
        async with SagaTestKit(OPEN_ACCOUNT, actions=ACCOUNT) as kit:
            kit.crash_after(transition, step=step)
            saga_id = await kit.start({"user_id": "u-1"})
            record = await kit.wait(saga_id)
        assert (1, "completed") == (kit.restarts, record.status), transition
        creates = [c for c in kit.calls.of(saga_id, "action") if c.step == "create_account"]
        assert {f"{saga_id}:create_account"} == {c.idempotency_key for c in creates}
        expected = 1 if step is not None else len(creates)  # completed steps never run again
        assert expected == len(creates), transition
        assert FORWARD[-1] == kit.trace(saga_id)[-1]


async def test_a_crash_while_compensating_finishes_the_compensation(autojump_clock):
    actions = {**ACCOUNT, "charge": fail(NonRetryableError("declined"))}
    async with SagaTestKit(OPEN_ACCOUNT, actions=actions, compensations=UNDO) as kit:
        kit.crash_after("CompensationStarted", step="create_account")
        saga_id = await kit.start({"user_id": "u-1"})
        record = await kit.wait(saga_id)
    assert (1, "compensated") == (kit.restarts, record.status)
    assert ["create_account"] == kit.compensated(saga_id)


async def test_a_reply_event_completes_a_reply_driven_step(autojump_clock):
    async with SagaTestKit(VERIFIED_ACCOUNT, actions=ACCOUNT) as kit:
        saga_id = await kit.start({"user_id": "u-1"})
        await kit.wait_for(saga_id, "StepAwaitingReply", step="verify")
        await kit.deliver(saga_id, "user.verified", {"by": "kyc"})
        record = await kit.wait(saga_id)
    assert "completed" == record.status
    assert {"accepted": {"requested": "u-1"}, "reply": {"by": "kyc"}} == record.result["verify"]


async def test_a_failure_reply_compensates(autojump_clock):
    async with SagaTestKit(VERIFIED_ACCOUNT, actions=ACCOUNT, compensations=UNDO) as kit:
        saga_id = await kit.start({"user_id": "u-1"})
        await kit.wait_for(saga_id, "StepAwaitingReply", step="verify")
        await kit.deliver(saga_id, "user.rejected")
        record = await kit.wait(saga_id)
    assert ("compensated", ["create_account"]) == (record.status, kit.compensated(saga_id))


async def test_a_parked_saga_is_retried_by_an_operator_action(autojump_clock):
    broken = True

    async def undo(ctx: StepContext) -> Any:
        if broken:
            raise FakeStepError("the accounts service is down")

    actions = {**ACCOUNT, "charge": fail(NonRetryableError("declined"))}
    async with SagaTestKit(OPEN_ACCOUNT, actions=actions,
                           compensations={"create_account": undo}) as kit:  # fmt: skip
        saga_id = await kit.start({"user_id": "u-1"})
        parked = await kit.wait(saga_id)
        broken = False
        outcome = await kit.operate(saga_id, Retry(), reason="the service is back")
        record = await kit.wait(saga_id, statuses={"compensated"})
    assert "compensation_failed" == parked.status
    assert not outcome.dry_run
    assert "compensated" == record.status
    assert "OperatorRetried" in kit.trace(saga_id)


async def test_per_attempt_outcomes_and_a_timeout_that_is_not_retried(autojump_clock):
    charge = per_attempt(fail(), fail(RuntimeError("502")), succeed({"charged": 0}))
    async with SagaTestKit(OPEN_ACCOUNT, actions={**ACCOUNT, "charge": charge}) as kit:
        saga_id = await kit.start({"user_id": "u-1"})
        record = await kit.wait(saga_id)
    assert "completed" == record.status
    assert [1, 2, 3] == [c.attempt for c in kit.calls.of(saga_id, "action")[1:]]

    options = EngineOptions(step_timeout=5)
    charge = per_attempt(hang(), succeed({"charged": 0}))
    async with SagaTestKit(OPEN_ACCOUNT, actions={**ACCOUNT, "charge": charge},
                           compensations=UNDO, options=options) as kit:  # fmt: skip
        saga_id = await kit.start({"user_id": "u-1"})
        record = await kit.wait(saga_id)
    # A timed-out attempt's outcome is unknown: the step is not tried again, it is undone.
    assert ("compensated", [1]) == (
        record.status,
        [c.attempt for c in kit.calls.of(saga_id, "action") if c.step == "charge"],
    )


async def test_waiting_too_long_says_where_the_saga_is(autojump_clock):
    async with SagaTestKit(OPEN_ACCOUNT, actions={**ACCOUNT, "charge": hang()},
                           compensations=UNDO) as kit:  # fmt: skip
        saga_id = await kit.start({"user_id": "u-1"})
        with pytest.raises(trio.TooSlowError, match=r"is running.*StepStarted charge"):
            await kit.wait(saga_id, within=1)
        await kit.cancel(saga_id)


async def test_mistakes_in_the_test_are_named(autojump_clock):
    with pytest.raises(ValueError, match="no saga of this kit has a step 'chrage'"):
        SagaTestKit(OPEN_ACCOUNT, actions={"chrage": succeed()})
    with pytest.raises(ValueError, match="step 'charge' of 'open_account' has no compensation"):
        SagaTestKit(OPEN_ACCOUNT, compensations={"charge": succeed()})
    async with SagaTestKit(OPEN_ACCOUNT, VERIFIED_ACCOUNT, actions=ACCOUNT) as kit:
        with pytest.raises(ValueError, match="name the saga_type"):
            await kit.start({"user_id": "u-1"})
        with pytest.raises(ValidationError):
            await kit.start({"user": "u-1"}, saga_type="open_account")
