"""Actions on one saga: ``saga-orchestrator sagas cancel|retry|resolve|skip-compensation|resume
ID``.

Each is a ``POST /sagas/{id}/<action>`` with a body made from the options. The operator
actions also take ``--dry-run`` (the service says what would happen and records nothing) and
``--wait`` (follow the saga until it ends or parks again: exit 5 when it parks again). An
action added to the API gets its verb here: a handler made by :func:`act_on` with the body of
its options, and its parser in ``_sagas.register`` (section "Operator actions").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ._api import EXIT_OK, ApiClient, SagaNotCompleted, UsageError
from ._command import Handler, json_argument
from ._output import emit, json_text, key_values
from ._saga_reads import saga_path, saga_text
from ._saga_start import PARKED, wait_for_end

__all__ = ["act_on", "reason_body", "resolve_body", "resume_body", "step_body"]

Body = Callable[[argparse.Namespace], dict[str, Any] | None]
"""What an action sends, from the command's arguments (``None``: no body)."""


def reason_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """``{"reason": ...}`` when ``--reason`` was given (and ``"dry_run": true`` with
    ``--dry-run``)."""
    body: dict[str, Any] = {}
    if getattr(args, "reason", None):
        body["reason"] = args.reason
    if getattr(args, "dry_run", False):
        body["dry_run"] = True
    return body or None


def step_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """``skip-compensation``: the step, and the reason."""
    return {"step": args.step, **(reason_body(args) or {})}


def resolve_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """``resolve``: the step and its outcome, and the reason."""
    return {"step": args.step, "outcome": args.outcome, **(reason_body(args) or {})}


def resume_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """``resume``: the step to go on from, the input patch (if any), and the reason."""
    body: dict[str, Any] = {"from_step": args.from_step, **(reason_body(args) or {})}
    patch = json_argument(args.input, "--input")
    if patch is not None:
        if not isinstance(patch, dict):
            raise UsageError("--input: expected a JSON object (a merge patch of the input)")
        body["input"] = patch
    return body


def act_on(action: str, body: Body = reason_body) -> Handler:
    """The handler of ``sagas <action> ID``: ``POST /sagas/{id}/<action>``, print the answer;
    with ``--wait``, follow the saga until it ends or parks."""

    def act(api: ApiClient, args: argparse.Namespace) -> int:
        answer = api.post(saga_path(args.saga_id, action), body(args))
        if getattr(args, "wait", False) and not answer.get("dry_run"):
            return _wait(api, args)
        if args.json:
            emit(json_text(answer))
            return EXIT_OK
        pairs = [("saga", answer.get("saga_id")), ("status", answer.get("status"))]
        if answer.get("dry_run"):
            pairs[1] = ("would be", answer.get("status"))
            pairs.append(("would record", ", ".join(answer.get("would_record") or [])))
        emit(key_values(pairs))
        return EXIT_OK

    return act


def _wait(api: ApiClient, args: argparse.Namespace) -> int:
    saga = api.get(saga_path(args.saga_id))
    saga = wait_for_end(api, saga, timeout=args.wait_timeout, progress=sys.stderr)
    emit(json_text(saga) if args.json else saga_text(saga))
    if saga["status"] in PARKED:
        raise SagaNotCompleted(
            f"saga {saga['saga_id']} parked again ({saga['status']}): "
            f"{saga.get('error') or 'no error'}"
        )
    return EXIT_OK
