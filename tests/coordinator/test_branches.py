"""Parallel branches in the decision core: examples, then properties over any interleaving of
the branches' attempt outcomes, commits, time, cancels and crashes."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from saga_orchestrator.coordinator import decide as core
from saga_orchestrator.coordinator import plan as pl
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.layout import Group
from saga_orchestrator.coordinator.transitions import (
    CompensationStarted,
    Transition,
)

from .test_decide import LIMIT, commit, only, started_machine, step


def fan(*branches: int, before: int = 1) -> sm.SagaShape:
    """``before`` plain steps, then a group whose branches have the given numbers of steps."""
    steps = [step(f"p{i}") for i in range(before)]
    indices = []
    for number, size in enumerate(branches):
        indices.append(tuple(range(len(steps), len(steps) + size)))
        steps += [step(f"b{number}.{i}") for i in range(size)]
    return sm.SagaShape(steps=tuple(steps), stages=(*range(before), Group("g", tuple(indices))))


def names(append: core.Append) -> list[str]:
    return [f"{type(t).__name__}:{getattr(t, 'step', '')}" for t in append.transitions]


def ended(m: core.Machine, step: int, outcome: pl.Attempt | None) -> None:
    assert () == core.take(m, core.AttemptEnded(step, outcome), deliveries_limit=LIMIT)


# -- examples ------------------------------------------------------------------------------------


def test_the_branches_start_together_and_a_branch_goes_on_while_the_other_runs() -> None:
    shape = fan(2, 1)  # p0, then branches [1, 2] and [3]
    m, history = started_machine(shape)
    only(core.advance(m, shape, 1.0).commands, core.Run)
    ended(m, 0, pl.Succeeded())
    append = only(core.advance(m, shape, 2.0).commands, core.Append)
    assert ["StepCompleted:0", "StepStarted:1", "StepStarted:3"] == names(append)
    commit(m, history)
    runs = [c for c in core.advance(m, shape, 2.0).commands if isinstance(c, core.Run)]
    assert [1, 3] == [r.step for r in runs]
    ended(m, 1, pl.Succeeded())  # branch 0 goes on; 3 still runs
    append = only(core.advance(m, shape, 3.0).commands, core.Append)
    assert ["StepCompleted:1", "StepStarted:2"] == names(append)
    commit(m, history)
    assert [2] == [r.step for r in core.advance(m, shape, 3.0).commands]
    ended(m, 3, pl.Succeeded())
    ended(m, 2, pl.Succeeded())
    append = only(core.advance(m, shape, 4.0).commands, core.Append)
    assert "SagaCompleted:" == names(append)[-1]


def test_a_failing_branch_cuts_the_others_and_everything_completed_is_compensated() -> None:
    shape = fan(2, 1, 1)  # p0, then branches [1, 2], [3], [4]
    m, history = started_machine(shape)
    only(core.advance(m, shape, 1.0).commands, core.Run)
    ended(m, 0, pl.Succeeded())
    core.advance(m, shape, 1.0)
    commit(m, history)
    core.advance(m, shape, 1.0)  # runs 1, 3, 4
    ended(m, 3, pl.Succeeded())  # completes: recorded while the others run
    only(core.advance(m, shape, 2.0).commands, core.Append)
    commit(m, history)
    ended(m, 4, pl.Raised("no", retryable=False))  # fails: 1 is cut, nothing recorded
    assert (core.Cut(1),) == core.advance(m, shape, 3.0).commands
    ended(m, 1, None)
    append = only(core.advance(m, shape, 4.0).commands, core.Append)
    assert [
        "StepFailed:4",
        "StepFailed:1",  # interrupted: unknown, its compensation is not safe for that
        "CompensationStarted:3",
    ] == names(append)
    assert "interrupted" in append.transitions[1].error
    commit(m, history)
    (run,) = core.advance(m, shape, 5.0).commands
    assert (3, True) == (run.step, run.compensation)


def test_a_cancel_cuts_every_branch_at_once() -> None:
    shape = fan(1, 1, before=0)
    m, _ = started_machine(shape)
    runs = core.advance(m, shape, 1.0).commands
    assert [0, 1] == [r.step for r in runs]
    assert (core.Cut(0), core.Cut(1)) == core.take(
        m, core.Cancel("c", "stop"), deliveries_limit=LIMIT
    )
    ended(m, 0, pl.Succeeded())  # it completed before the cut reached it
    assert () == core.advance(m, shape, 2.0).commands  # 1 has not ended
    ended(m, 1, None)
    append = only(core.advance(m, shape, 2.0).commands, core.Append)
    assert [
        "StepCompleted:0",
        "SagaInterrupted:",
        "StepFailed:1",
        "CompensationStarted:0",
    ] == names(append)


# -- properties ------------------------------------------------------------------------------


step_shapes = st.builds(
    sm.StepShape,
    name=st.just("s"),
    has_compensation=st.booleans(),
    compensation_safe_if_unknown=st.booleans(),
    max_attempts=st.integers(1, 2),
    compensation_max_attempts=st.integers(1, 2),
    initial_backoff=st.sampled_from([0.5, 5.0]),
    reply_success=st.sampled_from([(), (), ("ok",)]),
    reply_failure=st.just(("bad",)),
    reply_timeout=st.sampled_from([3.0, 50.0]),
    timeout=st.just(30.0),
)
branch = st.lists(step_shapes, min_size=1, max_size=2)
stage = st.one_of(step_shapes.map(lambda s: [[s]]), st.lists(branch, min_size=2, max_size=3))


@st.composite
def shapes(draw: st.DrawFn) -> sm.SagaShape:
    """Plain steps and groups (a drawn stage of one branch of one step is a plain step)."""
    steps: list[sm.StepShape] = []
    stages: list[Any] = []
    for number, drawn in enumerate(draw(st.lists(stage, min_size=1, max_size=3))):
        indices = []
        for branch_steps in drawn:
            indices.append(tuple(range(len(steps), len(steps) + len(branch_steps))))
            steps += [
                attrs.evolve(s, name=f"s{len(steps) + i}") for i, s in enumerate(branch_steps)
            ]
        stages.append(indices[0][0] if len(drawn) == 1 else Group(f"g{number}", tuple(indices)))
    return sm.SagaShape(steps=tuple(steps), stages=tuple(stages))


def before_in_compensation(shape: sm.SagaShape, index: int) -> set[int]:
    """The steps whose compensation must be done before ``index``'s: the later steps of its
    branch, and every step of the later stages."""
    later: set[int] = set()
    for stage in reversed(shape.stages):
        branches = stage.branches if isinstance(stage, Group) else ((stage,),)
        for steps in branches:
            if index in steps:
                return later | set(steps[steps.index(index) + 1 :])
        later |= {i for steps in branches for i in steps}
    raise AssertionError(f"step {index} is in no stage")


def nothing_left(state: sm.SagaState, shape: sm.SagaShape, index: int) -> bool:
    """Whether step ``index`` has been compensated, or has nothing to compensate, or is in doubt
    (it waits for an operator while the others go on)."""
    step_state, step_shape = state.steps[index], shape.steps[index]
    if not step_shape.has_compensation:
        return True
    if step_state.status not in (sm.StepStatus.COMPLETED, sm.StepStatus.UNKNOWN):
        return True
    if step_state.compensation in (sm.CompensationStatus.COMPLETED, sm.CompensationStatus.SKIPPED):
        return True
    return (
        step_state.status is sm.StepStatus.UNKNOWN
        and not step_shape.compensation_safe_if_unknown
        and not step_state.compensation_forced
    )


ACTIONS = ["advance"] * 4 + ["durable"] * 4 + ["end"] * 5 + ["cancel", "deliver", "time", "crash"]


@attrs.define
class World:
    """The actor around the machine (several attempts at once), its store and its clock."""

    shape: sm.SagaShape
    m: core.Machine
    history: list[Transition]
    now: float = 1.0
    attempts: dict[int, core.Run] = attrs.field(factory=dict)
    cut: set[int] = attrs.field(factory=set)
    deferred: list[core.Deliver] = attrs.field(factory=list)
    refs: int = 0
    stopped: bool = False

    def execute(self, commands: tuple[core.Command, ...] | None) -> None:
        for command in commands or ():
            match command:
                case core.Cut(step=step):
                    assert step in self.attempts and not self.attempts[step].compensation
                    self.cut.add(step)
                case core.Append() as append:
                    assert append.before.version == len(self.history)
                    if append.before.status in core.FORWARD:  # it stops only once all ended
                        assert append.after.status in core.FORWARD or not [
                            a for a in self.attempts.values() if not a.compensation
                        ], "the saga stops going forward only once every attempt has ended"
                case core.Run() as run:
                    self.check_run(run)
                    self.attempts[run.step] = run
                    self.cut.discard(run.step)
                case core.Stop():
                    assert not self.attempts
                    self.stopped = True

    def check_run(self, run: core.Run) -> None:
        assert run.step not in self.attempts, "one running attempt per step"
        durable = sm.replay(self.shape, self.history)
        step_state = durable.steps[run.step]
        if not run.compensation:
            assert sm.StepStatus.RUNNING is step_state.status
            assert run.attempt == step_state.attempt
            return
        assert sm.CompensationStatus.RUNNING is step_state.compensation
        assert not [a for a in self.attempts.values() if not a.compensation], (
            "a compensation runs only once every forward attempt has ended"
        )
        for j in before_in_compensation(self.shape, run.step):
            assert nothing_left(durable, self.shape, j), (run.step, j)

    def take(self, event: core.Input) -> tuple[core.Command, ...] | None:
        commands = core.take(self.m, event, deliveries_limit=LIMIT)
        self.execute(commands)
        return commands

    def end(self, step: int, outcome: pl.Attempt | None, **extra: Any) -> None:
        del self.attempts[step]
        self.cut.discard(step)
        self.take(core.AttemptEnded(step, outcome, **extra))

    def commit(self) -> None:
        assert self.m.in_flight is not None
        self.history.extend(self.m.in_flight.transitions)
        self.take(core.DURABLE)
        waiting, self.deferred = self.deferred, []
        for delivery in waiting:
            if self.take(delivery) is core.DEFERRED:
                self.deferred.append(delivery)

    def crash(self, committed: bool) -> None:
        if self.m.in_flight is not None and committed:
            self.history.extend(self.m.in_flight.transitions)
        self.m = core.Machine(saga=sm.replay(self.shape, self.history))
        self.attempts.clear()
        self.cut.clear()
        self.deferred.clear()
        self.stopped = False


FORWARD_OUTCOMES = [
    *[pl.Succeeded({"v": 1})] * 4,
    pl.Raised("x"),
    pl.Raised("no", retryable=False),
    pl.TimedOut(30.0),
]


def drive(shape: sm.SagaShape, data: st.DataObject) -> World:
    m, history = started_machine(shape)
    world = World(shape, m, history)
    for _ in range(200):
        match data.draw(st.sampled_from(ACTIONS)):
            case "advance":
                world.execute(core.advance(world.m, shape, world.now).commands)
            case "durable" if world.m.in_flight is not None:
                world.commit()
            case "end" if world.attempts:
                step = data.draw(st.sampled_from(sorted(world.attempts)))
                run = world.attempts[step]
                if step in world.cut and data.draw(st.booleans()):
                    outcome: pl.Attempt | None = None
                elif run.compensation:
                    outcome = data.draw(st.sampled_from([pl.Succeeded(), pl.Raised("undo")]))
                else:
                    outcome = data.draw(st.sampled_from(FORWARD_OUTCOMES))
                world.end(step, outcome)
            case "cancel":
                world.refs += 1
                world.take(core.Cancel(("cancel", world.refs), "stop"))
            case "deliver":
                world.refs += 1
                event_type = data.draw(st.sampled_from(["ok", "bad"]))
                delivery = core.Deliver(("deliver", world.refs), f"e{world.refs}", event_type, {})
                if world.deferred or world.take(delivery) is core.DEFERRED:
                    world.deferred.append(delivery)
            case "time":
                world.now += data.draw(st.sampled_from([1.0, 10.0, 400.0, 1000.0]))
                for step, run in sorted(world.attempts.items()):
                    if run.cut_at is not None and world.now >= run.cut_at:
                        world.end(step, None, deadline_passed=True)
            case "crash":
                world.crash(data.draw(st.booleans()))
    return world


def settle(world: World) -> sm.SagaState:
    """Let the saga run to its end: commits, attempts that succeed, time that passes."""
    for _ in range(500):
        if world.m.in_flight is not None:
            world.commit()
            continue
        if world.attempts:
            world.end(min(world.attempts), pl.Succeeded({"v": 2}))
            continue
        decided = core.advance(world.m, world.shape, world.now)
        world.execute(decided.commands)
        if world.stopped:
            break
        if decided.wake_at is not None and not world.attempts and world.m.in_flight is None:
            world.now = max(world.now, decided.wake_at)
    return sm.replay(world.shape, world.history)


@settings(max_examples=500, deadline=None)
@given(shape=shapes(), data=st.data())
def test_branches_end_terminal_or_parked_with_every_completed_step_compensated(
    shape: sm.SagaShape, data: st.DataObject
) -> None:
    world = drive(shape, data)
    final = settle(world)
    assert world.stopped and (final.is_terminal or final.is_parked), final.status
    assert final == world.m.saga
    if final.status is sm.SagaStatus.COMPLETED:
        assert all(s.status is sm.StepStatus.COMPLETED for s in final.steps)
    elif final.is_terminal:  # compensated, cancelled, timed out
        for index, step_state in enumerate(final.steps):
            if step_state.status is sm.StepStatus.COMPLETED and shape.steps[index].has_compensation:
                assert step_state.compensation in (
                    sm.CompensationStatus.COMPLETED,
                    sm.CompensationStatus.SKIPPED,
                ), index


@settings(max_examples=300, deadline=None)
@given(shape=shapes(), data=st.data())
def test_a_compensation_is_recorded_only_after_the_later_ones_of_its_branch_and_stages(
    shape: sm.SagaShape, data: st.DataObject
) -> None:
    world = drive(shape, data)
    settle(world)
    state = sm.initial_state(shape)
    for t in world.history:
        if isinstance(t, CompensationStarted) and t.attempt == 1:
            for j in before_in_compensation(shape, t.step):
                assert nothing_left(state, shape, j), (t.step, j)
        state = sm.evolve(state, t)
