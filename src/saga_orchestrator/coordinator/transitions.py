"""The durable transitions of a saga: the events of its stream, in the order they happened.

A saga's state is the fold of its transitions (:func:`saga_orchestrator.coordinator.state.evolve`).
Each is frozen, carries the wall-clock time it was recorded (``at``, seconds since the epoch), and
serialises to a ``(type name, JSON object)`` pair with :func:`to_record` / :func:`from_record`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs
import cattrs


class Outcome(enum.Enum):
    """How a step that did not complete ended."""

    FAILED = "failed"
    """It raised: its effect did not happen (or the service refused it)."""
    UNKNOWN = "unknown"
    """It was interrupted mid-flight (step timeout, cancel, deadline): the effect may exist."""


class Interruption(enum.Enum):
    """Why a saga stopped going forward other than a step failing."""

    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


@attrs.frozen(kw_only=True)
class SagaStarted:
    """The saga was accepted; always its first transition."""

    saga_id: str
    saga_type: str
    saga_version: int
    input: dict[str, Any]
    deadline_at: float
    """Wall-clock time after which the saga stops going forward and compensates."""
    idempotency_key: str | None = None
    correlation_id: str | None = None
    trigger_event_id: str | None = None
    """The event the router started the saga for (``None``: started by a request)."""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class StepStarted:
    """A step's attempt is about to run (write-ahead: durable before the action is called)."""

    step: int
    attempt: int
    at: float = 0.0


@attrs.frozen(kw_only=True)
class StepCompleted:
    step: int
    attempt: int
    result: Any = None
    reply_event_id: str | None = None
    """For a reply-driven step: the reply that completed it."""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class StepAwaitingReply:
    """A reply-driven step's command was sent; the reply is awaited for ``timeout`` seconds."""

    step: int
    attempt: int
    accepted: Any = None
    """What the action returned."""
    timeout: float
    at: float = 0.0


@attrs.frozen(kw_only=True)
class ReplyReceived:
    """An event addressed to the saga arrived (kept even before its step waits for it)."""

    event_id: str
    event_type: str
    data: dict[str, Any] = attrs.field(factory=dict)
    at: float = 0.0


@attrs.frozen(kw_only=True)
class StepAttemptFailed:
    """An attempt failed with a retryable error; the next starts after ``retry_in`` seconds."""

    step: int
    attempt: int
    error: str
    retry_in: float
    error_type: str | None = None
    """The error's class (``KeyError``, ``ServiceUnavailable``...), when it was an error."""
    frames: tuple[str, ...] = ()
    """The last frames of its traceback (``file:line in function``), newest last."""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class StepFailed:
    """The step failed for good; compensation begins."""

    step: int
    attempt: int
    error: str
    outcome: Outcome
    reply_event_id: str | None = None
    """For a reply-driven step failed by a reply: that reply."""
    error_type: str | None = None
    """The error's class (``KeyError``, ``ServiceUnavailable``...), when it was an error."""
    frames: tuple[str, ...] = ()
    """The last frames of its traceback (``file:line in function``), newest last."""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class SagaInterrupted:
    """Cancellation or the saga deadline stopped the forward path."""

    reason: Interruption
    detail: str = ""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class CompensationStarted:
    step: int
    attempt: int
    at: float = 0.0


@attrs.frozen(kw_only=True)
class CompensationCompleted:
    step: int
    attempt: int
    at: float = 0.0


@attrs.frozen(kw_only=True)
class CompensationAttemptFailed:
    step: int
    attempt: int
    error: str
    retry_in: float
    error_type: str | None = None
    """The error's class (``KeyError``, ``ServiceUnavailable``...), when it was an error."""
    frames: tuple[str, ...] = ()
    """The last frames of its traceback (``file:line in function``), newest last."""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class CompensationFailed:
    """A compensation failed after its retries, or cannot safely run: an operator must act."""

    step: int
    attempt: int
    error: str
    error_type: str | None = None
    """The error's class (``KeyError``, ``ServiceUnavailable``...), when it was an error."""
    frames: tuple[str, ...] = ()
    """The last frames of its traceback (``file:line in function``), newest last."""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class SagaCompleted:
    result: dict[str, Any]
    at: float = 0.0


@attrs.frozen(kw_only=True)
class SagaCompensated:
    """Every compensation that had to run ran; ``status`` says why they did."""

    status: str
    """``compensated``, ``cancelled`` or ``timed_out``."""
    at: float = 0.0


@attrs.frozen(kw_only=True)
class SagaParked:
    """The saga's actor crashed too often; it waits for an operator."""

    error: str
    at: float = 0.0


@attrs.frozen(kw_only=True)
class OperatorRetried:
    """An operator asked a parked saga to go on: its failed compensations run again (and those
    in doubt, as if safe), or a saga that crashed resumes where it was."""

    by: str | None = None
    """The name of the API key the operator used (``None``: recorded before names existed)."""
    reason: str | None = None
    at: float = 0.0


class Resolution(enum.Enum):
    """What an operator found out about a step whose outcome was unknown."""

    APPLIED = "applied"
    """Its effect exists: its compensation runs."""
    NOT_APPLIED = "not_applied"
    """It had no effect: nothing to undo."""


@attrs.frozen(kw_only=True)
class StepResolved:
    """An operator stated the outcome of a step in doubt; the saga's compensation goes on."""

    step: int
    resolution: Resolution
    by: str | None = None
    reason: str | None = None
    at: float = 0.0


@attrs.frozen(kw_only=True)
class CompensationSkipped:
    """An operator undid a step by hand (or found nothing to undo): its compensation counts as
    done; the saga's compensation goes on."""

    step: int
    by: str | None = None
    reason: str | None = None
    at: float = 0.0


@attrs.frozen(kw_only=True)
class SagaResumed:
    """An operator sent a parked saga forward again from step ``from_step``: that step and the
    ones after it start afresh, with ``input`` (the saga's input, patched or not) and a new
    deadline."""

    from_step: int
    input: dict[str, Any]
    deadline_at: float
    by: str | None = None
    reason: str | None = None
    at: float = 0.0


Transition = (
    SagaStarted
    | StepStarted
    | StepCompleted
    | StepAwaitingReply
    | ReplyReceived
    | StepAttemptFailed
    | StepFailed
    | SagaInterrupted
    | CompensationStarted
    | CompensationCompleted
    | CompensationAttemptFailed
    | CompensationFailed
    | SagaCompleted
    | SagaCompensated
    | SagaParked
    | OperatorRetried
    | StepResolved
    | CompensationSkipped
    | SagaResumed
)

OPERATOR_TRANSITIONS = (OperatorRetried, StepResolved, CompensationSkipped, SagaResumed)
"""The transitions an operator's action records (each names who and why)."""

TRANSITION_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        SagaStarted,
        StepStarted,
        StepCompleted,
        StepAwaitingReply,
        ReplyReceived,
        StepAttemptFailed,
        StepFailed,
        SagaInterrupted,
        CompensationStarted,
        CompensationCompleted,
        CompensationAttemptFailed,
        CompensationFailed,
        SagaCompleted,
        SagaCompensated,
        SagaParked,
        OperatorRetried,
        StepResolved,
        CompensationSkipped,
        SagaResumed,
    )
}

_converter = cattrs.Converter()


def to_record(transition: Transition) -> tuple[str, dict[str, Any]]:
    """The event type name and JSON-ready data of a transition."""
    return type(transition).__name__, _converter.unstructure(transition)


def from_record(event_type: str, data: dict[str, Any]) -> Transition:
    """Rebuild a transition from its stored type name and data."""
    try:
        cls = TRANSITION_TYPES[event_type]
    except KeyError:
        raise ValueError(f"unknown saga transition type {event_type!r}") from None
    return _converter.structure(data, cls)
