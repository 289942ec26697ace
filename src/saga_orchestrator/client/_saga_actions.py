"""Actions on one saga: ``saga-orchestrator sagas cancel|retry|resolve|skip-compensation|resume
ID``, each the client's method of that name with the command's options.

The operator actions also take ``--dry-run`` (the service says what would happen and records
nothing) and ``--wait`` (follow the saga until it ends or parks again: exit 5 when it parks
again). An action added to the client gets its verb here: a function calling it with the
command's options, made a handler by :func:`act_on`, and its parser in ``_sagas.register``
(section "Operator actions").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ._command import Handler, json_argument
from ._errors import EXIT_OK, SagaNotCompleted, UsageError
from ._models import Accepted
from ._output import emit, json_text, key_values
from ._saga_client import SyncSagaClient
from ._saga_reads import saga_text
from ._saga_start import PARKED, wait_for_end

__all__ = ["Action", "act_on", "cancel", "resolve", "resume", "retry", "skip_compensation"]

Action = Callable[[SyncSagaClient, argparse.Namespace], Accepted]
"""An action: the client's call with the command's arguments."""


def cancel(sagas: SyncSagaClient, args: argparse.Namespace) -> Accepted:
    return sagas.cancel(args.saga_id, args.reason or None)


def retry(sagas: SyncSagaClient, args: argparse.Namespace) -> Accepted:
    return sagas.retry(args.saga_id, reason=args.reason or None, dry_run=args.dry_run)


def resolve(sagas: SyncSagaClient, args: argparse.Namespace) -> Accepted:
    return sagas.resolve(args.saga_id, args.step, args.outcome, reason=args.reason,
                         dry_run=args.dry_run)  # fmt: skip


def skip_compensation(sagas: SyncSagaClient, args: argparse.Namespace) -> Accepted:
    return sagas.skip_compensation(args.saga_id, args.step, reason=args.reason,
                                   dry_run=args.dry_run)  # fmt: skip


def resume(sagas: SyncSagaClient, args: argparse.Namespace) -> Accepted:
    patch = json_argument(args.input, "--input")
    if patch is not None and not isinstance(patch, dict):
        raise UsageError("--input: expected a JSON object (a merge patch of the input)")
    return sagas.resume(args.saga_id, args.from_step, input=patch, reason=args.reason,
                        dry_run=args.dry_run)  # fmt: skip


def act_on(action: Action) -> Handler:
    """The handler of ``sagas <action> ID``: run the action, print the answer; with
    ``--wait``, follow the saga until it ends or parks."""

    def act(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
        answer = action(sagas, args)
        if getattr(args, "wait", False) and not answer.dry_run:
            return _wait(sagas, args)
        if args.json:
            emit(json_text(answer.raw))
            return EXIT_OK
        pairs: list[tuple[str, Any]] = [("saga", answer.saga_id), ("status", answer.status)]
        if answer.dry_run:
            pairs[1] = ("would be", answer.status)
            pairs.append(("would record", ", ".join(answer.would_record)))
        emit(key_values(pairs))
        return EXIT_OK

    return act


def _wait(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    saga = wait_for_end(sagas, args.saga_id, timeout=args.wait_timeout, progress=sys.stderr)
    emit(json_text(saga.raw) if args.json else saga_text(saga))
    if saga.status in PARKED:
        raise SagaNotCompleted(
            f"saga {saga.saga_id} parked again ({saga.status}): {saga.error or 'no error'}"
        )
    return EXIT_OK
