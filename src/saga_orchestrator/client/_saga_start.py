"""``saga-orchestrator sagas start``: start a saga (``POST /sagas/start``) with an
idempotency key of the CLI's own, retried with that key after a 503 or a lost answer, and
``--wait`` for its end (long polls of ``GET /sagas/{id}/wait``)."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from . import _operations as ops
from ._api import EXIT_OK, ApiClient, SagaNotCompleted, ServiceError, UsageError
from ._command import json_argument
from ._output import emit, json_text, key_values
from ._saga_reads import saga_path, saga_text

__all__ = [
    "ENDED",
    "PARKED",
    "START_RETRIES",
    "STATUSES",
    "TERMINAL",
    "start",
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
MAX_START_PAUSE = 10.0
"""Longest pause before such a retry, in seconds."""


def start_saga(
    api: ApiClient,
    body: Mapping[str, Any],
    *,
    retries: int = START_RETRIES,
    pause: Callable[[float], None] = time.sleep,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """``POST /sagas/start`` with ``body``, which must hold an ``idempotency_key``; a 503 or a
    lost answer is retried ``retries`` times with that same key (the saga may have been
    created: the key finds it, and never starts a second one), after the answer's
    ``Retry-After`` or a growing pause. Each retry is said on ``progress``.

    Raises:
        ServiceError: still no saga after the retries; the message gives the key to retry with.
    """
    key = body["idempotency_key"]
    for attempt in range(retries + 1):
        try:
            return api.post("/sagas/start", dict(body))
        except ServiceError as exc:
            if not exc.retryable or attempt == retries:
                raise ServiceError(
                    f"{exc}\n  the saga may have been created: start it again with "
                    f"--idempotency-key {key} (that never makes a second one)",
                    code=exc.code,
                ) from None
            wait = min(MAX_START_PAUSE, exc.retry_after or 2.0**attempt)
            if progress is not None:
                first_line = str(exc).splitlines()[0]
                progress.write(f"{first_line}; retrying in {wait:g} s with the same key\n")
            pause(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def start(api: ApiClient, args: argparse.Namespace) -> int:
    data = json_argument(args.data, "--data")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UsageError("--data: expected a JSON object")
    key = args.idempotency_key or str(uuid.uuid4())  # our own: a retry can always find the saga
    body: dict[str, Any] = {"saga_type": args.saga_type, "data": data, "idempotency_key": key}
    if args.correlation_id:
        body["correlation_id"] = args.correlation_id
    if args.version is not None:
        body["version"] = args.version
    saga = start_saga(api, body, retries=args.retries, progress=sys.stderr)
    if args.wait:
        saga = wait_for_end(
            api, saga, interval=args.interval, timeout=args.wait_timeout, progress=sys.stderr
        )
    if args.quiet:
        emit(str(saga["saga_id"]))
    elif args.json:
        emit(json_text(saga))
    elif args.wait:
        emit(saga_text(saga))
    else:
        created = "yes" if saga.get("created", True) else "no: the saga of this idempotency key"
        emit(
            key_values(
                [
                    ("saga", saga["saga_id"]),
                    ("status", saga["status"]),
                    ("new", created),
                    ("idempotency key", saga.get("idempotency_key", key)),
                ]
            )
        )
    if args.wait:
        _completed(saga)
    return EXIT_OK


def wait_saga(api: ApiClient, args: argparse.Namespace) -> int:
    """``sagas wait ID``: print the saga once it has ended."""
    saga = api.get(saga_path(args.saga_id))
    saga = wait_for_end(api, saga, timeout=args.wait_timeout, progress=sys.stderr)
    emit(json_text(saga) if args.json else saga_text(saga))
    _completed(saga)
    return EXIT_OK


def _completed(saga: Mapping[str, Any]) -> None:
    if saga["status"] != "completed":
        raise SagaNotCompleted(
            f"saga {saga['saga_id']} ended {saga['status']}: {saga.get('error') or 'no error'}"
        )


def _progress(saga: Mapping[str, Any], elapsed: float) -> str:
    steps = saga.get("steps") or []
    names = [step.get("name") for step in steps]
    where = ""
    current = saga.get("current_step")
    if current in names:
        where = f", step {current} ({names.index(current) + 1}/{len(names)})"
    return f"saga {saga.get('saga_id')}: {saga.get('status')}{where}, {elapsed:.1f} s"


def wait_for_end(
    api: ApiClient,
    saga: Mapping[str, Any],
    *,
    interval: float = 2.0,
    timeout: float | None = None,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Wait until the saga's status is one of :data:`ENDED` (long polls of
    ``/sagas/{id}/wait``, or polls every ``interval`` seconds at most on a service without
    them); returns it then.

    Writes a progress line to ``progress`` whenever the status or the step changes (rewritten
    in place on a terminal).

    Raises:
        WaitTimedOut: ``timeout`` seconds passed first.
    """
    started = time.monotonic()
    in_place = progress is not None and progress.isatty()
    shown = ""

    def show(current: Mapping[str, Any]) -> None:
        nonlocal shown
        line = _progress(current, time.monotonic() - started)
        if progress is not None and (in_place or line.rsplit(",", 1)[0] != shown):
            progress.write(f"\r{line}\x1b[K" if in_place else f"{line}\n")
            progress.flush()
            shown = line.rsplit(",", 1)[0]

    show(saga)
    try:
        ended = api.sagas._run(
            ops.wait(
                str(saga["saga_id"]),
                timeout=timeout,
                until=ENDED,
                on_change=lambda current: show(current.raw),
                poll_every=interval,
            )
        )
    finally:
        if in_place and progress is not None:
            progress.write("\n")
    return dict(ended.raw)
