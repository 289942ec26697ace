"""The saga state machine, as pure functions: no I/O, no trio, no clock.

* :func:`evolve` folds one durable transition into the state (replaying a history is a fold);
* :func:`plan` says what to do next in a state: record a transition, run a step or a
  compensation, wait, or halt;
* :func:`step_outcome` / :func:`compensation_outcome` turn what happened when the actor ran a
  step into the transition to record (retry or give up, with a deterministic backoff);
* :func:`decide` is ``evolve`` then ``plan``: (state, event) -> (state, command).

The saga actor is the loop around these that does the I/O.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Sequence
from typing import Any

import attrs

from .copying import replace as _replace
from .transitions import (
    CompensationAttemptFailed,
    CompensationCompleted,
    CompensationFailed,
    CompensationStarted,
    Interruption,
    OperatorRetried,
    Outcome,
    ReplyReceived,
    SagaCompensated,
    SagaCompleted,
    SagaInterrupted,
    SagaParked,
    SagaStarted,
    StepAttemptFailed,
    StepAwaitingReply,
    StepCompleted,
    StepFailed,
    StepStarted,
    Transition,
)


class SagaStatus(enum.StrEnum):
    """A saga's status, as the API shows it."""

    PENDING = "pending"
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    """A step failed; the completed steps were compensated."""
    CANCELLED = "cancelled"
    """Cancelled; the completed steps were compensated."""
    TIMED_OUT = "timed_out"
    """The saga deadline passed; the completed steps were compensated."""
    COMPENSATION_FAILED = "compensation_failed"
    """A compensation failed after its retries, or could not safely run: parked for an operator."""
    FAILED = "failed"
    """The saga's actor crashed too often: parked for an operator, the error recorded."""


TERMINAL = frozenset(
    {SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.CANCELLED, SagaStatus.TIMED_OUT}
)
PARKED = frozenset({SagaStatus.COMPENSATION_FAILED, SagaStatus.FAILED})


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    WAITING = "waiting"
    """A reply-driven step sent its command and waits for the reply."""
    COMPLETED = "completed"
    FAILED = "failed"
    UNKNOWN = "unknown"
    """Interrupted mid-flight: its effect may or may not exist."""


class CompensationStatus(enum.StrEnum):
    NOT_RUN = "not_run"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    COMPLETED = "completed"
    FAILED = "failed"


_END_STATUS = {
    "failed": SagaStatus.COMPENSATED,
    Interruption.CANCELLED.value: SagaStatus.CANCELLED,
    Interruption.TIMED_OUT.value: SagaStatus.TIMED_OUT,
}


@attrs.frozen(kw_only=True)
class StepShape:
    """What the state machine needs to know of a step (no functions, no I/O)."""

    name: str
    has_compensation: bool = False
    compensation_safe_if_unknown: bool = False
    max_attempts: int = 3
    initial_backoff: float = 1.0
    multiplier: float = 2.0
    max_backoff: float = 60.0
    jitter: float = 0.2
    compensation_max_attempts: int = 5
    reply_success: tuple[str, ...] = ()
    """Event types that complete a reply-driven step (empty: not reply-driven)."""
    reply_failure: tuple[str, ...] = ()
    reply_timeout: float = 300.0

    @property
    def awaits_reply(self) -> bool:
        return bool(self.reply_success)


@attrs.frozen(kw_only=True)
class Reply:
    """An event addressed to the saga."""

    event_id: str
    event_type: str
    data: dict[str, Any]
    consumed: bool = False


@attrs.frozen(kw_only=True)
class SagaShape:
    steps: tuple[StepShape, ...]


@attrs.frozen(kw_only=True)
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    result: Any = None
    error: str | None = None
    retry_in: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    compensation: CompensationStatus = CompensationStatus.NOT_RUN
    compensation_attempt: int = 0
    compensation_error: str | None = None
    compensation_retry_in: float = 0.0
    compensation_forced: bool = False
    """An operator retried the saga: run this compensation even though the outcome is unknown."""
    accepted: Any = None
    """What a reply-driven step's action returned."""
    waiting_until: float | None = None
    """Wall-clock time a reply-driven step stops waiting."""


@attrs.frozen(kw_only=True)
class SagaState:
    saga_id: str = ""
    saga_type: str = ""
    saga_version: int = 0
    input: dict[str, Any] = attrs.field(factory=dict)
    deadline_at: float = 0.0
    idempotency_key: str | None = None
    correlation_id: str | None = None
    status: SagaStatus = SagaStatus.PENDING
    steps: tuple[StepState, ...] = ()
    version: int = 0
    """How many transitions the state holds: the stream version."""
    cause: str | None = None
    """Why it compensates: ``failed``, ``cancelled`` or ``timed_out``."""
    error: str | None = None
    result: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    parked_from: SagaStatus | None = None
    failed_step: int | None = None
    """The step whose failure started the compensation."""
    replies: tuple[Reply, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_parked(self) -> bool:
        return self.status in PARKED


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
    """Sleep ``delay`` seconds (a retry backoff), then record ``then``."""

    delay: float
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


Command = Record | Execute | Compensate | Wait | AwaitReply | Halt


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


@attrs.frozen
class TimedOut:
    after: float


Attempt = Succeeded | Raised | TimedOut


def initial_state(shape: SagaShape) -> SagaState:
    """The state before the first transition."""
    return SagaState(steps=(_NOT_STARTED,) * len(shape.steps))


_NOT_STARTED = StepState()
"""Every step's state before it starts (frozen, so one object serves them all)."""


def replay(shape: SagaShape, history: Sequence[Transition]) -> SagaState:
    """The state after a saga's whole history."""
    state = initial_state(shape)
    for transition in history:
        state = evolve(state, transition)
    return state


def _set_step(state: SagaState, index: int, **changes: Any) -> tuple[StepState, ...]:
    steps = list(state.steps)
    steps[index] = _replace(steps[index], **changes)
    return tuple(steps)


def evolve(state: SagaState, t: Transition) -> SagaState:
    """The state after transition ``t``."""
    v, at = state.version + 1, t.at  # every transition: the version and the time, in one copy
    match t:
        case SagaStarted():
            return _replace(
                state,
                version=v,
                updated_at=at,
                saga_id=t.saga_id,
                saga_type=t.saga_type,
                saga_version=t.saga_version,
                input=t.input,
                deadline_at=t.deadline_at,
                idempotency_key=t.idempotency_key,
                correlation_id=t.correlation_id,
                status=SagaStatus.PENDING,
                created_at=t.at,
            )
        case StepStarted():
            first = state.steps[t.step].started_at
            steps = _set_step(
                state,
                t.step,
                status=StepStatus.RUNNING,
                attempt=t.attempt,
                started_at=t.at if first is None else first,
            )
            return _replace(state, version=v, updated_at=at, steps=steps, status=SagaStatus.RUNNING)
        case StepCompleted():
            steps = _set_step(
                state,
                t.step,
                status=StepStatus.COMPLETED,
                result=t.result,
                finished_at=t.at,
                error=None,
            )
            return _replace(
                state,
                version=v,
                updated_at=at,
                steps=steps,
                replies=_consume(state, t.reply_event_id),
            )
        case StepAwaitingReply():
            steps = _set_step(
                state,
                t.step,
                status=StepStatus.WAITING,
                accepted=t.accepted,
                waiting_until=t.at + t.timeout,
            )
            return _replace(state, version=v, updated_at=at, steps=steps)
        case ReplyReceived():
            if any(r.event_id == t.event_id for r in state.replies):
                return _replace(state, version=v, updated_at=at)
            reply = Reply(event_id=t.event_id, event_type=t.event_type, data=t.data)
            return _replace(state, version=v, updated_at=at, replies=(*state.replies, reply))
        case StepAttemptFailed():
            steps = _set_step(
                state, t.step, status=StepStatus.RETRY_WAIT, error=t.error, retry_in=t.retry_in
            )
            return _replace(state, version=v, updated_at=at, steps=steps)
        case StepFailed():
            status = StepStatus.UNKNOWN if t.outcome is Outcome.UNKNOWN else StepStatus.FAILED
            steps = _set_step(state, t.step, status=status, error=t.error, finished_at=t.at)
            replies = _consume(state, t.reply_event_id)
            if state.status is SagaStatus.COMPENSATING:
                return _replace(state, version=v, updated_at=at, steps=steps, replies=replies)
            return _replace(
                state,
                version=v,
                updated_at=at,
                steps=steps,
                replies=replies,
                status=SagaStatus.COMPENSATING,
                cause="failed",
                error=t.error,
                failed_step=t.step,
            )
        case SagaInterrupted():
            detail = t.detail or t.reason.value
            return _replace(
                state,
                version=v,
                updated_at=at,
                status=SagaStatus.COMPENSATING,
                cause=t.reason.value,
                error=detail,
            )
        case CompensationStarted():
            steps = _set_step(
                state,
                t.step,
                compensation=CompensationStatus.RUNNING,
                compensation_attempt=t.attempt,
            )
            return _replace(state, version=v, updated_at=at, steps=steps)
        case CompensationCompleted():
            steps = _set_step(
                state, t.step, compensation=CompensationStatus.COMPLETED, compensation_error=None
            )
            return _replace(state, version=v, updated_at=at, steps=steps)
        case CompensationAttemptFailed():
            steps = _set_step(
                state,
                t.step,
                compensation=CompensationStatus.RETRY_WAIT,
                compensation_error=t.error,
                compensation_retry_in=t.retry_in,
            )
            return _replace(state, version=v, updated_at=at, steps=steps)
        case CompensationFailed():
            steps = _set_step(
                state,
                t.step,
                compensation=CompensationStatus.FAILED,
                compensation_error=t.error,
                compensation_attempt=t.attempt,
            )
            return _replace(
                state,
                version=v,
                updated_at=at,
                steps=steps,
                status=SagaStatus.COMPENSATION_FAILED,
                error=t.error,
            )
        case SagaCompleted():
            return _replace(
                state, version=v, updated_at=at, status=SagaStatus.COMPLETED, result=t.result
            )
        case SagaCompensated():
            return _replace(state, version=v, updated_at=at, status=SagaStatus(t.status))
        case SagaParked():
            return _replace(
                state,
                version=v,
                updated_at=at,
                status=SagaStatus.FAILED,
                parked_from=state.status,
                error=t.error,
            )
        case OperatorRetried():
            return _operator_retried(_replace(state, version=v, updated_at=at))
    raise TypeError(f"not a saga transition: {t!r}")


def _consume(state: SagaState, event_id: str | None) -> tuple[Reply, ...]:
    if event_id is None:
        return state.replies
    return tuple(_replace(r, consumed=True) if r.event_id == event_id else r for r in state.replies)


def _operator_retried(state: SagaState) -> SagaState:
    if state.status is SagaStatus.FAILED:
        return attrs.evolve(
            state, status=state.parked_from or SagaStatus.RUNNING, parked_from=None, error=None
        )
    if state.status is not SagaStatus.COMPENSATION_FAILED:
        return state
    steps = tuple(
        attrs.evolve(
            s,
            compensation=CompensationStatus.NOT_RUN,
            compensation_attempt=0,
            compensation_forced=True,
        )
        if s.compensation is CompensationStatus.FAILED
        else s
        for s in state.steps
    )
    return attrs.evolve(state, steps=steps, status=SagaStatus.COMPENSATING)


def plan(state: SagaState, shape: SagaShape) -> Command:
    """What to do next in ``state``."""
    if state.status in TERMINAL or state.status in PARKED:
        return Halt()
    if state.status is SagaStatus.COMPENSATING:
        return _plan_compensation(state, shape)
    for index, step in enumerate(state.steps):
        match step.status:
            case StepStatus.COMPLETED:
                continue
            case StepStatus.PENDING:
                return Record(StepStarted(step=index, attempt=1))
            case StepStatus.RUNNING:
                return Execute(index, step.attempt)
            case StepStatus.RETRY_WAIT:
                return Wait(step.retry_in, StepStarted(step=index, attempt=step.attempt + 1))
            case StepStatus.WAITING:
                return _plan_reply(state, shape, index)
            case _:  # FAILED/UNKNOWN move the saga to COMPENSATING
                raise AssertionError(f"step {index} is {step.status} while the saga runs")
    results = {shape.steps[i].name: s.result for i, s in enumerate(state.steps)}
    return Record(SagaCompleted(result=results))


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
    for index in reversed(range(len(state.steps))):
        step, step_shape = state.steps[index], shape.steps[index]
        if not step_shape.has_compensation:
            continue
        if step.status not in (StepStatus.COMPLETED, StepStatus.UNKNOWN):
            continue
        if (
            step.status is StepStatus.UNKNOWN
            and not step_shape.compensation_safe_if_unknown
            and not step.compensation_forced
        ):
            return Record(
                CompensationFailed(
                    step=index,
                    attempt=0,
                    error=(
                        f"the outcome of step {step_shape.name!r} is unknown and its compensation "
                        "is not declared safe for that: check the downstream service, then retry "
                        "the saga to run the compensation"
                    ),
                )
            )
        match step.compensation:
            case CompensationStatus.COMPLETED:
                continue
            case CompensationStatus.NOT_RUN:
                return Record(
                    CompensationStarted(step=index, attempt=step.compensation_attempt + 1)
                )
            case CompensationStatus.RUNNING:
                return Compensate(index, step.compensation_attempt)
            case CompensationStatus.RETRY_WAIT:
                return Wait(
                    step.compensation_retry_in,
                    CompensationStarted(step=index, attempt=step.compensation_attempt + 1),
                )
            case CompensationStatus.FAILED:
                raise AssertionError("a failed compensation parks the saga")
    return Record(SagaCompensated(status=_END_STATUS[state.cause or "failed"].value))


def decide(state: SagaState, shape: SagaShape, t: Transition) -> tuple[SagaState, Command]:
    """Fold ``t`` into ``state`` and say what to do next."""
    new_state = evolve(state, t)
    return new_state, plan(new_state, shape)


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
                    step=step, attempt=attempt, error=outcome.error, retry_in=delay
                )
            return StepFailed(
                step=step, attempt=attempt, error=outcome.error, outcome=Outcome.FAILED
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
            if attempt < step_shape.compensation_max_attempts:
                delay = backoff(step_shape, f"{state.saga_id}:{step}", attempt, compensation=True)
                if isinstance(outcome, Raised):
                    delay = _at_least(delay, outcome.retry_after)
                return CompensationAttemptFailed(
                    step=step, attempt=attempt, error=error, retry_in=delay
                )
            return CompensationFailed(step=step, attempt=attempt, error=error)
    raise TypeError(f"not an attempt outcome: {outcome!r}")
