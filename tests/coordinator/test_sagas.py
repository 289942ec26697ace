"""Saga behaviour through the coordinator on the in-memory store, in virtual time."""

import itertools
import json

import attrs
import pytest
import trio
import trio.testing

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.definition import NonRetryableError, RetryPolicy, Step
from saga_orchestrator.coordinator.messages import CancelSaga, GetStatus, RetrySaga
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.coordinator.projection import stream_id
from saga_orchestrator.coordinator.state import SagaShape, StepShape, replay
from saga_orchestrator.coordinator.step_runner import FRAME_BYTES, FRAMES_KEPT, frames_of
from saga_orchestrator.coordinator.transitions import from_record
from saga_orchestrator.errors import (
    DuplicateIdempotencyKey,
    OverloadedError,
    SagaNotFound,
    SagaStateConflict,
    StoreRejected,
    StoreUnavailable,
    UnknownSagaType,
    ValidationError,
)
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import SagaQuery

from .harness import FAST, Recorder, running, saga, step


async def test_all_steps_succeed(autojump_clock):
    rec = Recorder()
    definition = saga("four", [step(rec, n) for n in "abcd"])
    async with running([definition]) as h:
        started = await h.start("four")
        assert started.created and started.saga.status == "running"  # its 1st step started too
        final = await h.wait_terminal(started.saga.saga_id)
    assert final.status == "completed"
    assert rec.names("action") == ["a", "b", "c", "d"]
    assert rec.names("compensation") == []
    assert final.result["d"] == {"step": "d", "seen": ["a", "b", "c"]}
    assert [s.status for s in final.steps] == ["completed"] * 4


async def test_step_3_failing_after_retries_compensates_2_then_1(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2"), step(rec, "s3", fail_times=99), step(rec, "s4")]
    async with running([saga("four", steps)]) as h:
        started = await h.start("four")
        final = await h.wait_terminal(started.saga.saga_id)
    assert final.status == "compensated"
    assert rec.names("action") == ["s1", "s2", "s3", "s3", "s3"]  # 3 attempts (FAST)
    assert rec.names("compensation") == ["s2", "s1"]
    assert final.error == "step 's3' failed: RuntimeError: s3 failed"
    by_name = {s.name: s for s in final.steps}
    assert (
        by_name["s3"].status,
        by_name["s3"].attempts,
        by_name["s3"].compensation_status,
    ) == ("failed", 3, "not_run")
    assert by_name["s1"].compensation_status == "completed"
    assert by_name["s4"].status == "pending"


async def test_retries_back_off_exponentially(autojump_clock):
    rec = Recorder()
    times = []

    async def flaky(ctx):
        times.append(trio.current_time())
        if len(times) < 3:
            raise RuntimeError("not yet")

    retry = RetryPolicy(initial_backoff=1.0, multiplier=2.0, jitter=0.0)
    definition = saga("flaky", [Step(name="f", action=flaky, retry=retry), step(rec, "next")])
    async with running([definition]) as h:
        final = await h.wait_terminal((await h.start("flaky")).saga.saga_id)
    assert final.status == "completed"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert pytest.approx(gaps) == [1.0, 2.0]


async def test_a_non_retryable_error_skips_retries(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2", fail_times=1, error=NonRetryableError)]
    async with running([saga("two", steps)]) as h:
        final = await h.wait_terminal((await h.start("two")).saga.saga_id)
    assert final.status == "compensated"
    assert rec.names("action") == ["s1", "s2"]
    assert rec.names("compensation") == ["s1"]


async def test_errors_listed_as_non_retryable_skip_retries(autojump_clock):
    rec = Recorder()
    no_retry = RetryPolicy(non_retryable=(PermissionError,))
    steps = [step(rec, "s1", fail_times=5, error=PermissionError, retry=no_retry)]
    async with running([saga("one", steps)]) as h:
        final = await h.wait_terminal((await h.start("one")).saga.saga_id)
    assert final.status == "compensated"
    assert rec.names("action") == ["s1"]


async def test_a_step_timeout_fails_the_step_with_unknown_outcome(autojump_clock):
    rec = Recorder()
    steps = [
        step(rec, "s1"),
        step(rec, "slow", sleep=100, timeout=5, compensation_safe_if_unknown=True),
    ]
    async with running([saga("t", steps)]) as h:
        start = trio.current_time()
        final = await h.wait_terminal((await h.start("t")).saga.saga_id)
        elapsed = trio.current_time() - start
    assert final.status == "compensated"
    assert elapsed < 10
    slow = final.steps[1]
    assert (slow.status, slow.error) == ("unknown", "timed out after 5 s")
    # its compensation is declared safe for an unknown outcome, so it runs first
    assert rec.names("compensation") == ["slow", "s1"]


async def test_an_unknown_outcome_without_a_safe_compensation_waits_for_an_operator(
    autojump_clock,
):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "slow", sleep=100, timeout=5)]
    async with running([saga("t", steps)]) as h:
        saga_id = (await h.start("t")).saga.saga_id
        parked = await h.wait_terminal(saga_id)
        assert parked.status == "compensation_failed"
        assert "outcome of step 'slow' is unknown" in parked.error
        # what is known is undone first; the saga parks on the step in doubt alone
        assert rec.names("compensation") == ["s1"]
        assert ["completed", "failed"] == [s.compensation_status for s in parked.steps]
        # the operator checked the downstream service and retries: its compensation runs
        assert await h.ref.ask(RetrySaga(saga_id=saga_id)) in ("compensating", "compensated")
        final = await h.wait_terminal(saga_id)
    assert final.status == "compensated"
    assert rec.names("compensation") == ["s1", "slow"]


async def test_the_saga_deadline_times_it_out_and_compensates(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2"), step(rec, "long", sleep=10_000, compensation=False)]
    options = attrs.evolve(FAST, saga_timeout=60, step_timeout=100_000)
    async with running([saga("d", steps)], options=options) as h:
        start = trio.current_time()
        final = await h.wait_terminal((await h.start("d")).saga.saga_id)
    assert final.status == "timed_out"
    assert pytest.approx(trio.current_time() - start, abs=1) == 60
    assert final.steps[2].status == "unknown"
    assert rec.names("compensation") == ["s2", "s1"]
    assert final.error == "the saga deadline passed"


async def test_the_deadline_survives_a_restart_of_the_process(autojump_clock):
    """A saga whose deadline passed while no process ran is timed out when recovered."""
    rec = Recorder()
    backend = MemoryBackend()
    steps = [step(rec, "s1"), step(rec, "long", sleep=10_000, compensation=False)]
    options = attrs.evolve(FAST, saga_timeout=60, step_timeout=100_000)
    async with running([saga("d", steps)], options=options, backend=backend) as h:
        saga_id = (await h.start("d")).saga.saga_id
        await trio.sleep(10)
    # the process is gone (actors cancelled mid-step); 100 s later a new one starts
    await trio.sleep(100)
    async with running([saga("d", steps)], options=options, backend=backend) as h:
        final = await h.wait_terminal(saga_id)
    assert final.status == "timed_out"
    assert rec.names("action") == ["s1", "long"]  # the interrupted step was not run again
    assert rec.names("compensation") == ["s1"]


async def test_cancel_during_a_long_step_interrupts_it_and_compensates(autojump_clock):
    rec = Recorder()
    observed = []

    async def long_step(ctx):
        try:
            await trio.sleep(10_000)
        except trio.Cancelled:
            observed.append("cancelled")
            raise

    async def undo_long(ctx):
        rec.calls.append(("compensation", "long", ctx.attempt))

    steps = [
        step(rec, "s1"),
        step(rec, "s2"),
        Step(
            name="long",
            action=long_step,
            compensation=undo_long,
            compensation_safe_if_unknown=True,
        ),
    ]
    async with running([saga("c", steps)]) as h:
        saga_id = (await h.start("c")).saga.saga_id
        await trio.sleep(5)
        assert (await h.store.get_saga(saga_id)).status == "running"
        before = trio.current_time()
        assert await h.ref.ask(CancelSaga(saga_id=saga_id, reason="user asked")) == "compensating"
        final = await h.wait_terminal(saga_id)
        assert trio.current_time() - before < 1  # the step was abandoned at once
        with pytest.raises(SagaStateConflict):
            await h.ref.ask(CancelSaga(saga_id=saga_id))
    assert observed == ["cancelled"]
    assert final.status == "cancelled"
    assert final.error == "user asked"
    assert rec.names("compensation") == ["long", "s2", "s1"]


async def test_a_compensation_that_keeps_failing_parks_the_saga(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1", compensation_fails=99), step(rec, "s2", fail_times=99)]
    async with running([saga("p", steps)]) as h:
        final = await h.wait_terminal((await h.start("p")).saga.saga_id)
    assert final.status == "compensation_failed"
    assert rec.names("compensation") == ["s1"] * 3  # FAST: 3 compensation attempts
    assert final.steps[0].compensation_error == "RuntimeError: undo s1 failed"
    assert final.steps[0].compensation_status == "failed"


async def test_retry_resumes_a_parked_compensation(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1", compensation_fails=3), step(rec, "s2", fail_times=99)]
    async with running([saga("p", steps)]) as h:
        saga_id = (await h.start("p")).saga.saga_id
        assert (await h.wait_terminal(saga_id)).status == "compensation_failed"
        await h.ref.ask(RetrySaga(saga_id=saga_id))
        final = await h.wait_terminal(saga_id)
        with pytest.raises(SagaStateConflict):
            await h.ref.ask(RetrySaga(saga_id=saga_id))
    assert final.status == "compensated"
    assert rec.names("compensation") == ["s1"] * 4


async def test_the_same_idempotency_key_twice_gives_one_saga(autojump_clock):
    rec = Recorder()
    async with running([saga("one", [step(rec, "s1")])]) as h:
        async with trio.open_nursery() as nursery:
            results = []

            async def start():
                results.append(await h.start("one", key="order-42"))

            for _ in range(3):
                nursery.start_soon(start)
        again = await h.start("one", key="order-42")
        other = await h.start("one", key="order-43")
        await h.wait_terminal(again.saga.saga_id)
    ids = {r.saga.saga_id for r in results}
    assert len(ids) == 1 and again.saga.saga_id in ids
    assert sorted((r.created for r in results), reverse=True) == [True, False, False]
    assert not again.created
    assert other.saga.saga_id not in ids
    assert len(h.backend.sagas) == 2


async def test_bad_starts_are_refused_with_typed_errors(autojump_clock):
    rec = Recorder()
    async with running([saga("one", [step(rec, "s1")])]) as h:
        with pytest.raises(UnknownSagaType, match="available types: one"):
            await h.start("nope")
        with pytest.raises(ValidationError) as caught:
            await h.start("one", user_id=7)
        assert (caught.value.errors) == [
            {"field": "data.user_id", "message": "expected a string, got int"}
        ]
        with pytest.raises(SagaNotFound):
            await h.ref.ask(CancelSaga(saga_id="missing"))


async def test_admission_limit_refuses_starts_beyond_it(autojump_clock):
    rec = Recorder()
    options = attrs.evolve(FAST, max_active_sagas=2, step_timeout=1000)
    async with running([saga("slow", [step(rec, "s", sleep=100)])], options=options) as h:
        first = await h.start("slow")
        await h.start("slow")
        with pytest.raises(OverloadedError) as caught:
            await h.start("slow")
        assert caught.value.retry_after > 0
        status = await h.ref.ask(GetStatus())
        assert (status.active_sagas, status.max_active_sagas, status.recovered) == (2, 2, True)
        await h.wait_terminal(first.saga.saga_id)
        await trio.testing.wait_all_tasks_blocked()
        await h.start("slow")  # room again


class CrashingBackend(MemoryBackend):
    """Fails with a bug (not a StoreError) when asked to record ``StepCompleted`` of step 1."""

    def __init__(self, crashes: int) -> None:
        super().__init__()
        self.crashes = crashes

    async def commit(self, batch):
        for request in batch:
            completes_step_1 = any(
                e.event_type == "StepCompleted" and e.data["step"] == 1 for e in request.events
            )
            if completes_step_1 and self.crashes:
                self.crashes -= 1
                raise RuntimeError("injected bug")
        return await super().commit(batch)


async def test_a_crashing_saga_actor_restarts_and_runs_each_step_at_most_once_more(
    autojump_clock,
):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2"), step(rec, "s3")]
    backend = CrashingBackend(crashes=2)
    async with running([saga("crashy", steps)], backend=backend) as h:
        final = await h.wait_terminal((await h.start("crashy")).saga.saga_id)
    assert final.status == "completed"
    # s2's effect happened, then the actor crashed before StepCompleted was durable, twice:
    # each restart re-runs s2 once, with the same idempotency key
    assert rec.names("action") == ["s1", "s2", "s2", "s2", "s3"]
    s2_keys = {k for k in rec.keys if k.endswith(":s2")}
    assert len(s2_keys) == 1
    assert final.steps[1].attempts == 1


async def test_a_saga_actor_that_crashes_too_often_is_parked_as_failed(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2"), step(rec, "s3")]
    backend = CrashingBackend(crashes=100)
    options = attrs.evolve(FAST, crash_restarts=2, crash_period=60)
    async with running([saga("crashy", steps)], backend=backend, options=options) as h:
        saga_id = (await h.start("crashy")).saga.saga_id
        parked = await h.wait_terminal(saga_id)
        assert parked.status == "failed"
        assert "kept crashing" in parked.error and "injected bug" in parked.error
        assert rec.names("action").count("s2") == 3  # the first run and 2 restarts
        backend.crashes = 0  # the operator fixed the cause
        await h.ref.ask(RetrySaga(saga_id=saga_id))
        final = await h.wait_terminal(saga_id)
    assert final.status == "completed"


@pytest.mark.parametrize(
    ("seconds_between_crashes", "expected"), [(1.0, "failed"), (6.0, "completed")]
)
async def test_the_saga_restart_window_is_supervisor_period_seconds(
    autojump_clock, seconds_between_crashes: float, expected: str
):
    # 3 crashes with SUPERVISOR_MAX_RESTARTS=2 and SUPERVISOR_PERIOD_SECONDS=10: parked when
    # they come within 10 s (1 s apart), not when they are spread wider (6 s apart: at most 2
    # in any 10 s, though all 3 fall within the 60 s that used to be hard-coded).
    settings = Settings(supervisor_max_restarts=2, supervisor_period_seconds=10.0)
    options = attrs.evolve(EngineOptions.from_settings(settings), max_active_sagas=10)
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2", sleep=seconds_between_crashes), step(rec, "s3")]
    backend = CrashingBackend(crashes=3)
    async with running([saga("crashy", steps)], backend=backend, options=options) as h:
        final = await h.wait_terminal((await h.start("crashy")).saga.saga_id)
    assert expected == final.status
    # the first run, then one restart per crash until it succeeded or was given up
    assert (3 if expected == "failed" else 4) == rec.names("action").count("s2")


async def test_a_repeated_key_returns_its_saga_even_at_the_admission_limit(autojump_clock):
    rec = Recorder()
    options = attrs.evolve(FAST, max_active_sagas=1, step_timeout=1000)
    async with running([saga("slow", [step(rec, "s", sleep=100)])], options=options) as h:
        first = await h.start("slow", key="k-1")
        with pytest.raises(OverloadedError):
            await h.start("slow", key="k-2")
        again = await h.start("slow", key="k-1")
    assert (first.saga.saga_id, False) == (again.saga.saga_id, again.created)


async def test_a_key_reused_for_another_saga_type_is_a_conflict(autojump_clock):
    rec = Recorder()
    definitions = [saga("one", [step(rec, "a")]), saga("two", [step(rec, "b")])]
    async with running(definitions) as h:
        first = await h.start("one", key="shared")
        with pytest.raises(DuplicateIdempotencyKey) as caught:
            await h.start("two", key="shared")
    assert first.saga.saga_id == caught.value.saga_id


class FlakyReadBackend(MemoryBackend):
    """Cannot read saga histories for its first ``failures`` attempts."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def read_stream(self, stream_id, *, from_version=1, limit=1000):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the database is restarting")
        return await super().read_stream(stream_id, from_version=from_version, limit=limit)

    async def read_streams(self, stream_ids):
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the database is restarting")
        return await super().read_streams(stream_ids)


async def test_recovery_waits_for_a_store_that_cannot_read_yet(autojump_clock):
    rec = Recorder()
    backend = FlakyReadBackend(failures=0)
    definition = saga("two", [step(rec, "a"), step(rec, "b", sleep=100)])
    options = attrs.evolve(FAST, step_timeout=1000)
    async with running([definition], backend=backend, options=options) as h:
        saga_id = (await h.start("two")).saga.saga_id
        await trio.sleep(10)
    backend.failures = 5  # the next process finds the database still starting
    async with running([definition], backend=backend, options=options) as h:
        final = await h.wait_terminal(saga_id)
    assert "completed" == final.status
    assert 0 == backend.failures


class Busy(Exception):
    """A service answered 429/503 with ``Retry-After``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("busy")
        self.retry_after = retry_after


async def test_a_retry_waits_at_least_what_the_service_asked_for(autojump_clock):
    times = []

    async def busy_then_fine(ctx):
        times.append(trio.current_time())
        if len(times) == 1:
            raise Busy(retry_after=42)

    retry = RetryPolicy(initial_backoff=1.0, jitter=0.0)
    definition = saga("busy", [Step(name="b", action=busy_then_fine, retry=retry)])
    async with running([definition]) as h:
        final = await h.wait_terminal((await h.start("busy")).saga.saga_id)
    assert "completed" == final.status
    assert 42 == pytest.approx(times[1] - times[0])


@pytest.mark.parametrize("result", [float("nan"), {"ratio": float("inf")}, {1j}])
async def test_a_step_result_the_store_cannot_keep_fails_the_step_and_compensates(
    autojump_clock, result
):
    rec = Recorder()

    async def unstorable(ctx):
        return result

    steps = [step(rec, "s1"), Step(name="odd", action=unstorable)]
    async with running([saga("t", steps)]) as h:
        final = await h.wait_terminal((await h.start("t")).saga.saga_id)
    assert final.status == "compensated"
    assert "cannot be stored as JSON" in final.steps[1].error
    assert rec.names("compensation") == ["s1"]


class UnwritableBackend(MemoryBackend):
    """Cannot commit while ``down``."""

    down = True

    async def commit(self, batch):
        if self.down:
            raise StoreUnavailable("the database is restarting")
        return await super().commit(batch)


@pytest.mark.parametrize("key", [None, "start-once"])
async def test_a_start_the_store_cannot_record_fails_and_leaves_no_saga(autojump_clock, key):
    rec = Recorder()
    backend = UnwritableBackend()
    async with running([saga("t", [step(rec, "a")])], backend=backend) as h:
        with pytest.raises(StoreUnavailable):
            await h.start("t", key=key)
        await trio.testing.wait_all_tasks_blocked()
        status = await h.ref.ask(GetStatus())
        assert status.active_sagas == 0  # admission counts nothing left behind
        assert (await backend.list_sagas(SagaQuery())).items == ()
        assert rec.calls == []  # no step ran for a saga that does not exist
        backend.down = False
        final = await h.wait_terminal((await h.start("t", key=key)).saga.saga_id)
    assert final.status == "completed"
    assert rec.names("action") == ["a"]


class RefusingBackend(MemoryBackend):
    """Refuses for good (``StoreRejected``) any append that completes step 1; counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def commit(self, batch):  # type: ignore[no-untyped-def]
        results = []
        for request in batch:
            if any(e.event_type == "StepCompleted" and e.data["step"] == 1 for e in request.events):
                self.refused += 1
                results.append(StoreRejected("a value the database cannot hold"))
            else:
                results.extend(await super().commit([request]))
        return results


async def test_an_append_the_store_refuses_for_good_parks_the_saga_at_once(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2"), step(rec, "s3")]
    backend = RefusingBackend()
    async with running([saga("refused", steps)], backend=backend) as h:
        saga_id = (await h.start("refused")).saga.saga_id
        parked = await h.wait_terminal(saga_id)
    assert "failed" == parked.status
    assert "the store refused" in parked.error and "cannot hold" in parked.error
    # no restart: s2 ran once, the refused append was tried once, nothing was compensated
    assert (["s1", "s2"], 1, []) == (
        rec.names("action"),
        backend.refused,
        rec.names("compensation"),
    )


class FlakyBackend(MemoryBackend):
    """Unavailable for its first ``failures`` commits."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def commit(self, batch):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the database is restarting")
        return await super().commit(batch)


async def test_an_unavailable_store_is_waited_for_not_compensated(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2")]
    backend = FlakyBackend(failures=0)
    async with running([saga("waits", steps)], backend=backend) as h:
        saga_id = (await h.start("waits")).saga.saga_id
        backend.failures = 6  # every append fails for a while, then the store is back
        final = await h.wait_terminal(saga_id)
    assert "completed" == final.status
    assert (["s1", "s2"], []) == (rec.names("action"), rec.names("compensation"))


async def test_a_bug_in_step_code_is_logged_with_its_traceback_and_kept_with_the_saga(
    autojump_clock, caplog
):
    async def buggy(ctx):
        return {}["missing"]  # a bug: KeyError

    steps = [Step(name="buggy", action=buggy)]
    with caplog.at_level("WARNING", logger="saga_orchestrator"):
        async with running([saga("bug", steps)]) as h:
            saga_id = (await h.start("bug")).saga.saga_id
            final = await h.wait_terminal(saga_id)
    lines = [r for r in caplog.records if saga_id in r.getMessage()]
    assert ["WARNING", "WARNING", "ERROR"] == [r.levelname for r in lines]
    for attempt, record in enumerate(lines, start=1):
        text = record.getMessage()
        assert f"'buggy' attempt {attempt} failed" in text and "[KeyError]" in text
        assert "(bug)" in text  # the saga type
        assert record.exc_info is not None and record.exc_info[0] is KeyError
        history = await h.backend.read_stream(stream_id(saga_id))
    (buggy_step,) = final.steps
    assert ("KeyError", "KeyError: 'missing'") == (buggy_step.error_type, buggy_step.error)
    assert 'in buggy: return {}["missing"]' in buggy_step.error_frames[-1]
    # Recovery replays them: the stored transitions (as JSON, like the SQL stores keep them)
    # give the step the same error again.
    shape = SagaShape(steps=(StepShape(name="buggy"),))
    replayed = replay(
        shape, [from_record(e.event_type, json.loads(json.dumps(e.data))) for e in history]
    )
    (step_state,) = replayed.steps
    assert ("KeyError", buggy_step.error_frames) == (step_state.error_type, step_state.error_frames)


def test_the_frames_kept_of_an_error_are_the_innermost_few_and_bounded_in_bytes() -> None:
    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        raise ValueError(
            "€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€"
        )  # 3 bytes each

    try:
        deep(20)
    except ValueError as exc:
        frames = frames_of(exc)
    assert FRAMES_KEPT == len(frames) == 5
    assert all(len(f.encode()) <= FRAME_BYTES for f in frames)
    assert frames[-1].startswith("coordinator/test_sagas.py:") and " in deep: raise" in frames[-1]
    frames[-1].encode().decode()  # never cut inside a character
    assert () == frames_of(NonRetryableError("an answer of ours: no traceback"))


async def test_a_downstream_error_is_logged_without_a_traceback(autojump_clock, caplog):
    async def refused(ctx):
        raise NonRetryableError("the user service refused: 409")

    with caplog.at_level("WARNING", logger="saga_orchestrator"):
        async with running([saga("no", [Step(name="call", action=refused)])]) as h:
            saga_id = (await h.start("no")).saga.saga_id
            await h.wait_terminal(saga_id)
        final = await h.store.get_saga(saga_id)
    (line,) = [r for r in caplog.records if saga_id in r.getMessage()]
    assert ("ERROR", None) == (line.levelname, line.exc_info)
    assert "[NonRetryableError]" in line.getMessage()
    # Kept with the saga: its type and message, no frames.
    assert final is not None
    (kept,) = final.steps
    assert ("NonRetryableError", "NonRetryableError: the user service refused: 409", ()) == (
        kept.error_type,
        kept.error,
        kept.error_frames,
    )


class ReplyLost(RuntimeError):
    """The request went out and its answer was lost: it may have been applied."""

    effect_unknown = True


async def test_a_step_that_gives_up_after_lost_answers_is_in_doubt_and_undone_if_safe(
    autojump_clock,
):
    rec = Recorder()
    steps = [
        step(rec, "s1"),
        step(rec, "s2", fail_times=9, error=ReplyLost, compensation_safe_if_unknown=True),
    ]
    async with running([saga("lost", steps)]) as h:
        final = await h.wait_terminal((await h.start("lost")).saga.saga_id)
    assert ("compensated", "unknown") == (final.status, final.steps[1].status)
    assert ["s2", "s1"] == rec.names("compensation")  # its effect may exist: undone too


async def test_a_parked_then_retried_saga_says_why_it_failed_not_why_it_parked(autojump_clock):
    rec = Recorder()
    steps = [step(rec, "s1", compensation_fails=3), step(rec, "s2", fail_times=9)]
    async with running([saga("t", steps)]) as h:
        saga_id = (await h.start("t")).saga.saga_id
        parked = await h.wait_terminal(saga_id)
        assert "undo s1 failed" in parked.error  # why it waits for an operator
        await h.ref.ask(RetrySaga(saga_id=saga_id))
        final = await h.wait_terminal(saga_id)
    assert "compensated" == final.status
    assert "step 's2' failed: RuntimeError: s2 failed" == final.error


async def test_a_resumed_step_runs_under_a_new_idempotency_key(autojump_clock):
    from saga_orchestrator.coordinator.messages import OperateSaga
    from saga_orchestrator.coordinator.operator import Resume

    rec = Recorder()
    steps = [step(rec, "s1"), step(rec, "s2", sleep=100, timeout=5)]
    async with running([saga("t", steps)]) as h:
        saga_id = (await h.start("t")).saga.saga_id
        await h.wait_terminal(saga_id)  # s1 undone, parked on s2 in doubt
        rec.keys.clear()
        await h.ref.ask(OperateSaga(saga_id=saga_id, action=Resume("s1", {})))
        await trio.sleep(1)
    # the first run's keys are spent (s1 was undone under its key): the new run has its own
    assert [f"{saga_id}:s1:r1", f"{saga_id}:s2:r1"] == rec.keys
