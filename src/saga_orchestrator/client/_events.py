"""``saga-orchestrator events publish|tail``, against the event API of the bus:

- ``POST /events/publish`` with ``{"event_type", "stream_id", "data", "metadata"?,
  "expected_version"?, "event_id"?}``;
- ``GET /events/stream/<stream_id>?from_version=&limit=``, answering ``{"items": [...],
  "next_from_version": ...}`` (each item has at least ``version`` and ``type`` or
  ``event_type``).

A service without that API answers 404 ``not_found``; the command then says so (exit 3).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ._api import EXIT_OK, ApiClient, NotFound, UsageError
from ._command import Handler, json_argument, runner
from ._output import Column, emit, json_text, key_values, short_time, table

__all__ = ["register"]

_EVENT_COLUMNS: Sequence[Column] = (
    ("version", lambda e: e.get("version")),
    ("type", lambda e: e.get("event_type") or e.get("type")),
    ("event id", lambda e: e.get("event_id")),
    ("recorded", lambda e: short_time(e.get("recorded_at"))),
    ("data", lambda e: e.get("data")),
)
_NO_EVENT_API = "  (this service has no event API: it comes with the event bus)"


def _events_api(handler: Handler) -> Handler:
    """``handler``, with a hint when the route itself is missing (not an unknown stream)."""

    def run(api: ApiClient, args: argparse.Namespace) -> int:
        try:
            return handler(api, args)
        except NotFound as exc:
            if exc.code == "not_found":
                raise NotFound(f"{exc}\n{_NO_EVENT_API}", code=exc.code) from None
            raise

    return run


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


def _read(
    api: ApiClient, stream_id: str, from_version: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the stream, and the version to read from next."""
    page = api.get(
        f"/events/stream/{quote(stream_id, safe='')}", from_version=from_version, limit=limit
    )
    items = list(page.get("items", page.get("events", [])) if isinstance(page, dict) else [])
    following = page.get("next_from_version") if isinstance(page, dict) else None
    if not isinstance(following, int):
        versions = [e["version"] for e in items if isinstance(e.get("version"), int)]
        following = max(versions) + 1 if versions else from_version
    return items, following


def _print_events(items: Sequence[Mapping[str, Any]], as_json: bool, *, header: bool) -> None:
    if as_json:  # one object per line: easy to pipe while following
        emit("\n".join(json.dumps(event, ensure_ascii=False) for event in items))
        return
    lines = table(items, _EVENT_COLUMNS).split("\n")
    emit("\n".join(lines if header else lines[1:]))


def _tail(api: ApiClient, args: argparse.Namespace) -> int:
    version, printed = args.from_version, 0
    try:
        while True:
            items, following = _read(api, args.stream_id, version, args.limit)
            if items:
                _print_events(items, args.json, header=printed == 0)
                printed += len(items)
            moved, version = following > version, following
            if moved and len(items) >= args.limit:
                continue  # more is waiting: read on at once
            if not args.follow:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:  # the way to stop --follow
        return EXIT_OK
    if not printed and not args.json:
        emit(f"no events in {args.stream_id} from version {args.from_version}")
    return EXIT_OK


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text}")
        return value

    return parse


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``events`` and its subcommands to ``commands`` (an argparse subparsers object)."""
    group = commands.add_parser("events", help="publish and read events (the event bus API)")
    verbs = group.add_subparsers(dest="events_command", metavar="COMMAND", required=True)

    publish = verbs.add_parser("publish", parents=[common], help="publish one event")
    publish.add_argument("event_type")
    publish.add_argument("stream_id")
    publish.add_argument("--data", metavar="JSON", help="JSON, @file or - for stdin (default {})")
    publish.add_argument("--metadata", metavar="JSON", help="JSON, @file or - for stdin")
    publish.add_argument("--expected-version", type=_at_least(0), metavar="N")
    publish.add_argument("--event-id", metavar="ID")
    publish.set_defaults(handler=runner(_events_api(_publish)))

    tail = verbs.add_parser("tail", parents=[common], help="print a stream's events")
    tail.add_argument("stream_id")
    tail.add_argument("--from-version", type=_at_least(1), default=1, metavar="N")
    tail.add_argument("--limit", type=_at_least(1), default=100, metavar="N", help="per request")
    tail.add_argument("-f", "--follow", action="store_true", help="keep polling for new events")
    tail.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="--follow")
    tail.set_defaults(handler=runner(_events_api(_tail)))
