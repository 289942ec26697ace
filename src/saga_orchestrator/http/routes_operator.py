"""Operator actions on a parked saga (``compensation_failed`` or ``failed``), asked of the
coordinator (``coordinator.operator`` says what each does and when it applies).

=======  ========================================  ========================================
POST     /sagas/<saga_id>/retry                    run the failed part again
POST     /sagas/<saga_id>/resolve                  state the outcome of a step in doubt
POST     /sagas/<saga_id>/skip-compensation        a failed compensation was done by hand
POST     /sagas/<saga_id>/resume                   go forward from a step (input patched)
=======  ========================================  ========================================

Each answers 202 once the action is recorded (the saga goes on in the background), or 200 with
``dry_run`` (nothing recorded: what would happen); 409 with ``error.saga_status`` when the
action does not apply to the saga as it is, also when another action on it came first (one
action at a time per saga: the others get 409). Each is recorded in the saga's history with
``by``, the name of the API key used (:func:`~.auth.api_key_name`), and the ``reason``.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from saga_orchestrator.coordinator.messages import OperateSaga, OperatorOutcome, RetrySaga
from saga_orchestrator.coordinator.operator import (
    ACTIONS,
    Action,
    Resolve,
    Resume,
    Retry,
    SkipCompensation,
)
from saga_orchestrator.errors import ValidationError

from .app import deps
from .auth import api_key_name
from .openapi import Reply, operation
from .routes_sagas import _saga_id  # the saga routes' reading of a path's saga id
from .serialize import json_response
from .validate import check_body, json_body
from .views.operator import (
    OperatorActionView,
    ResolveRequest,
    ResumeRequest,
    RetryRequest,
    SkipCompensationRequest,
)

__all__ = ["operator"]

operator = Blueprint("operator", __name__, url_prefix="/sagas")

TAG = "Sagas"
_APPLIES = (
    " 409 (with `error.saga_status`) when the action does not apply to the saga as it is, or "
    "another action on it came first. With `dry_run`: 200 and what would happen, nothing "
    "recorded. Recorded in the saga's history with the API key's name and the `reason`."
)


def _replies(taken: str) -> list[Reply]:
    return [
        Reply(status=202, description=taken, body=OperatorActionView),
        Reply(status=200, description="A dry run: what would happen.", body=OperatorActionView),
    ]


async def _act(raw_id: str, action: Action, reason: str | None, dry_run: bool) -> Response:
    """Ask the coordinator to take ``action`` (or to say what it would do)."""
    saga_id = _saga_id(raw_id)
    svc = deps()
    who = api_key_name()
    name = ACTIONS[type(action)]
    if isinstance(action, Retry) and not dry_run:
        # a retry may reach a saga whose actor is parking it: the actor takes it then
        message: Any = RetrySaga(saga_id=saga_id, by=who, reason=reason)
        status = await svc.coordinator.ask(message, timeout=svc.command_timeout)
        return json_response(
            OperatorActionView(saga_id=saga_id, action=name, status=status, dry_run=False), 202
        )
    message = OperateSaga(saga_id=saga_id, action=action, by=who, reason=reason, dry_run=dry_run)
    try:
        outcome: OperatorOutcome = await svc.coordinator.ask(message, timeout=svc.command_timeout)
    except ValidationError as exc:
        raise _as_patch_error(exc) if isinstance(action, Resume) else exc from None
    view = OperatorActionView(
        saga_id=saga_id,
        action=name,
        status=outcome.status,
        dry_run=outcome.dry_run,
        would_record=list(outcome.transitions) if outcome.dry_run else None,
    )
    return json_response(view, 200 if dry_run else 202)


def _as_patch_error(error: ValidationError) -> ValidationError:
    """The saga's input errors (``data.<field>``) as errors of the resume's ``input`` patch."""
    errors = [
        {**item, "field": "input" + str(item.get("field", "data")).removeprefix("data")}
        for item in error.errors
    ]
    return ValidationError(f"the patched input does not fit: {error.message}", errors)


@operator.post("/<saga_id>/retry")
@operation(
    summary="Retry a parked saga",
    description="A `compensation_failed` saga runs its failed compensations again (and those "
    "of steps in doubt, as if safe); a `failed` one resumes where it was." + _APPLIES,
    tag=TAG,
    body=RetryRequest,
    body_required=False,
    replies=_replies("Retry started."),
    errors=(409, 503),
)
async def retry_saga(saga_id: str) -> Response:
    given = check_body(RetryRequest, await json_body(required=False))
    return await _act(saga_id, Retry(), given.reason, given.dry_run)


@operator.post("/<saga_id>/resolve")
@operation(
    summary="State the outcome of a step in doubt",
    description="For a step whose outcome is unknown (cut mid-call) in a "
    "`compensation_failed` saga: `applied` runs its compensation, `not_applied` skips it; "
    "then the saga goes on compensating." + _APPLIES,
    tag=TAG,
    body=ResolveRequest,
    replies=_replies("Resolved; the saga goes on."),
    errors=(409, 503),
)
async def resolve_step(saga_id: str) -> Response:
    given = check_body(ResolveRequest, await json_body())
    return await _act(saga_id, Resolve(given.step, given.outcome), given.reason, given.dry_run)


@operator.post("/<saga_id>/skip-compensation")
@operation(
    summary="Count a failed compensation as done by hand",
    description="The step's compensation (`compensation_status: failed`) counts as done; the "
    "saga goes on compensating the steps before it." + _APPLIES,
    tag=TAG,
    body=SkipCompensationRequest,
    replies=_replies("Skipped; the saga goes on."),
    errors=(409, 503),
)
async def skip_compensation(saga_id: str) -> Response:
    given = check_body(SkipCompensationRequest, await json_body())
    return await _act(saga_id, SkipCompensation(given.step), given.reason, given.dry_run)


@operator.post("/<saga_id>/resume")
@operation(
    summary="Resume a parked saga forward from a step",
    description="A `failed` or `compensation_failed` saga runs again from `from_step` (the "
    "steps before it must be completed and not undone), with its input patched by `input` "
    "(a JSON merge patch) and a new deadline. A patched input that does not fit the saga "
    "type's input: 422, nothing changes." + _APPLIES,
    tag=TAG,
    body=ResumeRequest,
    replies=_replies("Resumed."),
    errors=(409, 503),
)
async def resume_saga(saga_id: str) -> Response:
    given = check_body(ResumeRequest, await json_body())
    action = Resume(given.from_step, given.input or {})
    return await _act(saga_id, action, given.reason, given.dry_run)
