"""``saga-orchestrator events stream|all|types``: reading the event store.

=============================  ==========================================================
``events stream STREAM_ID``    ``read_stream`` (``GET /events/stream/{stream_id}``; pages
                               followed; ``--follow`` keeps polling; ``tail`` is another
                               name)
``events all``                 ``read_all`` (``GET /events/all``; pages followed)
``events types``               ``event_types`` (``GET /events/types``)
=============================  ==========================================================
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ._errors import EXIT_OK
from ._models import Event
from ._output import EVENT_COLUMNS, Column, emit, json_text, short_time, table
from ._paging import Pages
from ._saga_client import SyncSagaClient

__all__ = ["PAGE", "all_events", "event_types", "stream_events"]

PAGE = 1000
"""The largest page of the event routes."""

_ALL_COLUMNS: Sequence[Column] = (
    ("position", lambda e: e.position),
    ("stream", lambda e: e.stream_id),
    ("version", lambda e: e.version),
    ("type", lambda e: e.type),
    ("event id", lambda e: e.event_id),
    ("recorded", lambda e: short_time(e.recorded_at)),
)
_TRIGGER_COLUMNS: Sequence[Column] = (
    ("event type", lambda trigger: trigger[0]),
    ("starts", lambda trigger: ", ".join(trigger[1])),
)


def _print_page(
    items: Sequence[Event], columns: Sequence[Column], *, as_json: bool, header: bool
) -> None:
    """A page: JSON lines (one object per line, easy to pipe while following), or table rows."""
    if as_json:
        emit("\n".join(json.dumps(event.raw, ensure_ascii=False) for event in items))
        return
    lines = table(items, columns).split("\n")
    emit("\n".join(lines if header else lines[1:]))


def stream_events(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    version, printed = args.from_version, 0

    def fetch(start: Any, size: int) -> Any:
        return sagas.read_stream(args.stream_id, from_version=start, limit=size)

    try:
        while True:
            remaining = None if args.limit is None else args.limit - printed
            pages = Pages(fetch, version, limit=remaining, page_size=PAGE)
            for items in pages:
                if items:
                    _print_page(items, EVENT_COLUMNS, as_json=args.json, header=printed == 0)
                    printed += len(items)
                    version = items[-1].version + 1
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


def all_events(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    def fetch(after: Any, size: int) -> Any:
        return sagas.read_all(after_position=after, limit=size, event_type=args.type)

    pages = Pages(fetch, args.after_position, limit=args.limit, page_size=PAGE)
    items = pages.all()
    if args.json:
        raw = [event.raw for event in items]
        emit(json_text({"items": raw, "next_after_position": pages.next}))
        return EXIT_OK
    emit(table(items, _ALL_COLUMNS) if items else "no events")
    if pages.next is not None:
        print(f"more: --after-position {pages.next}", file=sys.stderr)
    return EXIT_OK


def event_types(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    known = sagas.event_types()
    if args.json:
        emit(json_text(known.raw))
        return EXIT_OK
    triggers = list(known.triggers.items())
    text = table(triggers, _TRIGGER_COLUMNS) if triggers else "no event type starts a saga"
    text += "\n\nseen in the store: " + (", ".join(known.seen) if known.seen else "none")
    emit(text)
    return EXIT_OK
