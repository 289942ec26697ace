"""The saga page's forms: cancel, and an operator's actions on a parked saga.

Each form carries the session's CSRF token (checked by :mod:`.guard`, which also refuses a
read-only key), a reason, and a confirmation box; the action is asked of the coordinator as the
JSON API asks it (``CancelSaga``; ``OperateSaga`` with ``coordinator.operator``'s actions,
recorded with the viewer's key name and the reason). The answer comes back to the saga page
(303): what was done, or why it was refused (409: the action does not apply to the saga as it
is; 422: a bad input patch).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from quart import Response, redirect, request

from saga_orchestrator.coordinator.messages import CancelSaga, OperateSaga, OperatorOutcome
from saga_orchestrator.coordinator.operator import (
    Action,
    Resolve,
    Resume,
    Retry,
    SkipCompensation,
)
from saga_orchestrator.coordinator.transitions import Resolution
from saga_orchestrator.errors import ConflictError, SagaNotFound, ValidationError
from saga_orchestrator.http.app import deps

from .guard import ui, viewer

__all__ = ["ACTIONS", "action_of"]

ACTIONS = ("cancel", "retry", "resolve", "skip-compensation", "resume")


def action_of(name: str, form: Any) -> Action:
    """The operator's action a form asks for (not ``cancel``).

    Raises:
        ValidationError: a field is missing or not valid.
    """
    step = (form.get("step") or "").strip()
    match name:
        case "retry":
            return Retry()
        case "resolve":
            try:
                resolution = Resolution(form.get("resolution", ""))
            except ValueError:
                raise ValidationError(
                    "choose whether the step's effect was applied",
                    [{"field": "resolution", "message": "applied or not_applied"}],
                ) from None
            return Resolve(step=step, resolution=resolution)
        case "skip-compensation":
            return SkipCompensation(step=step)
        case "resume":
            text = (form.get("input_patch") or "").strip() or "{}"
            try:
                patch = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    "the input patch is not JSON", [{"field": "input_patch", "message": str(exc)}]
                ) from None
            if not isinstance(patch, dict):
                raise ValidationError(
                    "the input patch must be a JSON object",
                    [{"field": "input_patch", "message": "expected an object"}],
                )
            return Resume(from_step=step, input=patch)
    raise ValidationError(f"no such action: {name}", [{"field": "action", "message": name}])


def _back(saga_id: str, **answer: str) -> Response:
    return redirect(f"/ui/sagas/{saga_id}?{urlencode(answer)}", 303)


@ui.post("/sagas/<saga_id>/<action>")
async def act(saga_id: str, action: str) -> Response:
    try:
        saga_id = str(uuid.UUID(saga_id))
    except ValueError:
        raise SagaNotFound(saga_id) from None
    if action not in ACTIONS:
        raise SagaNotFound(saga_id)  # no such form: like an unknown page
    form = await request.form
    reason = (form.get("reason") or "").strip()
    if not reason:
        return _back(saga_id, error=f"{action}: give a reason")
    if form.get("confirm") != "yes":
        return _back(saga_id, error=f"{action}: tick the box to confirm")
    svc = deps()
    try:
        if action == "cancel":
            status = await svc.coordinator.ask(
                CancelSaga(saga_id=saga_id, reason=reason), timeout=svc.command_timeout
            )
            return _back(saga_id, done=f"cancel: accepted; the saga is {status}")
        outcome: OperatorOutcome = await svc.coordinator.ask(
            OperateSaga(
                saga_id=saga_id, action=action_of(action, form), by=viewer().name, reason=reason
            ),
            timeout=svc.command_timeout,
        )
    except (ConflictError, ValidationError) as exc:
        return _back(saga_id, error=f"{action}: refused: {exc}")
    recorded = ", ".join(outcome.transitions) or "nothing"
    return _back(saga_id, done=f"{action}: done ({recorded}); the saga is {outcome.status}")
