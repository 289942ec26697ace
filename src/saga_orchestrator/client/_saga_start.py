"""``saga-orchestrator sagas start``: start a saga (the client's ``start``) with an
idempotency key of the CLI's own, sent again with that key after a 503 or a lost answer (each
retry said on stderr), and ``--wait`` for its end (the client's ``wait``: long polls of
``GET /sagas/{id}/wait``); ``sagas wait ID``."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any, TextIO

from ._command import json_argument
from ._errors import EXIT_OK, ClientError, SagaNotCompleted, ServiceError, UsageError
from ._models import Saga
from ._output import emit, json_text, key_values
from ._saga_client import SyncSagaClient
from ._saga_reads import saga_text

__all__ = [
    "ENDED",
    "PARKED",
    "START_RETRIES",
    "STATUSES",
    "TERMINAL",
    "start",
    "start_options",
    "start_saga",
    "wait_for_end",
    "wait_saga",
]

TERMINAL = ("completed", "compensated", "cancelled", "timed_out")
PARKED = ("compensation_failed", "failed")
"""Statuses that wait for an operator (``sagas retry``)."""
ENDED = TERMINAL + PARKED
"""Statuses ``start --wait`` stops at."""
STATUSES = ("pending", "running", "compensating", *ENDED)
START_RETRIES = 3
"""Times ``sagas start`` sends a start again after a 503 or a lost answer (same key)."""
START_BACKOFF = 1.0
"""Seconds before its first retry (then 2, 4, at most 5; a longer ``Retry-After`` first)."""


def start_options(args: argparse.Namespace) -> dict[str, Any]:
    """``sagas start``'s client: ``--retries`` of its own, each retry said on stderr."""

    def say(error: ClientError, seconds: float) -> None:
        first_line = str(error).splitlines()[0]
        sys.stderr.write(f"{first_line}; retrying in {seconds:g} s with the same key\n")

    return {"retries": args.retries, "backoff": START_BACKOFF, "on_retry": say}


def start_saga(
    sagas: SyncSagaClient,
    saga_type: str,
    data: dict[str, Any],
    *,
    idempotency_key: str,
    **options: Any,
) -> Saga:
    """Start a saga with this key (the client sends it again, with the same key, after a 503
    or a lost answer: the key finds a saga the first attempt made, and never starts a second);
    ``options`` are the client's ``start``'s (``correlation_id``, ...).

    Raises:
        ServiceError: still no saga after the retries; the message gives the key to retry with.
    """
    try:
        return sagas.start(saga_type, data, idempotency_key=idempotency_key, **options)
    except ServiceError as exc:
        raise ServiceError(
            f"{exc}\n  the saga may have been created: start it again with "
            f"--idempotency-key {idempotency_key} (that never makes a second one)",
            code=exc.code,
            status=exc.status,
        ) from None


def start(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    data = json_argument(args.data, "--data")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UsageError("--data: expected a JSON object")
    key = args.idempotency_key or str(uuid.uuid4())  # our own: printed, to start again with
    saga = start_saga(
        sagas,
        args.saga_type,
        data,
        idempotency_key=key,
        correlation_id=args.correlation_id or None,
        version=args.version,
    )
    if args.wait:
        saga = wait_for_end(sagas, saga.saga_id, first=saga, interval=args.interval,
                            timeout=args.wait_timeout, progress=sys.stderr)  # fmt: skip
    if args.quiet:
        emit(saga.saga_id)
    elif args.json:
        emit(json_text(saga.raw))
    elif args.wait:
        emit(saga_text(saga))
    else:
        created = "yes" if saga.created is not False else "no: the saga of this idempotency key"
        emit(
            key_values(
                [
                    ("saga", saga.saga_id),
                    ("status", saga.status),
                    ("new", created),
                    ("idempotency key", saga.idempotency_key or key),
                ]
            )
        )
    if args.wait:
        _completed(saga)
    return EXIT_OK


def wait_saga(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    """``sagas wait ID``: print the saga once it has ended."""
    saga = wait_for_end(sagas, args.saga_id, timeout=args.wait_timeout, progress=sys.stderr)
    emit(json_text(saga.raw) if args.json else saga_text(saga))
    _completed(saga)
    return EXIT_OK


def _completed(saga: Saga) -> None:
    if saga.status != "completed":
        raise SagaNotCompleted(f"saga {saga.saga_id} ended {saga.status}: "
                               f"{saga.error or 'no error'}")  # fmt: skip


def _progress(saga: Saga, elapsed: float) -> str:
    names = [step.name for step in saga.steps]
    where = ""
    if saga.current_step in names:
        where = f", step {saga.current_step} ({names.index(saga.current_step) + 1}/{len(names)})"
    return f"saga {saga.saga_id}: {saga.status}{where}, {elapsed:.1f} s"


def wait_for_end(
    sagas: SyncSagaClient,
    saga_id: str,
    *,
    first: Saga | None = None,
    interval: float = 2.0,
    timeout: float | None = None,
    progress: TextIO | None = None,
) -> Saga:
    """Wait until the saga's status is one of :data:`ENDED` (the client's ``wait``: long polls
    of ``/sagas/{id}/wait``, or polls every ``interval`` seconds at most on a service without
    them); returns it then.

    Writes a progress line to ``progress`` for ``first`` (the saga as last seen, if it was)
    and whenever the status or the step changes (rewritten in place on a terminal).

    Raises:
        WaitTimedOut: ``timeout`` seconds passed first.
    """
    started = time.monotonic()
    in_place = progress is not None and progress.isatty()
    shown = ""

    def show(current: Saga) -> None:
        nonlocal shown
        line = _progress(current, time.monotonic() - started)
        if progress is not None and (in_place or line.rsplit(",", 1)[0] != shown):
            progress.write(f"\r{line}\x1b[K" if in_place else f"{line}\n")
            progress.flush()
            shown = line.rsplit(",", 1)[0]

    if first is not None:
        show(first)
    try:
        return sagas.wait(saga_id, timeout=timeout, until=ENDED, on_change=show,
                          poll_every=interval)  # fmt: skip
    finally:
        if in_place and progress is not None:
            progress.write("\n")
