"""The ``saga-orchestrator events`` command group, and its writes:

=============================  ==========================================================
``events publish TYPE STREAM`` ``POST /events/publish``
``events replay STREAM_ID``    ``POST /events/replay/{stream_id}`` (pages followed)
``events replay --after-...``  ``POST /events/replay`` with a range of positions
=============================  ==========================================================

The reads are :mod:`._event_reads`'s.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ._api import EXIT_OK, ApiClient, UsageError
from ._command import json_argument, runner
from ._event_reads import PAGE, all_events, event_types, stream_events
from ._output import emit, json_text, key_values
from ._paging import Pages, limit_option

__all__ = ["register"]


def _publish(api: ApiClient, args: argparse.Namespace) -> int:
    data = json_argument(args.data, "--data")
    metadata = json_argument(args.metadata, "--metadata")
    for name, value in (("--data", data), ("--metadata", metadata)):
        if value is not None and not isinstance(value, dict):
            raise UsageError(f"{name}: expected a JSON object")
    body: dict[str, Any] = {
        "event_type": args.event_type,
        "stream_id": args.stream_id,
        "data": data or {},
    }
    if metadata is not None:
        body["metadata"] = metadata
    if args.expected_version is not None:
        body["expected_version"] = args.expected_version
    if args.event_id is not None:
        body["event_id"] = args.event_id
    answer = api.post("/events/publish", body)
    if args.json:
        emit(json_text(answer))
    elif isinstance(answer, Mapping):
        emit(key_values(list(answer.items())))
    else:
        emit("published")
    return EXIT_OK


def _replay(api: ApiClient, args: argparse.Namespace) -> int:
    if (args.stream_id is None) == (args.after_position is None):
        raise UsageError("give either STREAM_ID or --after-position")
    if args.stream_id is not None:
        if args.to_position is not None or args.type is not None:
            raise UsageError("--to-position and --type go with --after-position, not STREAM_ID")
        path = f"/events/replay/{quote(args.stream_id, safe='')}"
        start, following, first = "from_version", "next_from_version", args.from_version
        what = f"of {args.stream_id} "
    else:
        path = "/events/replay"
        start, following, first = "after_position", "next_after_position", args.after_position
        what = ""
    answers: list[dict[str, Any]] = []

    def fetch(where: Any, size: int) -> tuple[list[dict[str, Any]], Any]:
        body: dict[str, Any] = {start: where, "limit": size}
        if args.stream_id is None:
            body.update(to_position=args.to_position, event_type=args.type)
        answer = api.post(path, {k: v for k, v in body.items() if v is not None})
        answers.append(answer)
        return [{"event_id": event_id} for event_id in answer.get("event_ids", [])], answer.get(
            following
        )

    pages = Pages(fetch, first, limit=args.limit, page_size=PAGE)
    event_ids = [item["event_id"] for item in pages.all()]
    bus_stream = answers[-1].get("bus_stream") if answers else None
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
