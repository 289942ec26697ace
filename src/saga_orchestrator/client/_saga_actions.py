"""Operator actions on one saga: ``saga-orchestrator sagas cancel|retry ID``.

Each is a ``POST /sagas/{id}/<action>`` with an optional body, answered ``{"saga_id",
"status"}``. An operator action added to the API gets its verb here: a handler made by
:func:`act_on`, and its parser in ``_sagas.register`` (section "Operator actions").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ._api import EXIT_OK, ApiClient
from ._command import Handler
from ._output import emit, json_text, key_values
from ._saga_reads import saga_path

__all__ = ["act_on", "reason_body"]

Body = Callable[[argparse.Namespace], dict[str, Any] | None]
"""What an action sends, from the command's arguments (``None``: no body)."""


def reason_body(args: argparse.Namespace) -> dict[str, Any] | None:
    """``{"reason": ...}`` when ``--reason`` was given."""
    reason = getattr(args, "reason", None)
    return {"reason": reason} if reason else None


def act_on(action: str, body: Body = reason_body) -> Handler:
    """The handler of ``sagas <action> ID``: ``POST /sagas/{id}/<action>``, print the answer."""

    def act(api: ApiClient, args: argparse.Namespace) -> int:
        answer = api.post(saga_path(args.saga_id, action), body(args))
        if args.json:
            emit(json_text(answer))
        else:
            emit(key_values([("saga", answer.get("saga_id")), ("status", answer.get("status"))]))
        return EXIT_OK

    return act
