"""From saga state to what the store keeps beside the transitions: the projection row and the
lifecycle events for the outbox."""

from __future__ import annotations

from collections.abc import Sequence

from saga_orchestrator.store.records import NewEvent, OutboxMessage, SagaRecord, StepRecord

from .state import CompensationStatus, SagaShape, SagaState, SagaStatus, StepStatus
from .transitions import (
    CompensationFailed,
    SagaCompensated,
    SagaCompleted,
    SagaStarted,
    StepCompleted,
    Transition,
)

_BUSY = (CompensationStatus.RUNNING, CompensationStatus.RETRY_WAIT, CompensationStatus.FAILED)


def stream_id(saga_id: str) -> str:
    """The event stream holding a saga's transitions."""
    return f"saga-{saga_id}"


def current_step(state: SagaState, shape: SagaShape) -> str | None:
    """The step being run or compensated, or ``None`` when there is none."""
    if state.status is SagaStatus.RUNNING:
        for index, step in enumerate(state.steps):
            if step.status is not StepStatus.COMPLETED:
                return shape.steps[index].name
    if state.status in (SagaStatus.COMPENSATING, SagaStatus.COMPENSATION_FAILED):
        for index in reversed(range(len(state.steps))):
            if state.steps[index].compensation in _BUSY:
                return shape.steps[index].name
    return None


def to_record(
    state: SagaState, shape: SagaShape, *, changed_since: SagaState | None = None
) -> SagaRecord:
    """The projection row of ``state`` with its step rows: all of them, or, given the state
    ``changed_since`` that the store already holds, only the steps that changed since (the
    store upserts the step rows an append carries and keeps the others)."""
    before = None if changed_since is None else changed_since.steps
    step_rows = tuple(
        StepRecord(
            index=index,
            name=shape.steps[index].name,
            status=step.status.value,
            attempts=step.attempt,
            started_at=step.started_at,
            finished_at=step.finished_at,
            result=step.result,
            error=step.error,
            error_type=step.error_type,
            error_frames=step.error_frames,
            compensation_status=step.compensation.value,
            compensation_attempts=step.compensation_attempt,
            compensation_error=step.compensation_error,
        )
        for index, step in enumerate(state.steps)
        if before is None or step is not before[index]  # steps are copied only when changed
    )
    return SagaRecord(
        saga_id=state.saga_id,
        saga_type=state.saga_type,
        saga_version=state.saga_version,
        status=state.status.value,
        current_step=current_step(state, shape),
        input=state.input,
        result=state.result,
        error=_error(state, shape),
        deadline_at=state.deadline_at,
        created_at=state.created_at,
        updated_at=state.updated_at,
        version=state.version,
        idempotency_key=state.idempotency_key,
        correlation_id=state.correlation_id,
        trigger_event_id=state.trigger_event_id,
        steps=step_rows,
    )


def _error(state: SagaState, shape: SagaShape) -> str | None:
    """Why the saga waits for an operator when it is parked, else why it stopped going
    forward."""
    if state.park_reason is not None and state.is_parked:
        return state.park_reason
    if state.failed_step is not None and state.cause == "failed" and state.error:
        return f"step {shape.steps[state.failed_step].name!r} failed: {state.error}"
    return state.error


_END_EVENTS = {
    "compensated": "saga.compensated",
    "cancelled": "saga.cancelled",
    "timed_out": "saga.timed_out",
}


def lifecycle_events(
    state: SagaState,
    shape: SagaShape,
    transitions: Sequence[Transition],
    topic: str,
    *,
    event_ids: Sequence[str] = (),
) -> list[OutboxMessage]:
    """The lifecycle events announced by ``transitions`` (``state`` is the state after them).

    Each one's metadata says which transition announced it: ``stream_id`` (the saga's stream)
    and ``version`` (the transition's version there), and ``causation_id``, the id of the
    transition's event, when ``event_ids`` (those ids, in the order of ``transitions``) is
    given; and the saga's ``correlation_id`` when it has one.
    """
    messages = []
    first_version = state.version - len(transitions) + 1
    for index, t in enumerate(transitions):
        data: dict[str, object] = {"saga_id": state.saga_id, "saga_type": state.saga_type}
        match t:
            case SagaStarted():
                event_type = "saga.started"
            case StepCompleted():
                event_type = "saga.step.completed"
                data["step"] = shape.steps[t.step].name
            case SagaCompleted():
                event_type = "saga.completed"
            case SagaCompensated():
                event_type = _END_EVENTS[t.status]
            case CompensationFailed():
                event_type = "saga.compensation_failed"
                data["step"] = shape.steps[t.step].name
                data["error"] = t.error
            case _:
                continue
        metadata: dict[str, object] = {}
        if state.correlation_id:
            metadata["correlation_id"] = state.correlation_id
        if index < len(event_ids):
            metadata["causation_id"] = event_ids[index]
        metadata["stream_id"] = stream_id(state.saga_id)
        metadata["version"] = first_version + index
        messages.append(
            OutboxMessage(
                topic=topic, event=NewEvent(event_type=event_type, data=data, metadata=metadata)
            )
        )
    return messages
