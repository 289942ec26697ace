"""``saga-orchestrator sagas list|show|steps|events|types``: reading sagas.

=========================  ======================================
``sagas list``             ``GET /sagas/`` (pages followed)
``sagas show ID``          ``GET /sagas/{id}`` (``--events``: and its transitions)
``sagas steps ID``         ``GET /sagas/{id}/steps``
``sagas events ID``        ``GET /sagas/{id}/events`` (pages followed)
``sagas types``            ``GET /sagas/types/available``
=========================  ======================================
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ._api import EXIT_OK, ApiClient
from ._output import EVENT_COLUMNS, Column, emit, json_text, key_values, short_time, table
from ._paging import Pages

__all__ = [
    "EVENTS_PAGE",
    "LIST_PAGE",
    "list_sagas",
    "saga_events",
    "saga_path",
    "saga_text",
    "show_events",
    "show_saga",
    "show_steps",
    "show_types",
]

LIST_PAGE = 500
"""The largest page of ``GET /sagas/``."""
EVENTS_PAGE = 1000
"""The largest page of ``GET /sagas/{id}/events``."""

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
_BRANCH_COLUMN: Column = (
    "branch",
    lambda s: f"{s['group']}/{s.get('branch')}" if s.get("group") else "",
)
"""Shown when a step of the saga is in a parallel group: ``group/branch``."""
_TYPE_COLUMNS: Sequence[Column] = (
    ("name", lambda t: t.get("name")),
    ("version", lambda t: t.get("version")),
    ("steps", lambda t: ", ".join(step.get("name", "") for step in t.get("steps", []))),
    ("triggers", lambda t: ", ".join(t.get("triggers", []))),
    ("description", lambda t: t.get("description")),
)


def saga_path(saga_id: str, *rest: str) -> str:
    return "/".join(["/sagas", quote(saga_id, safe=""), *rest])


def saga_text(saga: Mapping[str, Any]) -> str:
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
        ("trigger event", saga.get("trigger_event_id")),
        ("input", saga.get("input")),
        ("result", saga.get("result")),
        ("error", saga.get("error")),
    ]
    text = key_values(pairs)
    steps = saga.get("steps")
    if steps:
        text += "\n\n" + steps_text(steps)
    return text


def steps_text(steps: Sequence[Mapping[str, Any]]) -> str:
    """Steps as a table (with a ``branch`` column if the saga has parallel branches), then
    each step's last error with the frames kept of it."""
    columns = list(_STEP_COLUMNS)
    if any(step.get("group") for step in steps):
        columns.insert(2, _BRANCH_COLUMN)
    text = table(steps, columns)
    for step in steps:
        kind = str(step.get("error_type") or "")
        if kind:
            what = "compensation of step" if step.get("compensation_error") else "step"
            error = str(step.get("compensation_error") or step.get("error"))
            error = error if error.startswith(kind) else f"{kind}: {error}"
            text += f"\n\n{what} {step.get('name')!r} failed: {error}"
            text += "".join(f"\n  {frame}" for frame in step.get("error_frames") or ())
    return text


def _more(hint: str) -> None:
    print(f"more: {hint}", file=sys.stderr)


def list_sagas(api: ApiClient, args: argparse.Namespace) -> int:
    filters = {
        "status": ",".join(args.status) if args.status else None,
        "saga_type": args.type,
        "correlation_id": args.correlation_id,
        "idempotency_key": args.idempotency_key,
        "trigger_event_id": args.trigger_event,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "updated_after": args.updated_after,
        "updated_before": args.updated_before,
    }

    def fetch(cursor: Any, size: int) -> tuple[list[dict[str, Any]], Any]:
        page = api.get("/sagas/", **filters, limit=size, cursor=cursor or None)
        return list(page.get("items", [])), page.get("next_cursor")

    pages = Pages(fetch, args.cursor or "", limit=args.limit, page_size=LIST_PAGE)
    items = pages.all()
    if args.json:
        emit(json_text({"items": items, "next_cursor": pages.next}))
    elif args.quiet:
        if items:
            emit("\n".join(str(saga.get("saga_id")) for saga in items))
    else:
        emit(table(items, _LIST_COLUMNS) if items else "no sagas")
    if pages.next and not args.json:
        _more(f"--cursor {pages.next} (or --all)")
    return EXIT_OK


def saga_events(
    api: ApiClient, saga_id: str, *, from_version: int = 1, limit: int | None = None
) -> Pages:
    """The saga's transitions from ``from_version``, page after page."""

    def fetch(version: Any, size: int) -> tuple[list[dict[str, Any]], Any]:
        page = api.get(saga_path(saga_id, "events"), from_version=version, limit=size)
        return list(page.get("items", [])), page.get("next_from_version")

    return Pages(fetch, from_version, limit=limit, page_size=EVENTS_PAGE)


def show_saga(api: ApiClient, args: argparse.Namespace) -> int:
    saga = api.get(saga_path(args.saga_id))
    events = saga_events(api, args.saga_id).all() if args.events else None
    if args.json:
        emit(json_text(saga if events is None else {**saga, "events": events}))
        return EXIT_OK
    text = saga_text(saga)
    if events is not None:
        text += "\n\n" + table(events, EVENT_COLUMNS)
    emit(text)
    return EXIT_OK


def show_steps(api: ApiClient, args: argparse.Namespace) -> int:
    answer = api.get(saga_path(args.saga_id, "steps"))
    steps = answer.get("items", [])
    if args.json:
        emit(json_text(answer))
    else:
        emit(steps_text(steps) if steps else "no steps")
    return EXIT_OK


def show_events(api: ApiClient, args: argparse.Namespace) -> int:
    pages = saga_events(api, args.saga_id, from_version=args.from_version, limit=args.limit)
    items = pages.all()
    if args.json:
        emit(json_text({"saga_id": args.saga_id, "items": items, "next_from_version": pages.next}))
    else:
        emit(table(items, EVENT_COLUMNS) if items else "no transitions")
        if pages.next:
            _more(f"--from-version {pages.next}")
    return EXIT_OK


def show_types(api: ApiClient, args: argparse.Namespace) -> int:
    types = api.get("/sagas/types/available").get("items", [])
    if args.json:
        emit(json_text(types))
    else:
        emit(table(types, _TYPE_COLUMNS) if types else "no saga types (see docs/sagas.md)")
    return EXIT_OK
