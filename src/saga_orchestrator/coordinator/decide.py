"""The saga actor's decisions: no I/O, no trio, no clock (the time is an argument).

(Over 400 lines on purpose: every rule that decides a saga's fate reads in one place, and the
property tests drive this one module.)

A :class:`Machine` is a saga's durable state plus what its actor is doing about it: the append
in flight, the attempts running (one per step: several in a parallel group), an interruption
asked for, the requests waiting for an answer.
Only the two functions here change it (the actor reads it, never writes it); they are
deterministic, so a test drives them with any interleaving of inputs:

* :func:`take` — something happened: a message (cancel, an operator's action, an event delivered to
  the saga), an attempt of a step or compensation ended, the append in flight became durable.
  It answers at once what can be answered, cuts the running steps short when an interruption
  asks for it, or defers a delivery (it stays in the bounded mailbox until the append in flight
  is durable);
* :func:`advance` — what to do now: the next append (every transition that needs no I/O
  between them, coalesced into one), the next attempts to run, when to be woken, or stop.

Several attempts at once (a parallel group's branches): an attempt that ends is recorded while
the others run (its branch goes on), unless what it records would stop the saga going forward
(its step fails; a compensation gives up) or an interruption is pending: then the running
steps' attempts are cut short (compensations are let end), nothing but deliveries is recorded
until every attempt has ended, and then all their outcomes are recorded in one append,
successes first.

Every rule that decides what happens to a saga lives here, where the property tests reach it:
a cancel against a completion racing it, the saga deadline, a delivery that arrives after the
end, which transitions share an append. The actor (:mod:`.saga_actor`) only executes commands.
"""

from __future__ import annotations

from typing import Any

import attrs

from .copying import replace
from .plan import (
    Attempt,
    AwaitReply,
    Branches,
    Compensate,
    Execute,
    Halt,
    Record,
    Wait,
    compensation_outcome,
    no_reply,
    plan,
    step_outcome,
)
from .state import SagaShape, SagaState, SagaStatus, evolve
from .transitions import (
    CompensationSkipped,
    Interruption,
    OperatorRetried,
    ReplyReceived,
    SagaInterrupted,
    SagaResumed,
    SagaStarted,
    StepResolved,
    Transition,
)

__all__ = [
    "DEFERRED",
    "DURABLE",
    "FORWARD",
    "Answer",
    "Append",
    "AttemptEnded",
    "Cancel",
    "Cut",
    "Deliver",
    "Delivery",
    "Durable",
    "Machine",
    "Next",
    "Operate",
    "Refuse",
    "Run",
    "Running",
    "Stop",
    "advance",
    "creation",
    "take",
]

FORWARD = (SagaStatus.PENDING, SagaStatus.RUNNING)
"""The statuses of a saga that still goes forward (an interruption can stop it)."""

_CANCELLED = Interruption.CANCELLED.value
_DELIVER = "deliver an event to"
_DEADLINE = "the saga deadline passed"


# -- the machine -------------------------------------------------------------------------------


@attrs.define(slots=True)
class Running:
    """An attempt the actor runs: a step's action, or its compensation."""

    step: int
    attempt: int
    compensation: bool
    cut: bool = False
    """An interruption cut it short (a :class:`Cut` was sent)."""
    ended: bool = False
    outcome: Attempt | None = None
    """How it ended, once ``ended``; ``None`` when it was cut short before it ended."""


@attrs.frozen
class Delivery:
    """An event delivered to the saga, accepted, waiting to be recorded."""

    ref: Any
    event_id: str
    event_type: str
    data: dict[str, Any]


@attrs.define(slots=True, kw_only=True)
class Machine:
    """A saga's durable state and its actor's work in progress (changed only by :func:`take`
    and :func:`advance`)."""

    saga: SagaState
    """What the store holds: only durable transitions are folded in."""
    in_flight: Append | None = None
    """The append being made durable (one at a time)."""
    running: dict[int, Running] = attrs.field(factory=dict)
    """The attempts the actor runs, by step (ended ones stay until their outcome is
    recorded)."""
    halting: bool = False
    """The saga is to stop going forward (or park) once the running attempts have ended: the
    running steps were cut short, nothing but deliveries is recorded until then."""
    interrupt: tuple[Interruption, str] | None = None
    """An interruption asked for (cancel, the saga deadline), not recorded yet."""
    cancels: list[Any] = attrs.field(factory=list)
    """Cancel requests, answered once the cancellation is durable (or refused)."""
    deliveries: list[Delivery] = attrs.field(factory=list)
    """Deliveries accepted for the next append."""
    operator: tuple[Any, Transition] | None = None
    """An operator's action on the parked saga (who asked, and the transition it records), not
    recorded yet; answered with the saga's status once it is durable."""


# -- inputs ------------------------------------------------------------------------------------


@attrs.frozen
class Cancel:
    ref: Any
    reason: str


@attrs.frozen
class Operate:
    """An operator's action (``transition``: one of ``transitions.OPERATOR_TRANSITIONS``, made
    by :func:`~.operator.transition_for` against the saga as it is)."""

    ref: Any
    """``None``: asked of the coordinator, which spawned the actor for it."""
    transition: Transition


@attrs.frozen
class Deliver:
    ref: Any
    event_id: str
    event_type: str
    data: dict[str, Any]


@attrs.frozen
class AttemptEnded:
    step: int
    """The step whose attempt (of its action, or of its compensation) ended."""
    outcome: Attempt | None
    """``None``: it was cut short (by an interruption, or by the saga deadline)."""
    deadline_passed: bool = False
    """The saga deadline cut it short (the attempt's scope ends there too)."""


@attrs.frozen
class Durable:
    """The append in flight is committed."""


DURABLE = Durable()

Input = Cancel | Operate | Deliver | AttemptEnded | Durable


# -- commands ----------------------------------------------------------------------------------


@attrs.frozen
class Append:
    """Make ``transitions`` durable: the saga goes from ``before`` to ``after``."""

    transitions: tuple[Transition, ...]
    before: SagaState
    after: SagaState
    deliveries: tuple[Delivery, ...] = ()
    """The deliveries it records, answered ``accepted`` once it is durable."""
    operator: Any = None
    """Who asked for the operator's action it records: answered with the saga's status once it
    is durable."""


@attrs.frozen
class Run:
    """Run an attempt of a step's action (or compensation) within ``timeout`` seconds; a step's
    action is also cut short at wall-clock ``cut_at`` (the saga deadline)."""

    step: int
    attempt: int
    compensation: bool
    timeout: float
    cut_at: float | None = None


@attrs.frozen
class Cut:
    """Cancel the scope of a running step's attempt now (its outcome becomes unknown)."""

    step: int


@attrs.frozen
class Answer:
    ref: Any
    value: Any


@attrs.frozen
class Refuse:
    """Answer ``ref`` that the saga's status does not allow ``operation``."""

    ref: Any
    status: str
    operation: str


@attrs.frozen
class Stop:
    """The saga has ended or waits for an operator: the actor ends."""


Command = Append | Run | Cut | Answer | Refuse | Stop

DEFERRED = None
"""What :func:`take` answers for a message that must wait in the mailbox (it is not taken): a
delivery, or an operator's action, while an append is in flight."""

_NOTHING: tuple[Command, ...] = ()


@attrs.frozen
class Next:
    """What :func:`advance` decided: answers first, then one ``Append``, or ``Run`` s (one
    per attempt to start), or ``Stop``; and the wall-clock time to call it again at if nothing
    happens before."""

    commands: tuple[Command, ...]
    wake_at: float | None = None


# -- take --------------------------------------------------------------------------------------


def take(m: Machine, event: Input, *, deliveries_limit: int) -> tuple[Command, ...] | None:
    """Fold ``event`` into the machine; the commands to execute at once (cut, answer), or
    :data:`DEFERRED` for a delivery that must wait in the mailbox."""
    saga = m.saga
    match event:
        case Cancel(ref=ref, reason=reason):
            if saga.status is SagaStatus.COMPENSATING and saga.cause == _CANCELLED:
                return (Answer(ref, saga.status.value),)  # durable already
            if saga.status not in FORWARD:
                return (Refuse(ref, saga.status.value, "cancel"),)
            if m.interrupt is None:
                m.interrupt = (Interruption.CANCELLED, reason)
                m.cancels.append(ref)
                return _cut(m)
            if m.interrupt[0] is Interruption.CANCELLED:  # asked already: answered together
                m.cancels.append(ref)
                return _NOTHING
            return (Refuse(ref, saga.status.value, "cancel"),)  # it times out
        case Operate(ref=ref, transition=transition):
            if m.in_flight is not None and ref is not None:
                return DEFERRED  # the append in flight may be the one that parks the saga
            if not saga.is_parked or m.operator is not None:  # another action came first
                return (Refuse(ref, saga.status.value, _operation(transition)),)
            m.operator = (ref, transition)
            return _NOTHING
        case Deliver(ref=ref, event_id=event_id):
            if saga.is_terminal or saga.is_parked:
                return (Refuse(ref, saga.status.value, _DELIVER),)
            if any(reply.event_id == event_id for reply in saga.replies):
                return (Answer(ref, "duplicate"),)
            if m.in_flight is not None or len(m.deliveries) >= deliveries_limit:
                return DEFERRED
            m.deliveries.append(Delivery(ref, event_id, event.event_type, event.data))
            return _NOTHING
        case AttemptEnded(step=step, outcome=outcome, deadline_passed=deadline_passed):
            running = m.running.get(step)
            assert running is not None and not running.ended, "no attempt of it is running"
            running.ended = True
            running.outcome = outcome
            if deadline_passed and m.interrupt is None and saga.status in FORWARD:
                m.interrupt = (Interruption.TIMED_OUT, _DEADLINE)
            return _NOTHING
        case Durable():
            return _durable(m)
    raise TypeError(f"not an input of the saga machine: {event!r}")


_OPERATIONS = {
    OperatorRetried: "retry",
    StepResolved: "resolve",
    CompensationSkipped: "skip-compensation",
    SagaResumed: "resume",
}


def _operation(transition: Transition) -> str:
    return _OPERATIONS.get(type(transition), "act on")


def _cut(m: Machine) -> tuple[Command, ...]:
    """Cut the running steps short if an interruption is asked for."""
    if m.interrupt is None:
        return _NOTHING
    return _cut_forward(m)


def _cut_forward(m: Machine) -> tuple[Command, ...]:
    """Cut every running attempt of a step's action short (compensations are let end)."""
    cuts: list[Command] = []
    for running in m.running.values():
        if not (running.compensation or running.cut or running.ended):
            running.cut = True
            cuts.append(Cut(running.step))
    return tuple(cuts)


def _durable(m: Machine) -> tuple[Command, ...]:
    appended = m.in_flight
    assert appended is not None, "no append is in flight"
    saga = m.saga = appended.after
    m.in_flight = None
    if not appended.deliveries and not m.cancels and appended.operator is None:
        return _NOTHING
    answers: list[Command] = [Answer(d.ref, "accepted") for d in appended.deliveries]
    if appended.operator is not None:
        answers.append(Answer(appended.operator, saga.status.value))
    if m.cancels and saga.cause == _CANCELLED:
        answers += [Answer(ref, saga.status.value) for ref in m.cancels]
        m.cancels = []
    return tuple(answers)


# -- advance -----------------------------------------------------------------------------------


def advance(m: Machine, shape: SagaShape, now: float) -> Next:
    """What to do at wall-clock ``now``."""
    if m.in_flight is not None:
        return _WAIT_FOR_DURABLE
    saga = m.saga
    answers: list[Command] = []
    if m.cancels and saga.status not in FORWARD and saga.cause != _CANCELLED:
        # It completed, or failed, or timed out before the cancel could be recorded.
        answers += [Refuse(ref, saga.status.value, "cancel") for ref in m.cancels]
        m.cancels = []
    if m.deliveries and (saga.is_terminal or saga.is_parked):
        # They waited behind the saga's last append: nothing is recorded after it.
        answers += [Refuse(d.ref, saga.status.value, _DELIVER) for d in m.deliveries]
        m.deliveries = []
    if any(not r.ended for r in m.running.values()):
        return _while_running(m, shape, now, answers)
    return _record_or_act(m, shape, now, answers)


_WAIT_FOR_DURABLE = Next(_NOTHING)


def _while_running(m: Machine, shape: SagaShape, now: float, answers: list[Command]) -> Next:
    """Attempts run: an interruption, or an ended attempt that stops the saga going forward,
    cuts the running steps short and waits for them; else what ended is recorded beside them
    and its branch goes on."""
    saga = m.saga
    forward = any(not (r.compensation or r.ended) for r in m.running.values())
    if forward and m.interrupt is None and now >= saga.deadline_at and saga.status in FORWARD:
        m.interrupt = (Interruption.TIMED_OUT, _DEADLINE)
    if not m.halting and (m.interrupt is not None or _ended_stops(m, shape)):
        m.halting = True
    if not m.halting:
        return _record_or_act(m, shape, now, answers)
    answers += _cut_forward(m)
    if m.deliveries:
        transitions, after = _deliveries(saga, m.deliveries, now)
        append = Append(tuple(transitions), saga, after, tuple(m.deliveries))
        m.in_flight, m.deliveries = append, []
        answers.append(append)
    return Next(tuple(answers))


def _ended_stops(m: Machine, shape: SagaShape) -> bool:
    """Whether an ended attempt's outcome, recorded now, stops the saga going forward (or
    parks it)."""
    saga = m.saga
    return any(
        _stops(saga, _outcome(saga, shape, r, saga.updated_at))
        for r in m.running.values()
        if r.outcome is not None
    )


def _stops(state: SagaState, t: Transition) -> bool:
    """Whether ``t`` ends the saga's going forward, or its compensating (it parks)."""
    after = evolve(state, t).status
    return after is not state.status and after is not SagaStatus.RUNNING


def _outcome(state: SagaState, shape: SagaShape, r: Running, now: float) -> Transition:
    """The transition that records how the attempt ``r`` ended."""
    assert r.outcome is not None
    outcome = compensation_outcome if r.compensation else step_outcome
    return replace(outcome(state, shape, r.step, r.attempt, r.outcome), at=now)


def _deliveries(
    saga: SagaState, deliveries: list[Delivery], now: float
) -> tuple[list[Transition], SagaState]:
    """The ``ReplyReceived`` of each delivered event (an event id once), folded."""
    transitions: list[Transition] = []
    seen: set[str] = set()
    state = saga
    for d in deliveries:
        if d.event_id in seen:
            continue
        seen.add(d.event_id)
        t = ReplyReceived(event_id=d.event_id, event_type=d.event_type, data=d.data, at=now)
        transitions.append(t)
        state = evolve(state, t)
    return transitions, state


def _record_or_act(m: Machine, shape: SagaShape, now: float, answers: list[Command]) -> Next:
    saga = m.saga
    if m.deliveries:
        transitions, state = _deliveries(saga, m.deliveries, now)
    else:
        transitions, state = [], saga
    interrupt = m.interrupt
    ended = [r for r in m.running.values() if r.ended]
    live = len(ended) < len(m.running)
    if len(ended) > 1:  # successes first: a sibling that completed is compensated
        first = state
        ended.sort(
            key=lambda r: r.outcome is not None and _stops(first, _outcome(first, shape, r, now))
        )
    for r in ended:
        del m.running[r.step]
        if r.outcome is not None:
            t = _outcome(state, shape, r, now)
            transitions.append(t)
            state = evolve(state, t)
    operator_ref = None
    if m.operator is not None and not live:
        operator_ref, t = m.operator
        m.operator = None
        if state.is_parked:
            t = replace(t, at=now)
            transitions.append(t)
            state = evolve(state, t)
        else:  # the saga moved on since (a cancel, another action): nothing is recorded
            answers.append(Refuse(operator_ref, state.status.value, _operation(t)))
            operator_ref = None
    kept, kept_state = len(transitions), state
    while True:  # everything that follows without I/O, in one append
        if state.status in FORWARD and not live:
            if interrupt is None and now >= state.deadline_at:
                interrupt = (Interruption.TIMED_OUT, _DEADLINE)
            if interrupt is not None:
                t = SagaInterrupted(reason=interrupt[0], detail=interrupt[1], at=now)
                interrupt = None
                transitions.append(t)
                state = evolve(state, t)
                continue
        command = plan(state, shape)
        t = _due(state, shape, command, now)
        if t is None:
            break
        t = replace(t, at=now)
        if live and _stops(state, t):
            # it waits until the running attempts, cut short, have ended
            del transitions[kept:]
            state = kept_state
            m.halting = True
            answers += _cut_forward(m)
            command = None
            break
        transitions.append(t)
        state = evolve(state, t)
    m.interrupt = interrupt if state.status in FORWARD else None
    if not live:
        m.halting = False
    if transitions:
        append = Append(tuple(transitions), saga, state, tuple(m.deliveries), operator_ref)
        m.in_flight = append
        if m.deliveries:
            m.deliveries = []
        answers.append(append)
        return Next(tuple(answers))
    if command is None:
        return Next(tuple(answers))
    return _act(m, shape, state, command, answers)


def _due(state: SagaState, shape: SagaShape, command: Any, now: float) -> Transition | None:
    """The transition ``command`` records now, if any (a wait that is over, too)."""
    match command:
        case Record(transition=t):
            return t
        case Wait(until=until, then=then) if until <= now:
            return then
        case AwaitReply(step=step, until=until) if until <= now:
            return no_reply(state, shape, step)
        case Branches(commands=commands):
            return next(filter(None, (_due(state, shape, c, now) for c in commands)), None)
    return None


def _act(
    m: Machine, shape: SagaShape, state: SagaState, command: Any, answers: list[Command]
) -> Next:
    """Nothing to record: run the next attempts, wait, or stop."""
    deadline = state.deadline_at if state.status in FORWARD else None
    if type(command) is Halt:
        answers.append(Stop())
        return Next(tuple(answers))
    commands = command.commands if type(command) is Branches else (command,)
    wake_at = None
    for c in commands:
        match c:
            case Execute(step=step, attempt=attempt) if step not in m.running:
                m.running[step] = Running(step, attempt, False)
                answers.append(Run(step, attempt, False, shape.steps[step].timeout, deadline))
            case Compensate(step=step, attempt=attempt) if step not in m.running:
                m.running[step] = Running(step, attempt, True)
                answers.append(Run(step, attempt, True, shape.steps[step].timeout))
            case Wait(until=until) | AwaitReply(until=until):
                wake_at = until if wake_at is None else min(wake_at, until)
            case Execute() | Compensate():
                pass  # runs already
            case _:
                raise AssertionError(f"unexpected plan {c!r}")
    if wake_at is not None and deadline is not None:
        wake_at = min(wake_at, deadline)
    return Next(tuple(answers), wake_at)


# -- a new saga --------------------------------------------------------------------------------


def creation(shape: SagaShape, started: SagaStarted, empty: SagaState) -> Append:
    """The append that creates a saga: ``SagaStarted`` and what follows it without I/O (the
    first ``StepStarted``), so the saga's actor runs its first step as soon as it is durable."""
    now = started.at
    transitions: list[Transition] = [started]
    state = evolve(empty, started)
    command = plan(state, shape)
    while isinstance(command, Record) and state.status in FORWARD and now < state.deadline_at:
        transitions.append(replace(command.transition, at=now))
        state = evolve(state, transitions[-1])
        command = plan(state, shape)
    return Append(tuple(transitions), empty, state)
