"""An operator repairs parked sagas: resolve a step in doubt, skip a compensation, resume from a
step with a patched input, retry; each recorded with who and why; dry runs write nothing."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio

from saga_orchestrator.actors import ActorStopped
from saga_orchestrator.coordinator.messages import OperateSaga, OperatorOutcome, RetrySaga
from saga_orchestrator.coordinator.observer import SagaObserver
from saga_orchestrator.coordinator.operator import Resolve, Resume, Retry, SkipCompensation
from saga_orchestrator.coordinator.transitions import Resolution
from saga_orchestrator.errors import SagaStateConflict, ValidationError
from saga_orchestrator.store.memory import MemoryBackend

from .harness import FAST, Harness, Recorder, running, saga, step
from .test_sagas import CrashingBackend


def in_doubt(rec: Recorder) -> list[Any]:
    """s1 completes, s2 outlasts its timeout (outcome unknown, compensation not declared safe):
    the saga compensates s1, then parks on s2."""
    return [step(rec, "s1"), step(rec, "s2", sleep=100, timeout=5)]


async def parked(h: Harness, saga_type: str) -> str:
    saga_id = (await h.start(saga_type)).saga.saga_id
    record = await h.wait_terminal(saga_id)
    assert "compensation_failed" == record.status
    return saga_id


async def operate(h: Harness, saga_id: str, action: Any, **options: Any) -> OperatorOutcome:
    message = OperateSaga(saga_id=saga_id, action=action, by="ops-alice", reason="ticket 42")
    return await h.ref.ask(attrs.evolve(message, **options))


async def history(h: Harness, saga_id: str) -> list[Any]:
    return await h.store.read_stream(f"saga-{saga_id}")


async def test_a_step_resolved_as_applied_is_compensated_and_the_saga_ends(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    async with running([saga("t", in_doubt(rec))]) as h:
        saga_id = await parked(h, "t")
        assert ["s1"] == rec.names("compensation")
        outcome = await operate(h, saga_id, Resolve("s2", Resolution.APPLIED))
        final = await h.wait_terminal(saga_id)
        events = await history(h, saga_id)
    assert outcome.transitions[:2] == ("StepResolved", "CompensationStarted")
    assert ("compensated", ["s1", "s2"]) == (final.status, rec.names("compensation"))
    (resolved,) = [e for e in events if e.event_type == "StepResolved"]
    assert {"step": 1, "resolution": "applied", "by": "ops-alice", "reason": "ticket 42"} == {
        k: resolved.data[k] for k in ("step", "resolution", "by", "reason")
    }


async def test_a_step_resolved_as_not_applied_is_not_compensated(autojump_clock: Any) -> None:
    rec = Recorder()
    async with running([saga("t", in_doubt(rec))]) as h:
        saga_id = await parked(h, "t")
        outcome = await operate(h, saga_id, Resolve("s2", Resolution.NOT_APPLIED))
        final = await h.wait_terminal(saga_id)
    assert ("compensated", "compensated") == (outcome.status, final.status)
    assert ["s1"] == rec.names("compensation")
    assert "skipped" == final.steps[1].compensation_status


async def test_a_compensation_undone_by_hand_is_skipped_and_the_rest_goes_on(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    steps = [
        step(rec, "s1"),
        step(rec, "s2", compensation_fails=100),
        step(rec, "s3", fail_times=9),
    ]
    async with running([saga("t", steps)]) as h:
        saga_id = await parked(h, "t")  # s3 failed, s2's compensation keeps failing
        assert "s1" not in rec.names("compensation")  # s1 waits behind s2, in order
        await operate(h, saga_id, SkipCompensation("s2"))
        final = await h.wait_terminal(saga_id)
        events = await history(h, saga_id)
    assert "compensated" == final.status
    assert ["completed", "skipped", "not_run"] == [s.compensation_status for s in final.steps]
    assert "s1" in rec.names("compensation")
    assert ["CompensationSkipped"] == [e.event_type for e in events if "Skipped" in e.event_type]


async def test_a_crashed_saga_resumes_from_a_step_with_its_input_patched(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    seen: list[str] = []
    steps = [step(rec, "s1"), step(rec, "s2"), step(rec, "s3")]

    async def watch(ctx: Any) -> None:
        seen.append(ctx.input.user_id)

    steps[2] = attrs.evolve(steps[2], action=_also(steps[2].action, watch))
    backend = CrashingBackend(crashes=100)  # s2's completion cannot be recorded
    options = attrs.evolve(FAST, crash_restarts=1, crash_period=60)
    async with running([saga("t", steps)], backend=backend, options=options) as h:
        saga_id = (await h.start("t", user_id="u-1")).saga.saga_id
        assert "failed" == (await h.wait_terminal(saga_id)).status
        backend.crashes = 0  # the operator fixed the cause
        with pytest.raises(ValidationError):  # a patch that does not fit the input: nothing
            await operate(h, saga_id, Resume("s2", {"user_id": 7}))
        outcome = await operate(h, saga_id, Resume("s2", {"user_id": "u-2"}))
        final = await h.wait_terminal(saga_id)
    assert "running" == outcome.status
    assert ("completed", {"user_id": "u-2"}) == (final.status, final.input)
    assert ["u-2"] == seen


def _also(action: Any, extra: Any) -> Any:
    async def both(ctx: Any) -> Any:
        await extra(ctx)
        return await action(ctx)

    return both


async def test_a_dry_run_says_what_would_happen_and_records_nothing(autojump_clock: Any) -> None:
    rec = Recorder()
    async with running([saga("t", in_doubt(rec))]) as h:
        saga_id = await parked(h, "t")
        before = await history(h, saga_id)
        outcome = await operate(h, saga_id, Resolve("s2", Resolution.APPLIED), dry_run=True)
        assert (True, "compensating") == (outcome.dry_run, outcome.status)
        assert before == await history(h, saga_id)
        assert "compensation_failed" == (await h.store.get_saga(saga_id)).status


@pytest.mark.parametrize(
    ("action", "why"),
    [
        (Resolve("s1", Resolution.APPLIED), "not in doubt"),
        (Resolve("nope", Resolution.APPLIED), "no step 'nope'"),
        (SkipCompensation("s1"), "has not failed"),
        (Resume("s2", {}), "before 's2' is not completed and standing"),
    ],
)
async def test_an_action_that_does_not_apply_is_a_conflict_saying_why(
    action: Any, why: str, autojump_clock: Any
) -> None:
    rec = Recorder()
    async with running([saga("t", in_doubt(rec))]) as h:
        saga_id = await parked(h, "t")
        with pytest.raises(SagaStateConflict, match=why) as refused:
            await operate(h, saga_id, action)
    assert "compensation_failed" == refused.value.status


async def test_an_action_on_a_saga_that_is_not_parked_is_a_conflict(autojump_clock: Any) -> None:
    rec = Recorder()
    async with running([saga("t", [step(rec, "s1", sleep=50)])]) as h:
        saga_id = (await h.start("t")).saga.saga_id
        with pytest.raises(SagaStateConflict, match="only a parked saga"):
            await operate(h, saga_id, Retry())


async def test_concurrent_actions_on_one_saga_one_wins_the_others_are_conflicts(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    async with running([saga("t", in_doubt(rec))]) as h:
        saga_id = await parked(h, "t")
        results: list[Any] = []

        async def act(resolution: Resolution) -> None:
            try:
                results.append(await operate(h, saga_id, Resolve("s2", resolution)))
            except SagaStateConflict as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            for resolution in (Resolution.APPLIED, Resolution.NOT_APPLIED, Resolution.APPLIED):
                nursery.start_soon(act, resolution)
        events = await history(h, saga_id)
    assert 1 == sum(isinstance(r, OperatorOutcome) for r in results)
    assert 2 == sum(isinstance(r, SagaStateConflict) for r in results)
    assert 1 == sum(e.event_type == "StepResolved" for e in events)


async def test_a_retry_records_who_asked_and_why(autojump_clock: Any) -> None:
    rec = Recorder()
    async with running([saga("t", in_doubt(rec))]) as h:
        saga_id = await parked(h, "t")
        await h.ref.ask(RetrySaga(saga_id=saga_id, by="ops-bob", reason="checked the service"))
        await h.wait_terminal(saga_id)
        events = await history(h, saga_id)
    (retried,) = [e for e in events if e.event_type == "OperatorRetried"]
    assert ("ops-bob", "checked the service") == (retried.data["by"], retried.data["reason"])


class _SlowToAnswerPark(MemoryBackend):
    """Writes the append that parks a saga, then holds its answer until ``answer`` is set:
    the store says parked while the saga's actor has not heard so yet."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = trio.Event()

    async def commit(self, batch: Any) -> Any:
        result = await super().commit(batch)
        if any(e.event_type == "CompensationFailed" for r in batch for e in r.events):
            await self.answer.wait()
        return result


async def test_a_retry_while_the_park_is_being_recorded_waits_for_it(autojump_clock: Any) -> None:
    rec, backend = Recorder(), _SlowToAnswerPark()
    async with running([saga("t", in_doubt(rec))], backend=backend) as h:
        saga_id = await parked(h, "t")  # as the store has it; the actor waits for its answer
        async with trio.open_nursery() as nursery:
            answers: list[Any] = []

            async def retry() -> None:
                answers.append(await h.ref.ask(RetrySaga(saga_id=saga_id, by="ops", reason="")))

            nursery.start_soon(retry)
            await trio.sleep(1)
            assert [] == answers  # waits in the saga's mailbox, neither refused nor lost
            backend.answer.set()
        events = await history(h, saga_id)
    assert ["compensating"] == answers  # s2 is retried: its compensation runs again
    assert 1 == sum(e.event_type == "OperatorRetried" for e in events)


class _Parks(SagaObserver):
    """Wakes a waiting task with the saga's actor the moment its park is durable: the actor
    is ending then, and the task runs while it may still be."""

    def __init__(self, h_of: Any) -> None:
        self.h_of = h_of
        self.parked: dict[str, tuple[trio.Event, list[Any]]] = {}

    def transitions_recorded(self, before: Any, after: Any, transitions: Any) -> None:
        if after.is_parked and not before.is_parked:
            event, actor = self.parked.setdefault(after.saga_id, (trio.Event(), []))
            actor.append(self.h_of().coordinator.sagas.actors[after.saga_id])
            event.set()


async def test_a_message_reaching_a_saga_actor_as_it_ends_is_answered(
    autojump_clock: Any,
) -> None:
    # trio runs the woken asker before or after the ending actor's last step, at random: ten
    # sagas make both orders all but certain
    rec, harness = Recorder(), []
    parks = _Parks(lambda: harness[0])
    answers: list[BaseException] = []

    async def ask_as_it_ends(saga_id: str) -> None:
        event, actor = parks.parked.setdefault(saga_id, (trio.Event(), []))
        await event.wait()
        try:
            await actor[0].ask(RetrySaga(saga_id=saga_id, by="ops", reason=""), timeout=5)
        except (SagaStateConflict, ActorStopped) as exc:
            answers.append(exc)

    async with running([saga("t", in_doubt(rec))], observer=parks) as h:
        harness.append(h)
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                saga_id = (await h.start("t")).saga.saga_id
                nursery.start_soon(ask_as_it_ends, saga_id)
        # none hung: each was refused as the parked saga's (or the stopped actor's); through
        # the coordinator the same retry is taken
        assert 10 == len(answers)
        assert all(
            "compensation_failed" in str(a) for a in answers if isinstance(a, SagaStateConflict)
        )
        for saga_id in parks.parked:
            status = await h.ref.ask(RetrySaga(saga_id=saga_id, by="ops", reason=""))
            assert status in ("compensating", "compensated")
            await h.wait_terminal(saga_id)
            events = await history(h, saga_id)
            assert 1 == sum(e.event_type == "OperatorRetried" for e in events)
