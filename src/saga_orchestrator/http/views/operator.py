"""Request and response shapes of the operator actions (:mod:`..routes_operator`).

A ``reason`` is required for ``resolve``, ``skip-compensation`` and ``resume``: each states
something about the world outside (an effect exists, a compensation was done by hand) or
changes the saga's course, and the history keeps why. It is optional for ``retry``, which only
runs again what the saga already meant to do.
"""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.coordinator.state import SagaStatus
from saga_orchestrator.coordinator.transitions import Resolution

from ..schema import api_field
from ._base import text_field

_DRY_RUN = "Answer what would happen (200) without recording anything."
_REASON = "Why; recorded with the action in the saga's history."


def _dry_run() -> Any:
    return api_field(default=False, doc=_DRY_RUN)


@attrs.frozen(kw_only=True)
class RetryRequest:
    """Retry a parked saga (the body is optional)."""

    reason: str | None = text_field(_REASON, default=None)
    dry_run: bool = _dry_run()


@attrs.frozen(kw_only=True)
class ResolveRequest:
    """State the outcome of a step in doubt."""

    step: str = text_field("The step whose outcome is unknown (its `status` is `unknown`).")
    outcome: Resolution = api_field(
        doc="`applied`: its effect exists, its compensation runs; `not_applied`: nothing to "
        "undo, its compensation is skipped."
    )
    reason: str = text_field(_REASON + " Say how the outcome was found out.")
    dry_run: bool = _dry_run()


@attrs.frozen(kw_only=True)
class SkipCompensationRequest:
    """Count a step's failed compensation as done by hand."""

    step: str = text_field("The step whose compensation failed.")
    reason: str = text_field(_REASON + " Say how it was undone.")
    dry_run: bool = _dry_run()


@attrs.frozen(kw_only=True)
class ResumeRequest:
    """Go forward again from a step."""

    from_step: str = text_field(
        "The step to run again from; every step before it must be completed and not undone."
    )
    input: dict[str, Any] | None = api_field(
        default=None,
        doc="A JSON merge patch (RFC 7396) of the saga's input: keys replace, `null` removes. "
        "The patched input is checked against the saga type's input: when it does not fit, "
        "422 and nothing changes.",
    )
    reason: str = text_field(_REASON)
    dry_run: bool = _dry_run()


@attrs.frozen(kw_only=True)
class OperatorActionView:
    """What an operator action did, or would do (``dry_run``)."""

    saga_id: str = api_field(format="uuid")
    action: str = api_field(doc="`retry`, `resolve`, `skip-compensation` or `resume`.")
    status: SagaStatus = api_field(
        doc="The saga's status once the action is taken (would be, with `dry_run`)."
    )
    dry_run: bool
    would_record: list[str] | None = api_field(
        default=None,
        omit_if_none=True,
        doc="With `dry_run`: the transitions the action would record at once, in order. What "
        "an action recorded is in `GET /sagas/{saga_id}/events`.",
    )
