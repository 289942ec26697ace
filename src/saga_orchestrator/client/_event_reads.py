"""``saga-orchestrator events stream|all|types``: reading the event store.

=============================  ==========================================================
``events stream STREAM_ID``    ``GET /events/stream/{stream_id}`` (pages followed;
                               ``--follow`` keeps polling; ``tail`` is another name)
``events all``                 ``GET /events/all`` (pages followed)
``events types``               ``GET /events/types``
=============================  ==========================================================
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ._api import EXIT_OK, ApiClient
from ._output import EVENT_COLUMNS, Column, emit, json_text, short_time, table
from ._paging import Pages

__all__ = ["PAGE", "all_events", "event_types", "stream_events"]

PAGE = 1000
"""The largest page of the event routes."""

_ALL_COLUMNS: Sequence[Column] = (
    ("position", lambda e: e.get("position")),
    ("stream", lambda e: e.get("stream_id")),
    ("version", lambda e: e.get("version")),
    ("type", lambda e: e.get("type")),
    ("event id", lambda e: e.get("event_id")),
    ("recorded", lambda e: short_time(e.get("recorded_at"))),
)
_TRIGGER_COLUMNS: Sequence[Column] = (
    ("event type", lambda t: t.get("event_type")),
    ("starts", lambda t: ", ".join(t.get("saga_types", []))),
)


def _print_page(
    items: Sequence[Mapping[str, Any]], columns: Sequence[Column], *, as_json: bool, header: bool
) -> None:
    """A page: JSON lines (one object per line, easy to pipe while following), or table rows."""
    if as_json:
        emit("\n".join(json.dumps(event, ensure_ascii=False) for event in items))
        return
    lines = table(items, columns).split("\n")
    emit("\n".join(lines if header else lines[1:]))


def stream_events(api: ApiClient, args: argparse.Namespace) -> int:
    path = f"/events/stream/{quote(args.stream_id, safe='')}"
    version, printed = args.from_version, 0

    def fetch(start: Any, size: int) -> tuple[list[dict[str, Any]], Any]:
        page = api.get(path, from_version=start, limit=size)
        return list(page.get("items", [])), page.get("next_from_version")

    try:
        while True:
            remaining = None if args.limit is None else args.limit - printed
            pages = Pages(fetch, version, limit=remaining, page_size=PAGE)
            for items in pages:
                if items:
                    _print_page(items, EVENT_COLUMNS, as_json=args.json, header=printed == 0)
                    printed += len(items)
                    version = int(items[-1]["version"]) + 1
            if not args.follow or (args.limit is not None and printed >= args.limit):
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:  # the way to stop --follow
        return EXIT_OK
    if not printed and not args.json:
        emit(f"no events in {args.stream_id} from version {args.from_version}")
    elif pages.next is not None and not args.json:
        print(f"more: --from-version {pages.next}", file=sys.stderr)
    return EXIT_OK


def all_events(api: ApiClient, args: argparse.Namespace) -> int:
    def fetch(after: Any, size: int) -> tuple[list[dict[str, Any]], Any]:
        page = api.get("/events/all", after_position=after, limit=size, event_type=args.type)
        return list(page.get("items", [])), page.get("next_after_position")

    pages = Pages(fetch, args.after_position, limit=args.limit, page_size=PAGE)
    items = pages.all()
    if args.json:
        emit(json_text({"items": items, "next_after_position": pages.next}))
        return EXIT_OK
    emit(table(items, _ALL_COLUMNS) if items else "no events")
    if pages.next is not None:
        print(f"more: --after-position {pages.next}", file=sys.stderr)
    return EXIT_OK


def event_types(api: ApiClient, args: argparse.Namespace) -> int:
    known = api.get("/events/types")
    if args.json:
        emit(json_text(known))
        return EXIT_OK
    triggers = known.get("triggers", [])
    text = table(triggers, _TRIGGER_COLUMNS) if triggers else "no event type starts a saga"
    seen = known.get("seen", [])
    text += "\n\nseen in the store: " + (", ".join(seen) if seen else "none")
    emit(text)
    return EXIT_OK
