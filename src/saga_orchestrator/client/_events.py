"""The ``saga-orchestrator events`` command group, and its writes:

=============================  ==========================================================
``events publish TYPE STREAM`` ``publish`` (``POST /events/publish``)
``events replay STREAM_ID``    ``replay_stream`` (``POST /events/replay/{stream_id}``;
                               pages followed)
``events replay --after-...``  ``replay_range`` (``POST /events/replay``)
=============================  ==========================================================

The reads are :mod:`._event_reads`'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._command import json_argument, runner
from ._errors import EXIT_OK, UsageError
from ._event_reads import PAGE, all_events, event_types, stream_events
from ._models import Page, Replayed
from ._output import emit, json_text, key_values
from ._paging import Pages, limit_option
from ._saga_client import SyncSagaClient

__all__ = ["register"]


def _publish(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    data = json_argument(args.data, "--data")
    metadata = json_argument(args.metadata, "--metadata")
    for name, value in (("--data", data), ("--metadata", metadata)):
        if value is not None and not isinstance(value, dict):
            raise UsageError(f"{name}: expected a JSON object")
    event = sagas.publish(args.event_type, args.stream_id, data or {}, event_id=args.event_id,
                          metadata=metadata, expected_version=args.expected_version)  # fmt: skip
    emit(json_text(event.raw) if args.json else key_values(list(event.raw.items())))
    return EXIT_OK


def _replay(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    if (args.stream_id is None) == (args.after_position is None):
        raise UsageError("give either STREAM_ID or --after-position")
    if args.stream_id is not None:
        if args.to_position is not None or args.type is not None:
            raise UsageError("--to-position and --type go with --after-position, not STREAM_ID")
        start, following, first = "from_version", "next_from_version", args.from_version
        what = f"of {args.stream_id} "
    else:
        start, following, first = "after_position", "next_after_position", args.after_position
        what = ""
    answers: list[Replayed] = []

    def fetch(where: Any, size: int) -> Page[str]:
        if args.stream_id is not None:
            answer = sagas.replay_stream(args.stream_id, from_version=where, limit=size)
        else:
            answer = sagas.replay_range(
                after_position=where, limit=size, to_position=args.to_position, event_type=args.type
            )
        answers.append(answer)
        return Page(items=answer.event_ids, next=answer.next, raw=answer.raw)

    pages = Pages(fetch, first, limit=args.limit, page_size=PAGE)
    event_ids = pages.all()
    bus_stream = answers[-1].bus_stream if answers else None
    if args.json:
        emit(
            json_text(
                {
                    "replayed": len(event_ids),
                    "event_ids": event_ids,
                    "bus_stream": bus_stream,
                    following: pages.next,
                }
            )
        )
        return EXIT_OK
    emit(f"replayed {len(event_ids)} events {what}to {bus_stream}")
    if pages.next is not None:
        print(f"more: --{start.replace('_', '-')} {pages.next}", file=sys.stderr)
    return EXIT_OK


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text}")
        return value

    return parse


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``events`` and its verbs to ``commands`` (an argparse subparsers object)."""
    group = commands.add_parser(
        "events",
        help="publish, read and replay events",
        description="The event store and the bus of a running service (docs/api.md, "
        "section Events; docs/events.md).",
    )
    verbs = group.add_subparsers(dest="events_command", metavar="COMMAND", required=True)

    publish = verbs.add_parser("publish", parents=[common], help="publish one event")
    publish.add_argument("event_type")
    publish.add_argument("stream_id")
    publish.add_argument("--data", metavar="JSON", help="JSON, @file or - for stdin (default {})")
    publish.add_argument("--metadata", metavar="JSON", help="JSON, @file or - for stdin")
    publish.add_argument("--expected-version", type=_at_least(0), metavar="N")
    publish.add_argument("--event-id", metavar="ID")
    publish.set_defaults(handler=runner(_publish))

    stream = verbs.add_parser(
        "stream", aliases=["tail"], parents=[common], help="print a stream's events"
    )
    stream.add_argument("stream_id")
    stream.add_argument("--from-version", type=_at_least(1), default=1, metavar="N")
    limit_option(stream, None, "events")
    stream.add_argument("-f", "--follow", action="store_true", help="keep polling for new events")
    stream.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="--follow")
    stream.set_defaults(handler=runner(stream_events))

    every = verbs.add_parser(
        "all", parents=[common], help="events of every stream in commit order (transitions too)"
    )
    every.add_argument("--after-position", type=_at_least(0), default=0, metavar="N")
    every.add_argument("--type", metavar="EVENT_TYPE", help="only events of this type")
    limit_option(every, 100, "events")
    every.set_defaults(handler=runner(all_events))

    types = verbs.add_parser(
        "types", parents=[common], help="the event types that start sagas, and those seen"
    )
    types.set_defaults(handler=runner(event_types))

    replay = verbs.add_parser(
        "replay",
        parents=[common],
        help="re-publish stored events to the bus: a stream, or a range of positions",
    )
    replay.add_argument("stream_id", nargs="?", help="the stream to replay")
    replay.add_argument("--from-version", type=_at_least(1), default=1, metavar="N")
    replay.add_argument(
        "--after-position", type=_at_least(0), metavar="N", help="instead of a stream: after it"
    )
    replay.add_argument("--to-position", type=_at_least(0), metavar="N")
    replay.add_argument("--type", metavar="EVENT_TYPE", help="with --after-position")
    limit_option(replay, None, "events", verb="replay")
    replay.set_defaults(handler=runner(_replay))
