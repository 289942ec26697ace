"""Parallel branches through the test kit: a failing branch, a cancel, a crash mid-group."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from saga_orchestrator.coordinator import NonRetryableError, Parallel, SagaDefinition, Step
from saga_orchestrator.coordinator.definition import StepContext
from saga_orchestrator.testing import SagaTestKit, hang, succeed


@attrs.frozen
class Input:
    project: str


async def _done(ctx: StepContext) -> dict[str, Any]:
    return {"step": ctx.step}


async def _undo(ctx: StepContext) -> None:
    return None


def step(name: str, **options: Any) -> Step:
    return Step(name=name, action=_done, compensation=_undo, **options)


PROVISION = SagaDefinition(
    name="provision",
    version=1,
    input_type=Input,
    steps=[
        step("reserve"),
        Parallel(
            "setup",
            branches=[
                [step("create_db"), step("seed_db")],
                [step("create_bucket")],
                [step("create_dns", compensation_safe_if_unknown=True)],
            ],
        ),
        step("notify"),
    ],
)
INPUT = {"project": "p-1"}


async def fail_later(ctx: StepContext) -> None:
    await trio.sleep(5)
    raise NonRetryableError("quota exceeded")


async def test_the_branches_run_together_and_join_before_the_next_step(autojump_clock):
    async with SagaTestKit(PROVISION) as kit:
        saga_id = await kit.start(INPUT)
        record = await kit.wait(saga_id)
    assert "completed" == record.status
    trace = kit.trace(saga_id)
    # the three branches start in one append, and notify only once they all completed
    assert ["StepStarted create_db", "StepStarted create_bucket", "StepStarted create_dns"] == (
        trace[3:6]
    )
    completed = [line for line in trace if line.startswith("StepCompleted")]
    assert "StepCompleted notify" == completed[-1]
    assert trace.index("StepCompleted seed_db") < trace.index("StepStarted notify")


async def test_a_failing_branch_cuts_the_others_and_compensates_each_branch_in_reverse(
    autojump_clock,
):
    actions = {"create_bucket": fail_later, "create_dns": hang()}
    async with SagaTestKit(PROVISION, actions=actions) as kit:
        saga_id = await kit.start(INPUT)
        record = await kit.wait(saga_id)
    assert "compensated" == record.status
    assert "quota exceeded" in record.error
    by_name = {s.name: s for s in record.steps}
    assert "unknown" == by_name["create_dns"].status  # cut short: in doubt, safe to undo
    assert "interrupted" in by_name["create_dns"].error
    assert ("failed", "not_run") == (
        by_name["create_bucket"].status,
        by_name["create_bucket"].compensation_status,
    )
    undone = kit.compensated(saga_id)
    assert {"seed_db", "create_db", "create_dns", "reserve"} == set(undone)
    assert undone.index("seed_db") < undone.index("create_db")
    assert "reserve" == undone[-1]  # the steps before the group after every branch
    calls = kit.calls.steps(saga_id)
    assert ["reserve", "seed_db"] == [calls[0], calls[4]]  # the branches' first steps between
    assert {"create_db", "create_bucket", "create_dns"} == set(calls[1:4])


async def test_a_cancel_reaches_every_branch_at_once(autojump_clock):
    actions = {"create_db": hang(), "create_bucket": hang(), "create_dns": succeed()}
    async with SagaTestKit(PROVISION, actions=actions) as kit:
        saga_id = await kit.start(INPUT)
        await kit.wait_for(saga_id, "StepCompleted", step="create_dns")
        await kit.cancel(saga_id)
        record = await kit.wait(saga_id)
    assert "compensation_failed" == record.status
    assert "step 'create_db' is unknown" in record.error
    by_name = {s.name: s.status for s in record.steps}
    assert ("unknown", "unknown") == (by_name["create_db"], by_name["create_bucket"])
    # create_db's and create_bucket's outcomes are unknown and their compensations not
    # declared safe: everything else is undone, then the saga parks on them
    assert ["create_dns", "reserve"] == kit.compensated(saga_id)


async def test_a_saga_recovered_mid_group_resumes_each_branch_where_it_was(autojump_clock):
    async with SagaTestKit(PROVISION, actions={"create_bucket": fail_later}) as kit:
        kit.crash_after("StepCompleted", step="create_db")
        saga_id = await kit.start(INPUT)
        record = await kit.wait(saga_id)
    assert 1 == kit.restarts
    assert "compensated" == record.status
    calls = kit.calls.steps(saga_id)
    assert 1 == calls.count("create_db")  # completed before the crash: not run again
    assert 2 == calls.count("create_bucket")  # running at the crash: run again, same key
    keys = {c.idempotency_key for c in kit.calls.of(saga_id) if c.step == "create_bucket"}
    assert {f"{saga_id}:create_bucket"} == keys
    undone = kit.compensated(saga_id)
    assert undone.index("seed_db") < undone.index("create_db") < undone.index("reserve")
