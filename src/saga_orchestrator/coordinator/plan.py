"""What to do next in a saga's state, and what to record when an attempt ends: pure.

* :func:`plan` says what to do next in a state: record a transition, run a step or a
  compensation, wait until a time, wait for a reply, or halt; in a parallel group, what each
  branch needs at once (:class:`Branches`);
* :func:`step_outcome` / :func:`compensation_outcome` turn how an attempt of a step's action or
  compensation ended into the transition to record (retry or give up, with a deterministic
  backoff).

:mod:`.decide` builds the saga actor's decisions on these.
"""

from __future__ import annotations

import zlib
from typing import Any

import attrs

from .layout import Group
from .state import (
    END_STATUS,
    PARKED,
    TERMINAL,
    CompensationStatus,
    SagaShape,
    SagaState,
    SagaStatus,
    StepShape,
    StepStatus,
)
from .transitions import (
    CompensationAttemptFailed,
    CompensationCompleted,
    CompensationFailed,
    CompensationStarted,
    Outcome,
    SagaCompensated,
    SagaCompleted,
    StepAttemptFailed,
    StepAwaitingReply,
    StepCompleted,
    StepFailed,
    StepStarted,
    Transition,
)

# Commands: what the actor must do next.


@attrs.frozen
class Record:
    """Make this transition durable, then decide again."""

    transition: Transition


@attrs.frozen
class Execute:
    """Run a step's action (its ``StepStarted`` is durable)."""

    step: int
    attempt: int


@attrs.frozen
class Compensate:
    """Run a step's compensation (its ``CompensationStarted`` is durable)."""

    step: int
    attempt: int


@attrs.frozen
class Wait:
    """Wait until wall-clock ``until`` (a retry backoff), then record ``then``."""

    until: float
    then: Transition


@attrs.frozen
class AwaitReply:
    """Wait for a reply event until ``until`` (wall-clock), then decide again."""

    step: int
    attempt: int
    until: float


@attrs.frozen
class Halt:
    """Nothing to do: the saga has ended or waits for an operator."""


@attrs.frozen
class Branches:
    """The branches of a parallel group each need one of these at once (nothing to record)."""

    commands: tuple[Execute | Compensate | Wait | AwaitReply, ...]


Command = Record | Execute | Compensate | Wait | AwaitReply | Halt | Branches


# What happened when the actor ran a step or a compensation.


@attrs.frozen
class Succeeded:
    result: Any = None


@attrs.frozen
class Raised:
    error: str
    retryable: bool = True
    retry_after: float | None = None
    """The least delay before the next attempt that the failing service asked for."""
    error_type: str | None = None
    frames: tuple[str, ...] = ()
    """The last frames of the error's traceback, newest last."""
    effect_unknown: bool = False
    """The attempt may have had its effect (the error says so): if the step gives up on it,
    its outcome is unknown rather than failed."""


@attrs.frozen
class TimedOut:
    after: float


Attempt = Succeeded | Raised | TimedOut


def plan(state: SagaState, shape: SagaShape) -> Command:
    """What to do next in ``state``."""
    if state.status in TERMINAL or state.status in PARKED:
        return Halt()
    if state.status is SagaStatus.COMPENSATING:
        return _plan_compensation(state, shape)
    for stage in shape.stages:
        if not isinstance(stage, Group):
            command = _forward(state, shape, stage)
            if command is not None:
                return command
            continue
        # a group: each branch's first step not completed, all at once
        commands = []
        for branch in stage.branches:
            command = next(filter(None, (_forward(state, shape, i) for i in branch)), None)
            if isinstance(command, Record):
                return command  # recorded, then planned again: the branches start together
            if command is not None:
                commands.append(command)
        if commands:
            return Branches(tuple(commands))
    results = {shape.steps[i].name: s.result for i, s in enumerate(state.steps)}
    return Record(SagaCompleted(result=results))


def _forward(state: SagaState, shape: SagaShape, index: int) -> Command | None:
    """What a step needs going forward; ``None`` once it is completed."""
    step = state.steps[index]
    match step.status:
        case StepStatus.COMPLETED:
            return None
        case StepStatus.PENDING:
            return Record(StepStarted(step=index, attempt=1))
        case StepStatus.RUNNING:
            return Execute(index, step.attempt)
        case StepStatus.RETRY_WAIT:
            return Wait(step.retry_at, StepStarted(step=index, attempt=step.attempt + 1))
        case StepStatus.WAITING:
            return _plan_reply(state, shape, index)
        case _:  # FAILED/UNKNOWN move the saga to COMPENSATING
            raise AssertionError(f"step {index} is {step.status} while the saga runs")


def _plan_reply(state: SagaState, shape: SagaShape, index: int) -> Command:
    step, step_shape = state.steps[index], shape.steps[index]
    for reply in state.replies:
        if reply.consumed:
            continue
        if reply.event_type in step_shape.reply_success:
            result = {"accepted": step.accepted, "reply": reply.data}
            return Record(
                StepCompleted(
                    step=index, attempt=step.attempt, result=result, reply_event_id=reply.event_id
                )
            )
        if reply.event_type in step_shape.reply_failure:
            reason = reply.data.get("error") or reply.data.get("reason") or "no reason given"
            return Record(
                StepFailed(
                    step=index,
                    attempt=step.attempt,
                    error=f"{reply.event_type}: {reason}",
                    outcome=Outcome.FAILED,
                    reply_event_id=reply.event_id,
                )
            )
    assert step.waiting_until is not None
    return AwaitReply(index, step.attempt, step.waiting_until)


def no_reply(state: SagaState, shape: SagaShape, step: int) -> Transition:
    """The transition when a reply-driven step's wait ran out: its outcome is unknown."""
    return StepFailed(
        step=step,
        attempt=state.steps[step].attempt,
        error=f"no reply within {shape.steps[step].reply_timeout:g} s",
        outcome=Outcome.UNKNOWN,
    )


def _plan_compensation(state: SagaState, shape: SagaShape) -> Command:
    for index, step in enumerate(state.steps):
        if step.status in (StepStatus.RUNNING, StepStatus.WAITING):
            return Record(
                StepFailed(
                    step=index,
                    attempt=step.attempt,
                    error=f"interrupted: {state.error or state.cause}",
                    outcome=Outcome.UNKNOWN,
                )
            )
        if step.status is StepStatus.RETRY_WAIT:
            return Record(
                StepFailed(
                    step=index,
                    attempt=step.attempt,
                    error=step.error or "failed",
                    outcome=Outcome.FAILED,
                )
            )
    in_doubt: list[int] = []  # steps in doubt, the first met first
    for stage in reversed(shape.stages):
        branches = stage.branches if isinstance(stage, Group) else ((stage,),)
        commands = []
        for branch in branches:  # each branch in reverse order, the branches side by side
            command = _next_compensation(state, shape, branch, in_doubt)
            if isinstance(command, Record):
                return command
            if command is not None:
                commands.append(command)
        if len(commands) == 1 and not isinstance(stage, Group):
            return commands[0]
        if commands:
            return Branches(tuple(commands))
    if in_doubt:
        name = shape.steps[in_doubt[0]].name
        return Record(
            CompensationFailed(
                step=in_doubt[0],
                attempt=0,
                error=(
                    f"the outcome of step {name!r} is unknown and its compensation is not "
                    "declared safe for that; every other step is compensated. Check the "
                    f"downstream service, then resolve step {name!r} (applied: its "
                    "compensation runs; not_applied: nothing to undo), or skip its "
                    "compensation if you undid it by hand"
                ),
            )
        )
    return Record(SagaCompensated(status=END_STATUS[state.cause or "failed"].value))


def _next_compensation(
    state: SagaState, shape: SagaShape, branch: tuple[int, ...], in_doubt: list[int]
) -> Command | None:
    """The next compensation a branch needs, its steps in reverse order; ``None`` when it has
    nothing left to compensate but steps in doubt (added to ``in_doubt``)."""
    for index in reversed(branch):
        step, step_shape = state.steps[index], shape.steps[index]
        if not step_shape.has_compensation:
            continue
        if step.status not in (StepStatus.COMPLETED, StepStatus.UNKNOWN):
            continue
        if step.compensation in (CompensationStatus.COMPLETED, CompensationStatus.SKIPPED):
            continue
        if (
            step.status is StepStatus.UNKNOWN
            and not step_shape.compensation_safe_if_unknown
            and not step.compensation_forced
        ):
            # In doubt: the steps whose outcome is known are compensated first (the loop goes
            # on); the saga parks on this one only when they are done.
            in_doubt.append(index)
            continue
        match step.compensation:
            case CompensationStatus.NOT_RUN:
                return Record(
                    CompensationStarted(step=index, attempt=step.compensation_attempt + 1)
                )
            case CompensationStatus.RUNNING:
                return Compensate(index, step.compensation_attempt)
            case CompensationStatus.RETRY_WAIT:
                return Wait(
                    step.compensation_retry_at,
                    CompensationStarted(step=index, attempt=step.compensation_attempt + 1),
                )
            case CompensationStatus.FAILED:
                raise AssertionError("a failed compensation parks the saga")
    return None


def backoff(shape: StepShape, key: str, attempt: int, *, compensation: bool = False) -> float:
    """Delay before attempt ``attempt + 1``: exponential, capped, with deterministic jitter."""
    base = min(shape.max_backoff, shape.initial_backoff * shape.multiplier ** (attempt - 1))
    spread = zlib.crc32(f"{key}:{attempt}:{compensation}".encode()) / 0xFFFFFFFF  # in [0, 1]
    return max(0.0, base * (1 + shape.jitter * (2 * spread - 1)))


def _at_least(delay: float, retry_after: float | None) -> float:
    return delay if retry_after is None else max(delay, retry_after)


def step_outcome(
    state: SagaState, shape: SagaShape, step: int, attempt: int, outcome: Attempt
) -> Transition:
    """The transition that records how an attempt of a step's action ended."""
    step_shape = shape.steps[step]
    match outcome:
        case Succeeded() if step_shape.awaits_reply:
            return StepAwaitingReply(
                step=step,
                attempt=attempt,
                accepted=outcome.result,
                timeout=step_shape.reply_timeout,
            )
        case Succeeded():
            return StepCompleted(step=step, attempt=attempt, result=outcome.result)
        case TimedOut():
            return StepFailed(
                step=step,
                attempt=attempt,
                error=f"timed out after {outcome.after:g} s",
                outcome=Outcome.UNKNOWN,
            )
        case Raised():
            if outcome.retryable and attempt < step_shape.max_attempts:
                delay = _at_least(
                    backoff(step_shape, f"{state.saga_id}:{step}", attempt), outcome.retry_after
                )
                return StepAttemptFailed(
                    step=step,
                    attempt=attempt,
                    error=outcome.error,
                    retry_in=delay,
                    error_type=outcome.error_type,
                    frames=outcome.frames,
                )
            return StepFailed(
                step=step,
                attempt=attempt,
                error=outcome.error,
                outcome=Outcome.UNKNOWN if outcome.effect_unknown else Outcome.FAILED,
                error_type=outcome.error_type,
                frames=outcome.frames,
            )
    raise TypeError(f"not an attempt outcome: {outcome!r}")


def compensation_outcome(
    state: SagaState, shape: SagaShape, step: int, attempt: int, outcome: Attempt
) -> Transition:
    """The transition that records how an attempt of a compensation ended (timeouts retry)."""
    step_shape = shape.steps[step]
    match outcome:
        case Succeeded():
            return CompensationCompleted(step=step, attempt=attempt)
        case TimedOut() | Raised():
            error = (
                outcome.error
                if isinstance(outcome, Raised)
                else (f"timed out after {outcome.after:g} s")
            )
            raised = outcome if isinstance(outcome, Raised) else None
            details: dict[str, Any] = (
                {} if raised is None else {"error_type": raised.error_type, "frames": raised.frames}
            )
            if attempt < step_shape.compensation_max_attempts:
                delay = backoff(step_shape, f"{state.saga_id}:{step}", attempt, compensation=True)
                if raised is not None:
                    delay = _at_least(delay, raised.retry_after)
                return CompensationAttemptFailed(
                    step=step, attempt=attempt, error=error, retry_in=delay, **details
                )
            return CompensationFailed(step=step, attempt=attempt, error=error, **details)
    raise TypeError(f"not an attempt outcome: {outcome!r}")
