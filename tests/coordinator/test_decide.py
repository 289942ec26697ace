"""The saga actor's decision core (``coordinator.decide``): its rules as examples, then as
properties over any interleaving of messages, attempt outcomes, commits, time and crashes."""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from saga_orchestrator.coordinator import decide as core
from saga_orchestrator.coordinator import plan as pl
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.transitions import (
    Interruption,
    OperatorRetried,
    ReplyReceived,
    SagaCompensated,
    SagaCompleted,
    SagaInterrupted,
    SagaStarted,
    Transition,
)

DEADLINE = 1_000.0
LIMIT = 3


def shape_of(*steps: sm.StepShape) -> sm.SagaShape:
    return sm.SagaShape(steps=steps)


def step(name: str, **changes: Any) -> sm.StepShape:
    return sm.StepShape(name=name, has_compensation=True, max_attempts=2, **changes)


def started_machine(shape: sm.SagaShape) -> tuple[core.Machine, list[Transition]]:
    """A machine for a saga whose creation (``SagaStarted`` + first ``StepStarted``) is
    durable, and that history."""
    started = SagaStarted(
        saga_id="s", saga_type="t", saga_version=1, input={}, deadline_at=DEADLINE, at=0.0
    )
    creation = core.creation(shape, started, sm.initial_state(shape))
    return core.Machine(saga=creation.after), list(creation.transitions)


def only(commands: tuple[core.Command, ...] | None, kind: type) -> Any:
    assert commands is not None
    (command,) = [c for c in commands if isinstance(c, kind)]
    return command


def commit(m: core.Machine, history: list[Transition]) -> tuple[core.Command, ...]:
    assert m.in_flight is not None
    history.extend(m.in_flight.transitions)
    answers = core.take(m, core.DURABLE, deliveries_limit=LIMIT)
    assert answers is not None
    return answers


# -- the rules, as examples ----------------------------------------------------------------------


def test_a_cancel_racing_the_last_append_is_refused_and_the_saga_completes() -> None:
    shape = shape_of(step("a"))
    m, history = started_machine(shape)
    run = only(core.advance(m, shape, 1.0).commands, core.Run)
    core.take(m, core.AttemptEnded(0, pl.Succeeded("done")), deliveries_limit=LIMIT)
    append = only(core.advance(m, shape, 2.0).commands, core.Append)
    assert isinstance(append.transitions[-1], SagaCompleted)
    assert () == core.take(m, core.Cancel("c", "stop"), deliveries_limit=LIMIT)  # waits
    commit(m, history)
    refused = only(core.advance(m, shape, 3.0).commands, core.Refuse)
    assert ("c", "completed", "cancel") == (refused.ref, refused.status, refused.operation)
    assert 0 == run.step


def test_a_cancel_cuts_the_running_step_and_is_answered_once_its_record_is_durable() -> None:
    shape = shape_of(sm.StepShape(name="a"), step("b"))  # "a" has nothing to undo
    m, history = started_machine(shape)
    only(core.advance(m, shape, 1.0).commands, core.Run)
    cut = core.take(m, core.Cancel("c", "stop"), deliveries_limit=LIMIT)
    assert (core.Cut(0),) == cut
    assert () == core.take(m, core.AttemptEnded(0, None), deliveries_limit=LIMIT)  # cut short
    append = only(core.advance(m, shape, 2.0).commands, core.Append)
    assert (
        SagaInterrupted(reason=Interruption.CANCELLED, detail="stop", at=2.0)
        == (append.transitions[0])
    )
    answered = commit(m, history)
    assert (core.Answer("c", "cancelled"),) == answered  # nothing completed: nothing to undo


def test_the_saga_deadline_cuts_the_running_step_and_times_the_saga_out() -> None:
    shape = shape_of(step("a", compensation_safe_if_unknown=True))
    m, _ = started_machine(shape)
    run = only(core.advance(m, shape, 1.0).commands, core.Run)
    assert DEADLINE == run.cut_at  # the attempt's own scope ends at the saga deadline
    core.take(m, core.AttemptEnded(0, None, deadline_passed=True), deliveries_limit=LIMIT)
    append = only(core.advance(m, shape, DEADLINE).commands, core.Append)
    assert Interruption.TIMED_OUT == append.transitions[0].reason
    # its outcome is unknown, and its compensation is safe for that: it runs next
    assert ["SagaInterrupted", "StepFailed", "CompensationStarted"] == [
        type(t).__name__ for t in append.transitions
    ]
    assert ("compensating", "timed_out") == (append.after.status.value, append.after.cause)


def test_a_delivery_waits_in_the_mailbox_while_an_append_is_in_flight() -> None:
    shape = shape_of(step("a", reply_success=("ok",)))
    m, history = started_machine(shape)
    only(core.advance(m, shape, 1.0).commands, core.Run)
    core.take(m, core.AttemptEnded(0, pl.Succeeded("sent")), deliveries_limit=LIMIT)
    only(core.advance(m, shape, 2.0).commands, core.Append)  # StepAwaitingReply
    deliver = core.Deliver("d", "e1", "ok", {"n": 1})
    assert core.DEFERRED is core.take(m, deliver, deliveries_limit=LIMIT)
    commit(m, history)
    assert () == core.take(m, deliver, deliveries_limit=LIMIT)  # handed again: taken
    append = only(core.advance(m, shape, 3.0).commands, core.Append)
    # the reply, the step it completes and the saga's end go in one append
    assert ["ReplyReceived", "StepCompleted", "SagaCompleted"] == [
        type(t).__name__ for t in append.transitions
    ]
    assert (core.Answer("d", "accepted"),) == commit(m, history)
    duplicate = core.take(m, deliver, deliveries_limit=LIMIT)
    assert (core.Refuse("d", "completed", "deliver an event to"),) == duplicate


def test_deliveries_beyond_the_limit_wait_in_the_mailbox() -> None:
    shape = shape_of(step("a", reply_success=("ok",)))
    m, _ = started_machine(shape)
    for n in range(LIMIT):
        assert () == core.take(m, core.Deliver(n, f"e{n}", "other", {}), deliveries_limit=LIMIT)
    extra = core.Deliver("x", "ex", "other", {})
    assert core.DEFERRED is core.take(m, extra, deliveries_limit=LIMIT)


def test_a_retry_waits_for_its_backoff_in_wall_clock_time_across_restarts() -> None:
    shape = shape_of(step("a", initial_backoff=10.0, jitter=0.0))
    m, history = started_machine(shape)
    only(core.advance(m, shape, 1.0).commands, core.Run)
    core.take(m, core.AttemptEnded(0, pl.Raised("boom")), deliveries_limit=LIMIT)
    only(core.advance(m, shape, 1.0).commands, core.Append)
    commit(m, history)
    restarted = core.Machine(saga=sm.replay(shape, history))  # a crash: rebuilt from history
    assert 11.0 == core.advance(restarted, shape, 5.0).wake_at  # failed at 1.0, +10 s
    again = only(core.advance(restarted, shape, 11.0).commands, core.Append)
    assert (2,) == tuple(t.attempt for t in again.transitions)


# -- properties ------------------------------------------------------------------------------


step_shapes = st.builds(
    sm.StepShape,
    name=st.sampled_from(["a", "b", "c"]),
    has_compensation=st.booleans(),
    compensation_safe_if_unknown=st.booleans(),
    max_attempts=st.integers(1, 2),
    compensation_max_attempts=st.integers(1, 2),
    initial_backoff=st.sampled_from([0.5, 5.0]),
    reply_success=st.sampled_from([(), ("ok",)]),
    reply_failure=st.just(("bad",)),
    reply_timeout=st.sampled_from([3.0, 50.0]),
    timeout=st.just(30.0),
)
shapes = st.lists(step_shapes, min_size=1, max_size=4).map(
    lambda steps: sm.SagaShape(
        steps=tuple(attrs.evolve(s, name=f"{s.name}{i}") for i, s in enumerate(steps))
    )
)
ACTIONS = [
    "advance",
    "advance",
    "advance",
    "durable",
    "durable",
    "end",
    "end",
    "cancel",
    "deliver",
    "time",
    "crash",
    "retry",
]
_TERMINAL_TRANSITIONS = (SagaCompleted, SagaCompensated)


@attrs.define
class World:
    """The actor around the machine, its store and its clock, for one drawn run."""

    shape: sm.SagaShape
    m: core.Machine
    history: list[Transition]
    now: float = 1.0
    attempt: core.Run | None = None
    cut: bool = False
    deferred: list[core.Deliver] = attrs.field(factory=list)
    answers: dict[Any, list[tuple[str, Any]]] = attrs.field(factory=dict)
    dropped: set[Any] = attrs.field(factory=set)
    accepted_cancels: list[Any] = attrs.field(factory=list)
    refs: int = 0
    stopped: bool = False

    def new_ref(self, kind: str) -> tuple[str, int]:
        self.refs += 1
        return (kind, self.refs)

    def execute(self, commands: tuple[core.Command, ...] | None) -> None:
        for command in commands or ():
            match command:
                case core.Answer(ref=ref, value=value) if ref is not None:
                    self.answers.setdefault(ref, []).append(("answer", value))
                    if ref[0] == "cancel":
                        # answered only once the cancellation is durable
                        assert any(
                            isinstance(t, SagaInterrupted) and t.reason is Interruption.CANCELLED
                            for t in self.history
                        )
                        self.accepted_cancels.append(ref)
                    if ref[0] == "deliver" and value == "accepted":
                        assert ref in self.delivered_ids_by_ref
                        event_id = self.delivered_ids_by_ref[ref]
                        assert any(
                            isinstance(t, ReplyReceived) and t.event_id == event_id
                            for t in self.history
                        )
                case core.Refuse(ref=ref, status=status) if ref is not None:
                    self.answers.setdefault(ref, []).append(("refuse", status))
                case core.Cut():
                    assert self.attempt is not None and not self.attempt.compensation
                    self.cut = True
                case core.Append() as append:
                    assert append.before == self.m.saga or append.before is self.m.saga
                    assert append.before.version == len(self.history)
                case core.Run() as run:
                    self.check_write_ahead(run)
                    assert self.attempt is None
                    self.attempt, self.cut = run, False
                case core.Stop():
                    self.stopped = True

    delivered_ids_by_ref: dict[Any, str] = attrs.field(factory=dict)

    def check_write_ahead(self, run: core.Run) -> None:
        """An attempt runs only once the transition announcing it is durable."""
        durable = sm.replay(self.shape, self.history)
        step = durable.steps[run.step]
        if run.compensation:
            assert sm.CompensationStatus.RUNNING is step.compensation
            assert run.attempt == step.compensation_attempt
        else:
            assert sm.StepStatus.RUNNING is step.status
            assert run.attempt == step.attempt

    def take(self, event: core.Input) -> tuple[core.Command, ...] | None:
        commands = core.take(self.m, event, deliveries_limit=LIMIT)
        self.execute(commands)
        return commands


def drive(shape: sm.SagaShape, data: st.DataObject) -> World:
    m, history = started_machine(shape)
    world = World(shape, m, history)
    for _ in range(300):
        action = data.draw(st.sampled_from(ACTIONS))
        match action:
            case "advance":
                decided = core.advance(world.m, shape, world.now)
                world.execute(decided.commands)
                if world.stopped and not world.deferred:
                    break
                world.stopped = False  # a new message may come (e.g. a retry)
            case "durable" if world.m.in_flight is not None:
                world.history.extend(world.m.in_flight.transitions)
                world.take(core.DURABLE)
                waiting, world.deferred = world.deferred, []
                for delivery in waiting:  # the mailbox hands them again, in order
                    if world.take(delivery) is core.DEFERRED:
                        world.deferred.append(delivery)
            case "end" if world.attempt is not None:
                run, world.attempt = world.attempt, None
                if world.cut and data.draw(st.booleans()):
                    outcome: pl.Attempt | None = None
                elif run.compensation:
                    outcome = data.draw(st.sampled_from([pl.Succeeded(), pl.Raised("undo")]))
                else:
                    outcome = data.draw(
                        st.sampled_from([pl.Succeeded({"v": 1}), pl.Raised("x"), pl.TimedOut(30.0)])
                    )
                world.take(core.AttemptEnded(run.step, outcome))
            case "cancel":
                world.take(core.Cancel(world.new_ref("cancel"), "stop"))
            case "deliver":
                ref = world.new_ref("deliver")
                event_id = data.draw(st.sampled_from(["e1", "e2", "e3"]))
                event_type = data.draw(st.sampled_from(["ok", "bad", "other"]))
                world.delivered_ids_by_ref[ref] = event_id
                delivery = core.Deliver(ref, event_id, event_type, {})
                if world.deferred or world.take(delivery) is core.DEFERRED:
                    world.deferred.append(delivery)
            case "time":
                world.now += data.draw(st.sampled_from([1.0, 10.0, 400.0]))
                if world.attempt is not None and not world.attempt.compensation:
                    cut_at = world.attempt.cut_at
                    if cut_at is not None and world.now >= cut_at:  # its scope ends there
                        step, world.attempt = world.attempt.step, None
                        world.take(core.AttemptEnded(step, None, deadline_passed=True))
            case "crash":
                drop_held(world)
                if world.m.in_flight is not None and data.draw(st.booleans()):
                    world.history.extend(world.m.in_flight.transitions)  # it did commit
                world.m = core.Machine(saga=sm.replay(shape, world.history))
                world.attempt = None
                world.stopped = False
            case "retry":
                world.take(core.Operate(world.new_ref("retry"), OperatorRetried()))
    return world


def drop_held(world: World) -> None:
    """A crash: the requests the machine held get no answer (their askers see NoReply)."""
    m = world.m
    held = [*m.cancels, *(d.ref for d in m.deliveries)]
    if m.in_flight is not None:
        held += [d.ref for d in m.in_flight.deliveries]
    world.dropped.update(held)


@settings(max_examples=600, deadline=None)
@given(shape=shapes, data=st.data())
def test_a_cancel_answered_never_ends_completed(shape: sm.SagaShape, data: st.DataObject) -> None:
    world = drive(shape, data)
    final = sm.replay(shape, world.history)
    if world.accepted_cancels:
        assert sm.SagaStatus.COMPLETED is not final.status
        assert final.cause == Interruption.CANCELLED.value


@settings(max_examples=600, deadline=None)
@given(shape=shapes, data=st.data())
def test_nothing_is_recorded_after_a_terminal_transition(
    shape: sm.SagaShape, data: st.DataObject
) -> None:
    world = drive(shape, data)
    ends = [i for i, t in enumerate(world.history) if isinstance(t, _TERMINAL_TRANSITIONS)]
    assert ends in ([], [len(world.history) - 1])
    # and every transition is one version of the stream
    state = sm.initial_state(shape)
    for t in world.history:
        state = sm.evolve(state, t)
    assert len(world.history) == state.version


@settings(max_examples=600, deadline=None)
@given(shape=shapes, data=st.data())
def test_every_request_is_answered_at_most_once_and_none_is_forgotten(
    shape: sm.SagaShape, data: st.DataObject
) -> None:
    world = drive(shape, data)
    for ref, answers in world.answers.items():
        assert len(answers) == 1, (ref, answers)
    if world.stopped:
        # once the actor stops, every request it took was answered or dropped by a crash
        taken = {ref for ref in world.delivered_ids_by_ref} | {
            ref for ref in world.answers if ref[0] in ("cancel", "retry")
        }
        waiting = {d.ref for d in world.deferred}
        assert taken - waiting <= set(world.answers) | world.dropped


@settings(max_examples=400, deadline=None)
@given(shape=shapes, data=st.data())
def test_compensations_run_only_for_steps_whose_effect_may_exist(
    shape: sm.SagaShape, data: st.DataObject
) -> None:
    world = drive(shape, data)
    final = sm.replay(shape, world.history)
    for index, step_state in enumerate(final.steps):
        if step_state.compensation is not sm.CompensationStatus.NOT_RUN:
            assert step_state.status in (sm.StepStatus.COMPLETED, sm.StepStatus.UNKNOWN), index
