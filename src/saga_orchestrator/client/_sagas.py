"""``saga-orchestrator sagas list|show|types|start|cancel|retry``."""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO
from urllib.parse import quote

from ._api import EXIT_OK, ApiClient, SagaNotCompleted, ServiceError, UsageError, WaitTimedOut
from ._command import Handler, json_argument, runner
from ._output import Column, emit, json_text, key_values, short_time, table

__all__ = ["ENDED", "START_RETRIES", "register", "start_saga"]

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

_LIST_COLUMNS: Sequence[Column] = (
    ("saga id", lambda s: s.get("saga_id")),
    ("type", lambda s: s.get("saga_type")),
    ("status", lambda s: s.get("status")),
    ("step", lambda s: s.get("current_step")),
    ("created", lambda s: short_time(s.get("created_at"))),
    ("updated", lambda s: short_time(s.get("updated_at"))),
)
_STEP_COLUMNS: Sequence[Column] = (
    ("#", lambda s: s.get("index")),
    ("step", lambda s: s.get("name")),
    ("status", lambda s: s.get("status")),
    ("attempts", lambda s: s.get("attempts")),
    ("compensation", lambda s: s.get("compensation_status")),
    ("error", lambda s: s.get("error") or s.get("compensation_error")),
)
_EVENT_COLUMNS: Sequence[Column] = (
    ("version", lambda e: e.get("version")),
    ("type", lambda e: e.get("type")),
    ("recorded", lambda e: short_time(e.get("recorded_at"))),
    ("data", lambda e: e.get("data")),
)
_TYPE_COLUMNS: Sequence[Column] = (
    ("name", lambda t: t.get("name")),
    ("version", lambda t: t.get("version")),
    ("steps", lambda t: ", ".join(step.get("name", "") for step in t.get("steps", []))),
    ("triggers", lambda t: ", ".join(t.get("triggers", []))),
    ("description", lambda t: t.get("description")),
)


def _path(saga_id: str, *rest: str) -> str:
    return "/".join(["/sagas", quote(saga_id, safe=""), *rest])


def _saga_text(saga: Mapping[str, Any]) -> str:
    """A saga for a person: its fields, then its steps as a table."""
    pairs: list[tuple[str, Any]] = [
        ("saga", saga.get("saga_id")),
        ("type", f"{saga.get('saga_type')} (version {saga.get('saga_version')})"),
        ("status", saga.get("status")),
        ("current step", saga.get("current_step")),
        ("created", short_time(saga.get("created_at"))),
        ("updated", short_time(saga.get("updated_at"))),
        ("deadline", short_time(saga.get("deadline_at"))),
        ("idempotency key", saga.get("idempotency_key")),
        ("correlation id", saga.get("correlation_id")),
        ("input", saga.get("input")),
        ("result", saga.get("result")),
        ("error", saga.get("error")),
    ]
    text = key_values(pairs)
    steps = saga.get("steps")
    if steps:
        text += "\n\n" + table(steps, _STEP_COLUMNS)
    return text


# --------------------------------------------------------------------------------------------
# Commands.


def _list(api: ApiClient, args: argparse.Namespace) -> int:
    params = {
        "status": args.status,
        "saga_type": args.type,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    page = api.get("/sagas/", **params)
    items = list(page.get("items", []))
    while args.all and page.get("next_cursor"):
        page = api.get("/sagas/", **{**params, "cursor": page["next_cursor"]})
        items += page.get("items", [])
    if args.json:
        emit(json_text({"items": items, "next_cursor": page.get("next_cursor")}))
    elif args.quiet:
        if items:
            emit("\n".join(str(saga.get("saga_id")) for saga in items))
    else:
        emit(table(items, _LIST_COLUMNS) if items else "no sagas")
        if page.get("next_cursor"):
            print(f"more: --cursor {page['next_cursor']} (or --all)", file=sys.stderr)
    return EXIT_OK


def _show(api: ApiClient, args: argparse.Namespace) -> int:
    saga = api.get(_path(args.saga_id))
    events = api.get(_path(args.saga_id, "events")).get("items", []) if args.events else None
    if args.json:
        emit(json_text(saga if events is None else {**saga, "events": events}))
        return EXIT_OK
    text = _saga_text(saga)
    if events is not None:
        text += "\n\n" + table(events, _EVENT_COLUMNS)
    emit(text)
    return EXIT_OK


def _types(api: ApiClient, args: argparse.Namespace) -> int:
    types = api.get("/sagas/types/available").get("items", [])
    if args.json:
        emit(json_text(types))
    else:
        emit(table(types, _TYPE_COLUMNS) if types else "no saga types (see docs/sagas.md)")
    return EXIT_OK


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


def _start(api: ApiClient, args: argparse.Namespace) -> int:
    data = json_argument(args.data, "--data")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UsageError("--data: expected a JSON object")
    key = args.idempotency_key or str(uuid.uuid4())  # our own: a retry can always find the saga
    body: dict[str, Any] = {"saga_type": args.saga_type, "data": data, "idempotency_key": key}
    if args.correlation_id:
        body["correlation_id"] = args.correlation_id
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
        emit(_saga_text(saga))
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
    if args.wait and saga["status"] != "completed":
        raise SagaNotCompleted(
            f"saga {saga['saga_id']} ended {saga['status']}: {saga.get('error') or 'no error'}"
        )
    return EXIT_OK


def _act_on(verb: str) -> Handler:
    """``cancel`` or ``retry``: POST to the saga's ``verb`` route."""

    def act(api: ApiClient, args: argparse.Namespace) -> int:
        body = {"reason": args.reason} if getattr(args, "reason", None) else None
        answer = api.post(_path(args.saga_id, verb), body)
        if args.json:
            emit(json_text(answer))
        else:
            emit(key_values([("saga", answer.get("saga_id")), ("status", answer.get("status"))]))
        return EXIT_OK

    return act


# --------------------------------------------------------------------------------------------
# Waiting.


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
    interval: float = 0.5,
    timeout: float | None = None,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Poll the saga until its status is one of :data:`ENDED`; returns it then.

    Writes a progress line to ``progress`` whenever the status or the step changes (rewritten
    in place on a terminal).

    Raises:
        WaitTimedOut: ``timeout`` seconds passed first.
    """
    started = time.monotonic()
    current = dict(saga)
    in_place = progress is not None and progress.isatty()
    shown = ""
    while True:
        elapsed = time.monotonic() - started
        line = _progress(current, elapsed)
        if progress is not None and (in_place or line.rsplit(",", 1)[0] != shown):
            progress.write(f"\r{line}\x1b[K" if in_place else f"{line}\n")
            progress.flush()
            shown = line.rsplit(",", 1)[0]
        if current.get("status") in ENDED:
            if in_place and progress is not None:
                progress.write("\n")
            return current
        if timeout is not None and elapsed >= timeout:
            if in_place and progress is not None:
                progress.write("\n")
            raise WaitTimedOut(
                f"gave up waiting after {timeout:g} s: saga {current.get('saga_id')} is "
                f"{current.get('status')} (sagas show {current.get('saga_id')})"
            )
        time.sleep(interval)
        current = api.get(_path(str(current["saga_id"])))


# --------------------------------------------------------------------------------------------
# The parser.


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``sagas`` and its subcommands to ``commands`` (an argparse subparsers object)."""
    group = commands.add_parser(
        "sagas", help="list, show, start, cancel and retry sagas on a running service"
    )
    verbs = group.add_subparsers(dest="sagas_command", metavar="COMMAND", required=True)

    show_list = verbs.add_parser("list", parents=[common], help="list sagas, newest first")
    show_list.add_argument("--status", choices=STATUSES)
    show_list.add_argument("--type", metavar="SAGA_TYPE")
    show_list.add_argument("--created-after", metavar="TIME", help="ISO-8601 or epoch seconds")
    show_list.add_argument("--created-before", metavar="TIME", help="ISO-8601 or epoch seconds")
    show_list.add_argument("--limit", type=int, metavar="N", help="sagas per page (1-500)")
    show_list.add_argument("--cursor", help="the page after this cursor")
    show_list.add_argument("--all", action="store_true", help="follow the cursor to the end")
    show_list.add_argument("-q", "--quiet", action="store_true", help="print only saga ids")
    show_list.set_defaults(handler=runner(_list))

    show = verbs.add_parser("show", parents=[common], help="a saga with its steps")
    show.add_argument("saga_id")
    show.add_argument("--events", action="store_true", help="with its recorded transitions")
    show.set_defaults(handler=runner(_show))

    types = verbs.add_parser("types", parents=[common], help="the saga types the service runs")
    types.set_defaults(handler=runner(_types))

    start = verbs.add_parser("start", parents=[common], help="start a saga")
    start.add_argument("saga_type")
    start.add_argument(
        "--data", metavar="JSON", help="its input: JSON, @file or - for stdin (default: {})"
    )
    start.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="start at most once per key (default: a new key, printed; give it again to "
        "retry a start whose outcome you did not see)",
    )
    start.add_argument(
        "--retries",
        type=_count,
        default=START_RETRIES,
        metavar="N",
        help="retry a 503 or a lost answer N times with the same key (default: %(default)s)",
    )
    start.add_argument("--correlation-id", metavar="ID")
    start.add_argument(
        "--wait", action="store_true", help="wait until it ends (progress on stderr)"
    )
    start.add_argument(
        "--wait-timeout", type=_positive, metavar="SECONDS", help="with --wait: give up after"
    )
    start.add_argument(
        "--interval", type=_positive, default=0.5, metavar="SECONDS", help=argparse.SUPPRESS
    )
    start.add_argument("-q", "--quiet", action="store_true", help="print only the saga id")
    start.set_defaults(handler=runner(_start))

    cancel = verbs.add_parser("cancel", parents=[common], help="cancel a running saga")
    cancel.add_argument("saga_id")
    cancel.add_argument("--reason", help="recorded with the cancellation")
    cancel.set_defaults(handler=runner(_act_on("cancel")))

    retry = verbs.add_parser(
        "retry", parents=[common], help="retry a parked saga (compensation_failed or failed)"
    )
    retry.add_argument("saga_id")
    retry.set_defaults(handler=runner(_act_on("retry")))
