"""Properties of the pure saga state machine, for any sequence of outcomes, interruptions,
restarts and operator retries."""

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from saga_orchestrator.coordinator import plan as pl
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.transitions import (
    CompensationCompleted,
    CompensationFailed,
    CompensationStarted,
    Interruption,
    OperatorRetried,
    Outcome,
    SagaInterrupted,
    SagaStarted,
    StepCompleted,
    StepFailed,
    StepStarted,
)

step_shapes = st.builds(
    sm.StepShape,
    name=st.sampled_from(["a", "b", "c", "d", "e"]),
    has_compensation=st.booleans(),
    compensation_safe_if_unknown=st.booleans(),
    max_attempts=st.integers(1, 3),
    compensation_max_attempts=st.integers(1, 3),
)
shapes = st.lists(step_shapes, min_size=1, max_size=5).map(
    lambda steps: sm.SagaShape(
        steps=tuple(attrs.evolve(s, name=f"{s.name}{i}") for i, s in enumerate(steps))
    )
)
step_attempts = st.sampled_from(
    [
        pl.Succeeded({"ok": 1}),
        pl.Raised("boom"),
        pl.Raised("no", retryable=False),
        pl.Raised("reply lost", effect_unknown=True),
        pl.TimedOut(5),
    ]
)
compensation_attempts = st.sampled_from([pl.Succeeded(), pl.Raised("undo failed")])


def run(shape, data):
    """Drive the machine like the actor would, drawing every outcome; return the history."""
    history = []
    state = sm.initial_state(shape)

    def record(t):
        nonlocal state
        t = attrs.evolve(t, at=float(len(history) + 1))
        history.append(t)
        before, state = state, sm.evolve(state, t)
        # every transition is one version of the stream, stamped with its own time
        assert (state.version, state.updated_at) == (before.version + 1, t.at), t

    record(SagaStarted(saga_id="s", saga_type="t", saga_version=1, input={}, deadline_at=1e12))
    retries = 0
    for _ in range(500):
        if data.draw(st.integers(0, 9)) == 0:  # a restart rebuilds the state from history
            assert sm.replay(shape, history) == state
        command = pl.plan(state, shape)
        forward = state.status in (sm.SagaStatus.PENDING, sm.SagaStatus.RUNNING)
        match command:
            case pl.Record(transition=t):
                record(t)
            case pl.Execute(step=i, attempt=a) | pl.Wait(then=StepStarted(step=i, attempt=a)):
                interrupt = data.draw(st.sampled_from([None, None, None, *Interruption]))
                if interrupt is not None and forward:
                    record(SagaInterrupted(reason=interrupt))
                elif isinstance(command, pl.Wait):
                    record(command.then)
                else:
                    record(pl.step_outcome(state, shape, i, a, data.draw(step_attempts)))
            case pl.Compensate(step=i, attempt=a):
                outcome = data.draw(compensation_attempts)
                record(pl.compensation_outcome(state, shape, i, a, outcome))
            case pl.Wait(then=t):
                record(t)
            case pl.Halt():
                if state.is_parked and retries < 3 and data.draw(st.booleans()):
                    retries += 1
                    record(OperatorRetried())
                    continue
                return state, history
    raise AssertionError("the saga did not halt")


@settings(max_examples=400, deadline=None)
@given(shape=shapes, data=st.data())
def test_compensations_run_exactly_for_completed_steps_in_reverse_order(shape, data):
    state, history = run(shape, data)
    completed = {t.step for t in history if isinstance(t, StepCompleted)}
    unknown = {
        t.step for t in history if isinstance(t, StepFailed) and t.outcome is Outcome.UNKNOWN
    }
    failed = {t.step for t in history if isinstance(t, StepFailed) and t.outcome is Outcome.FAILED}
    compensated = [t.step for t in history if isinstance(t, CompensationCompleted)]
    started_compensations = {t.step for t in history if isinstance(t, CompensationStarted)}
    with_compensation = {i for i, s in enumerate(shape.steps) if s.has_compensation}

    # each compensation completes at most once, in reverse step order; a step in doubt (outcome
    # unknown, compensation not declared safe) only after every other, once an operator let it
    assert len(compensated) == len(set(compensated))
    in_doubt = {i for i in unknown if not shape.steps[i].compensation_safe_if_unknown}
    known = [i for i in compensated if i not in in_doubt]
    assert known == sorted(known, reverse=True)
    assert compensated == known + [i for i in compensated if i in in_doubt]
    # never for a step that failed cleanly or never ran
    assert started_compensations <= (completed | unknown) & with_compensation
    assert not started_compensations & failed

    if state.status is sm.SagaStatus.COMPLETED:
        assert completed == set(range(len(shape.steps)))
        assert compensated == []
    elif state.status in (
        sm.SagaStatus.COMPENSATED,
        sm.SagaStatus.CANCELLED,
        sm.SagaStatus.TIMED_OUT,
    ):
        # every completed step with a compensation was compensated
        assert completed & with_compensation <= set(compensated)
        safe_unknown = {
            i for i in unknown & with_compensation if shape.steps[i].compensation_safe_if_unknown
        }
        assert safe_unknown <= set(compensated)
    else:
        assert state.is_parked  # waiting for an operator, never dropped
        assert state.error


@settings(max_examples=200, deadline=None)
@given(shape=shapes, data=st.data())
def test_no_step_starts_once_compensation_began(shape, data):
    _, history = run(shape, data)
    began = next(
        (n for n, t in enumerate(history) if isinstance(t, SagaInterrupted | StepFailed)), None
    )
    if began is not None:
        assert not any(isinstance(t, StepStarted) for t in history[began:])


def test_backoff_is_deterministic_capped_and_jittered_within_bounds():
    shape = sm.StepShape(name="x", initial_backoff=1, multiplier=2, max_backoff=5, jitter=0.2)
    delays = [pl.backoff(shape, "saga:0", attempt) for attempt in range(1, 6)]
    assert delays == [pl.backoff(shape, "saga:0", attempt) for attempt in range(1, 6)]
    for attempt, delay in enumerate(delays, start=1):
        base = min(5, 2 ** (attempt - 1))
        assert base * 0.8 <= delay <= base * 1.2


@settings(max_examples=400, deadline=None)
@given(shape=shapes, data=st.data())
def test_a_saga_never_parks_on_a_step_in_doubt_before_the_known_ones_are_undone(shape, data):
    """Whenever a saga parks because a step's outcome is unknown, every step known to have
    completed has been compensated already (a compensation that fails parks it too: then the
    steps before that one wait, in order, for the operator)."""
    _, history = run(shape, data)
    state = sm.initial_state(shape)
    for t in history:
        state = sm.evolve(state, t)
        if isinstance(t, CompensationFailed) and t.attempt == 0:  # parked on a step in doubt
            for index, step_state in enumerate(state.steps):
                if step_state.status is sm.StepStatus.COMPLETED and (
                    shape.steps[index].has_compensation
                ):
                    assert step_state.compensation in (
                        sm.CompensationStatus.COMPLETED,
                        sm.CompensationStatus.SKIPPED,
                    ), (index, history)
