"""The ``saga-orchestrator sagas`` command group: its verbs and their options.

The handlers live by job: reading (:mod:`._saga_reads`), starting and waiting
(:mod:`._saga_start`), operator actions (:mod:`._saga_actions`).
"""

from __future__ import annotations

import argparse
from typing import Any

from . import _saga_actions as actions
from ._command import runner
from ._paging import limit_option
from ._saga_actions import act_on
from ._saga_reads import list_sagas, show_events, show_saga, show_steps, show_types
from ._saga_start import START_RETRIES, STATUSES, start, start_options, wait_saga

__all__ = ["register"]


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


def _version(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a version >= 1, got {text}")
    return value


def _register_reads(verbs: Any, common: argparse.ArgumentParser) -> None:
    listing = verbs.add_parser("list", parents=[common], help="list sagas, newest first")
    listing.add_argument(
        "--status", choices=STATUSES, action="append", help="one status (repeat it for several)"
    )
    listing.add_argument("--type", metavar="SAGA_TYPE")
    listing.add_argument(
        "--version", type=_version, metavar="N", help="only sagas on this version of their type"
    )
    listing.add_argument(
        "--active", action="store_true", help="only active sagas (pending, running, compensating)"
    )
    listing.add_argument("--correlation-id", metavar="ID")
    listing.add_argument("--idempotency-key", metavar="KEY")
    listing.add_argument(
        "--trigger-event", metavar="EVENT_ID", help="the sagas this published event started"
    )
    for when in ("created", "updated"):
        for side, word in (("after", "at or after"), ("before", "before")):
            listing.add_argument(
                f"--{when}-{side}", metavar="TIME", help=f"{when} {word}: ISO-8601 or epoch seconds"
            )
    limit_option(listing, 50, "sagas")
    listing.add_argument("--cursor", help="start after this cursor (what `more:` said)")
    listing.add_argument("-q", "--quiet", action="store_true", help="print only saga ids")
    listing.set_defaults(handler=runner(list_sagas))

    show = verbs.add_parser("show", parents=[common], help="a saga with its steps")
    show.add_argument("saga_id")
    show.add_argument("--events", action="store_true", help="with its recorded transitions")
    show.set_defaults(handler=runner(show_saga))

    steps = verbs.add_parser("steps", parents=[common], help="a saga's steps")
    steps.add_argument("saga_id")
    steps.set_defaults(handler=runner(show_steps))

    events = verbs.add_parser(
        "events", parents=[common], help="a saga's recorded transitions, oldest first"
    )
    events.add_argument("saga_id")
    events.add_argument("--from-version", type=_version, default=1, metavar="N")
    limit_option(events, None, "transitions")
    events.set_defaults(handler=runner(show_events))

    types = verbs.add_parser("types", parents=[common], help="the saga types the service runs")
    types.set_defaults(handler=runner(show_types))


def _register_start(verbs: Any, common: argparse.ArgumentParser) -> None:
    begin = verbs.add_parser("start", parents=[common], help="start a saga")
    begin.add_argument("saga_type")
    begin.add_argument(
        "--data", metavar="JSON", help="its input: JSON, @file or - for stdin (default: {})"
    )
    begin.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="start at most once per key (default: a new key, printed; give it again to "
        "retry a start whose outcome you did not see)",
    )
    begin.add_argument(
        "--retries",
        type=_count,
        default=START_RETRIES,
        metavar="N",
        help="retry a 503 or a lost answer N times with the same key (default: %(default)s)",
    )
    begin.add_argument("--correlation-id", metavar="ID")
    begin.add_argument(
        "--version", type=_version, metavar="N", help="the type's version (default: the newest)"
    )
    begin.add_argument(
        "--wait", action="store_true", help="wait until it ends (progress on stderr)"
    )
    begin.add_argument(
        "--wait-timeout", type=_positive, metavar="SECONDS", help="with --wait: give up after"
    )
    begin.add_argument(
        "--interval", type=_positive, default=0.5, metavar="SECONDS", help=argparse.SUPPRESS
    )
    begin.add_argument("-q", "--quiet", action="store_true", help="print only the saga id")
    begin.set_defaults(handler=runner(start, start_options))

    wait = verbs.add_parser(
        "wait",
        parents=[common],
        help="wait until a saga ends (progress on stderr; exit 0 if "
        "it completed, 5 if it ended otherwise, 6 if it was still going at --wait-timeout)",
    )
    wait.add_argument("saga_id")
    wait.add_argument("--wait-timeout", type=_positive, metavar="SECONDS", help="give up after")
    wait.set_defaults(handler=runner(wait_saga))


def _register_operator_actions(verbs: Any, common: argparse.ArgumentParser) -> None:
    """Operator actions on one saga (the client's methods of :mod:`._saga_actions`).

    A new action's verb goes here: ``verbs.add_parser(<action>, parents=[common], ...)``, the
    saga id and its options, and ``handler=runner(act_on(actions.<its function>))``.
    """
    cancel = verbs.add_parser("cancel", parents=[common], help="cancel a running saga")
    cancel.add_argument("saga_id")
    cancel.add_argument("--reason", help="recorded with the cancellation")
    cancel.set_defaults(handler=runner(act_on(actions.cancel)))

    retry = verbs.add_parser(
        "retry", parents=[common], help="run the failed part of a parked saga again"
    )
    retry.add_argument("saga_id")
    _operator_options(retry, reason_required=False)
    retry.set_defaults(handler=runner(act_on(actions.retry)))

    resolve = verbs.add_parser(
        "resolve", parents=[common], help="state the outcome of a parked saga's step in doubt"
    )
    resolve.add_argument("saga_id")
    resolve.add_argument("--step", required=True, help="the step whose status is unknown")
    resolve.add_argument(
        "--outcome",
        required=True,
        choices=("applied", "not_applied"),
        help="applied: its compensation runs; not_applied: nothing to undo",
    )
    _operator_options(resolve)
    resolve.set_defaults(handler=runner(act_on(actions.resolve)))

    skip = verbs.add_parser(
        "skip-compensation",
        parents=[common],
        help="count a step's failed compensation as done by hand",
    )
    skip.add_argument("saga_id")
    skip.add_argument("--step", required=True, help="the step whose compensation failed")
    _operator_options(skip)
    skip.set_defaults(handler=runner(act_on(actions.skip_compensation)))

    resume = verbs.add_parser(
        "resume", parents=[common], help="run a parked saga forward again from a step"
    )
    resume.add_argument("saga_id")
    resume.add_argument("--from-step", required=True, metavar="STEP")
    resume.add_argument(
        "--input",
        metavar="JSON",
        help="a JSON merge patch of the saga's input: JSON, @file or - for stdin",
    )
    _operator_options(resume)
    resume.set_defaults(handler=runner(act_on(actions.resume)))


def _operator_options(parser: argparse.ArgumentParser, *, reason_required: bool = True) -> None:
    """``--reason`` (recorded with the action), ``--dry-run``, ``--wait``, ``--wait-timeout``."""
    parser.add_argument(
        "--reason", required=reason_required, help="why; recorded in the saga's history"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would happen; record nothing"
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the saga until it ends (exit 5 if it parks again)",
    )
    parser.add_argument(
        "--wait-timeout", type=_positive, metavar="SECONDS", help="with --wait: give up after"
    )


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``sagas`` and its verbs to ``commands`` (an argparse subparsers object)."""
    group = commands.add_parser(
        "sagas",
        help="list, show, start, cancel and repair sagas on a running service",
        description="Sagas of a running service (docs/api.md, section Sagas).",
    )
    verbs = group.add_subparsers(dest="sagas_command", metavar="COMMAND", required=True)
    _register_reads(verbs, common)
    _register_start(verbs, common)
    _register_operator_actions(verbs, common)
