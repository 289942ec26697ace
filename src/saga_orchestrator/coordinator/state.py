"""A saga's state, and how each durable transition changes it: pure, no I/O, no clock.

* the statuses of a saga, its steps and their compensations;
* :class:`SagaShape` / :class:`StepShape`: what the pure code needs to know of a definition
  (its steps, and their layout in stages: plain steps and parallel groups);
* :class:`SagaState`: everything the saga's transitions say, folded;
* :func:`evolve` folds one transition into the state; :func:`replay` a whole history.

What to do next in a state is :mod:`.plan`; the decisions around it (interruptions, deliveries,
appends) are :mod:`.decide`.

Near 500 lines: :func:`evolve` is one ``match`` over every transition, kept whole so that each
transition's effect on the state reads in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import attrs

from .copying import replace as _replace
from .layout import Stage
from .transitions import (
    CompensationAttemptFailed,
    CompensationCompleted,
    CompensationFailed,
    CompensationSkipped,
    CompensationStarted,
    Interruption,
    OperatorRetried,
    Outcome,
    ReplyReceived,
    Resolution,
    SagaCompensated,
    SagaCompleted,
    SagaInterrupted,
    SagaParked,
    SagaResumed,
    SagaStarted,
    StepAttemptFailed,
    StepAwaitingReply,
    StepCompleted,
    StepFailed,
    StepResolved,
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
    SKIPPED = "skipped"
    """An operator undid the step by hand, or found it had no effect: nothing to run."""


END_STATUS = {
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
    timeout: float = 300.0
    """Seconds one attempt of the action, or of the compensation, may take."""

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


def _sequential(shape: SagaShape) -> tuple[Stage, ...]:
    return tuple(range(len(shape.steps)))


@attrs.frozen(kw_only=True)
class SagaShape:
    steps: tuple[StepShape, ...]
    stages: tuple[Stage, ...] = attrs.field(default=attrs.Factory(_sequential, takes_self=True))
    """The stages run one after another (see :mod:`.layout`); by default each step is one."""


@attrs.frozen(kw_only=True)
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    """The last error's class (of the action, or of the compensation once it runs)."""
    error_frames: tuple[str, ...] = ()
    """The last frames of the last error's traceback, newest last."""
    retry_in: float = 0.0
    retry_at: float = 0.0
    """Wall-clock time the next attempt may start (after a failed attempt's backoff)."""
    started_at: float | None = None
    finished_at: float | None = None
    compensation: CompensationStatus = CompensationStatus.NOT_RUN
    compensation_attempt: int = 0
    compensation_error: str | None = None
    compensation_retry_in: float = 0.0
    compensation_retry_at: float = 0.0
    """Wall-clock time the compensation's next attempt may start."""
    compensation_forced: bool = False
    """An operator retried the saga, or resolved the step as applied: run this compensation
    even though the outcome is unknown."""
    resolution: str | None = None
    """What an operator stated of the step's unknown outcome (``applied``, ``not_applied``)."""
    generation: int = 0
    """How many times an operator's resume made this step start afresh: its idempotency key
    changes with it (the key of an undone run is spent), and its compensation undoes the run
    of this generation."""
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
    trigger_event_id: str | None = None
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
    resumes: int = 0
    """How many times an operator resumed the saga (``SagaResumed``)."""
    park_reason: str | None = None
    """Why the saga waits for an operator (a compensation failed, a step in doubt, crashes);
    ``None`` when it does not. ``error`` keeps why it stopped going forward."""

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_parked(self) -> bool:
        return self.status in PARKED


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
                trigger_event_id=t.trigger_event_id,
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
                error_type=None,
                error_frames=(),
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
                state,
                t.step,
                status=StepStatus.RETRY_WAIT,
                error=t.error,
                error_type=t.error_type,
                error_frames=t.frames,
                retry_in=t.retry_in,
                retry_at=t.at + t.retry_in,
            )
            return _replace(state, version=v, updated_at=at, steps=steps)
        case StepFailed():
            status = StepStatus.UNKNOWN if t.outcome is Outcome.UNKNOWN else StepStatus.FAILED
            steps = _set_step(
                state,
                t.step,
                status=status,
                error=t.error,
                error_type=t.error_type,
                error_frames=t.frames,
                finished_at=t.at,
            )
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
                error_type=t.error_type or state.steps[t.step].error_type,
                error_frames=t.frames or state.steps[t.step].error_frames,
                compensation_retry_in=t.retry_in,
                compensation_retry_at=t.at + t.retry_in,
            )
            return _replace(state, version=v, updated_at=at, steps=steps)
        case CompensationFailed():
            steps = _set_step(
                state,
                t.step,
                compensation=CompensationStatus.FAILED,
                compensation_error=t.error,
                error_type=t.error_type or state.steps[t.step].error_type,
                error_frames=t.frames or state.steps[t.step].error_frames,
                compensation_attempt=t.attempt,
            )
            return _replace(
                state,
                version=v,
                updated_at=at,
                steps=steps,
                status=SagaStatus.COMPENSATION_FAILED,
                park_reason=t.error,
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
                park_reason=t.error,
            )
        case OperatorRetried():
            return _operator_retried(_replace(state, version=v, updated_at=at))
        case StepResolved():
            applied = t.resolution is Resolution.APPLIED
            steps = _set_step(
                state,
                t.step,
                resolution=t.resolution.value,
                compensation=(
                    CompensationStatus.NOT_RUN if applied else CompensationStatus.SKIPPED
                ),
                compensation_attempt=0,
                compensation_error=None,
                compensation_forced=applied,
            )
            return _go_on_compensating(_replace(state, version=v, updated_at=at, steps=steps))
        case CompensationSkipped():
            steps = _set_step(
                state,
                t.step,
                compensation=CompensationStatus.SKIPPED,
                compensation_error=t.reason,
            )
            return _go_on_compensating(_replace(state, version=v, updated_at=at, steps=steps))
        case SagaResumed():
            fresh = StepState(generation=state.resumes + 1)
            steps = state.steps[: t.from_step] + (fresh,) * (len(state.steps) - t.from_step)
            return _replace(
                state,
                version=v,
                updated_at=at,
                steps=steps,
                input=t.input,
                deadline_at=t.deadline_at,
                status=SagaStatus.RUNNING,
                cause=None,
                error=None,
                failed_step=None,
                parked_from=None,
                park_reason=None,
                result=None,
                resumes=state.resumes + 1,
            )
    raise TypeError(f"not a saga transition: {t!r}")


def _consume(state: SagaState, event_id: str | None) -> tuple[Reply, ...]:
    if event_id is None:
        return state.replies
    return tuple(_replace(r, consumed=True) if r.event_id == event_id else r for r in state.replies)


def _go_on_compensating(state: SagaState) -> SagaState:
    """A parked compensation an operator unblocked goes on (other blocks park it again)."""
    if state.status is SagaStatus.COMPENSATION_FAILED:
        return _replace(state, status=SagaStatus.COMPENSATING, park_reason=None)
    return state


def _operator_retried(state: SagaState) -> SagaState:
    if state.status is SagaStatus.FAILED:
        return attrs.evolve(
            state,
            status=state.parked_from or SagaStatus.RUNNING,
            parked_from=None,
            park_reason=None,
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
    return attrs.evolve(state, steps=steps, status=SagaStatus.COMPENSATING, park_reason=None)
