"""What an operator may do to a parked saga, and the transition each action records: pure.

Every action is recorded in the saga's history with who did it (the name of the API key used)
and why. An action that does not apply to the saga as it is raises ``SagaStateConflict``
naming its status and what stands in the way.

* ``retry`` — a ``failed`` saga (its actor crashed too often) resumes where it was; a
  ``compensation_failed`` one runs its failed compensations again (and those of steps in
  doubt, as if safe);
* ``resolve`` — for a step whose outcome is unknown (in doubt), the operator states it:
  ``applied`` (its compensation runs) or ``not_applied`` (nothing to undo);
* ``skip-compensation`` — a step's compensation counts as done (undone by hand);
* ``resume`` — the saga goes forward again from a named step, with its input optionally
  patched and a new deadline; the steps before it must be completed and not compensated.
"""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.errors import SagaStateConflict

from .state import CompensationStatus, SagaShape, SagaState, SagaStatus, StepStatus
from .transitions import (
    CompensationSkipped,
    OperatorRetried,
    Resolution,
    SagaResumed,
    StepResolved,
    Transition,
)

__all__ = [
    "ACTIONS",
    "Action",
    "Resolve",
    "Resume",
    "Retry",
    "SkipCompensation",
    "merge_patch",
    "transition_for",
]


@attrs.frozen
class Retry:
    pass


@attrs.frozen
class Resolve:
    step: str
    resolution: Resolution


@attrs.frozen
class SkipCompensation:
    step: str


@attrs.frozen
class Resume:
    from_step: str
    input: dict[str, Any]
    """The saga's input to go on with (the stored one with the operator's patch applied, and
    checked against the saga's input type by the caller)."""


Action = Retry | Resolve | SkipCompensation | Resume

ACTIONS = {Retry: "retry", Resolve: "resolve", SkipCompensation: "skip-compensation",
           Resume: "resume"}  # fmt: skip
"""Each action's name, as the API and the 409 answers say it."""


def transition_for(
    state: SagaState,
    shape: SagaShape,
    action: Action,
    *,
    by: str | None,
    reason: str | None,
    now: float,
    saga_timeout: float,
) -> Transition:
    """The transition ``action`` records on ``state``.

    Raises:
        SagaStateConflict: the action does not apply to the saga as it is (why is said).
    """
    operation = ACTIONS[type(action)]

    def refuse(why: str) -> SagaStateConflict:
        return SagaStateConflict(state.saga_id, state.status.value, operation, detail=why)

    if not state.is_parked:
        raise refuse("only a parked saga (failed or compensation_failed) takes operator actions")
    match action:
        case Retry():
            return OperatorRetried(by=by, reason=reason, at=now)
        case Resolve(step=name, resolution=resolution):
            index = _step(shape, name, refuse)
            step = state.steps[index]
            if state.status is not SagaStatus.COMPENSATION_FAILED:
                raise refuse("a step is resolved while the saga's compensation is parked")
            if step.status is not StepStatus.UNKNOWN or step.resolution is not None:
                raise refuse(f"step {name!r} is not in doubt (its status is {step.status})")
            if step.compensation in (CompensationStatus.COMPLETED, CompensationStatus.SKIPPED):
                raise refuse(f"step {name!r} is compensated already")
            return StepResolved(step=index, resolution=resolution, by=by, reason=reason, at=now)
        case SkipCompensation(step=name):
            index = _step(shape, name, refuse)
            step = state.steps[index]
            if step.compensation is not CompensationStatus.FAILED:
                raise refuse(
                    f"the compensation of step {name!r} has not failed "
                    f"(it is {step.compensation}): nothing to skip"
                )
            return CompensationSkipped(step=index, by=by, reason=reason, at=now)
        case Resume(from_step=name, input=given):
            index = _step(shape, name, refuse)
            for before, step in enumerate(state.steps[:index]):
                if (
                    step.status is not StepStatus.COMPLETED
                    or step.compensation is not CompensationStatus.NOT_RUN
                ):
                    raise refuse(
                        f"step {shape.steps[before].name!r} before {name!r} is not completed "
                        f"and standing (its status is {step.status}, its compensation "
                        f"{step.compensation}): resume from it or from an earlier step"
                    )
            return SagaResumed(
                from_step=index,
                input=given,
                deadline_at=now + saga_timeout,
                by=by,
                reason=reason,
                at=now,
            )
    raise TypeError(f"not an operator action: {action!r}")


def _step(shape: SagaShape, name: str, refuse: Any) -> int:
    for index, step in enumerate(shape.steps):
        if step.name == name:
            return index
    names = ", ".join(s.name for s in shape.steps)
    raise refuse(f"the saga has no step {name!r} (its steps: {names})")


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge patch ``patch`` applied (RFC 7396): objects merge key by
    key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
