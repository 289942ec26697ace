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
from collections.abc import Sequence
from typing import Any

from ._errors import EXIT_OK
from ._models import Event, Saga, SagaStep, TypeVersion
from ._output import EVENT_COLUMNS, Column, emit, json_text, key_values, short_time, table
from ._paging import Pages
from ._saga_client import SyncSagaClient

__all__ = [
    "EVENTS_PAGE",
    "LIST_PAGE",
    "list_sagas",
    "saga_events",
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
    ("saga id", lambda s: s.saga_id),
    ("type", lambda s: s.saga_type),
    ("status", lambda s: s.status),
    ("step", lambda s: s.current_step),
    ("created", lambda s: short_time(s.created_at)),
    ("updated", lambda s: short_time(s.updated_at)),
)
_STEP_COLUMNS: Sequence[Column] = (
    ("#", lambda s: s.index),
    ("step", lambda s: s.name),
    ("status", lambda s: s.status),
    ("attempts", lambda s: s.attempts),
    ("compensation", lambda s: s.compensation_status),
    ("error", lambda s: s.error or s.compensation_error),
)
_BRANCH_COLUMN: Column = (
    "branch",
    lambda s: f"{s.group}/{s.branch}" if s.group else "",
)
"""Shown when a step of the saga is in a parallel group: ``group/branch``."""
_TYPE_COLUMNS: Sequence[Column] = (
    ("name", lambda t: t.name),
    ("version", lambda t: t.version),
    ("active by version", lambda t: _versions_text(t.versions)),
    ("steps", lambda t: ", ".join(step.name for step in t.steps)),
    ("triggers", lambda t: ", ".join(t.triggers)),
    ("description", lambda t: t.description),
)


def _versions_text(versions: Sequence[TypeVersion]) -> str:
    """``1: 3, 2: 0`` (active sagas by version; ``(not loaded)`` after a version that is not)."""
    return ", ".join(
        f"{v.version}: {v.active}{'' if v.loaded else ' (not loaded)'}" for v in versions
    )


def saga_text(saga: Saga) -> str:
    """A saga for a person: its fields, then its steps as a table."""
    pairs: list[tuple[str, Any]] = [
        ("saga", saga.saga_id),
        ("type", f"{saga.saga_type} (version {saga.saga_version})"),
        ("status", saga.status),
        ("current step", saga.current_step),
        ("created", short_time(saga.created_at)),
        ("updated", short_time(saga.updated_at)),
        ("deadline", short_time(saga.deadline_at)),
        ("idempotency key", saga.idempotency_key),
        ("correlation id", saga.correlation_id),
        ("trigger event", saga.trigger_event_id),
        ("input", saga.input),
        ("result", saga.result),
        ("error", saga.error),
    ]
    if saga.waiting_for_definition:
        pairs.append(
            (
                "waiting",
                "for its definition: no instance drives it and none that answered has loaded "
                f"{saga.saga_type} version {saga.saga_version}; deploy a process "
                "that loads it",
            )
        )
    text = key_values(pairs)
    if saga.steps:
        text += "\n\n" + steps_text(saga.steps)
    return text


def steps_text(steps: Sequence[SagaStep]) -> str:
    """Steps as a table (with a ``branch`` column if the saga has parallel branches), then
    each step's last error with the frames kept of it."""
    columns = list(_STEP_COLUMNS)
    if any(step.group for step in steps):
        columns.insert(2, _BRANCH_COLUMN)
    text = table(steps, columns)
    for step in steps:
        kind = step.error_type or ""
        if kind:
            what = "compensation of step" if step.compensation_error else "step"
            error = str(step.compensation_error or step.error)
            error = error if error.startswith(kind) else f"{kind}: {error}"
            text += f"\n\n{what} {step.name!r} failed: {error}"
            text += "".join(f"\n  {frame}" for frame in step.error_frames)
    return text


def _more(hint: str) -> None:
    print(f"more: {hint}", file=sys.stderr)


def list_sagas(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    filters = {
        "status": ",".join(args.status) if args.status else None,
        "saga_type": args.type,
        "saga_version": args.version,
        "active": "true" if args.active else None,
        "correlation_id": args.correlation_id,
        "idempotency_key": args.idempotency_key,
        "trigger_event_id": args.trigger_event,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "updated_after": args.updated_after,
        "updated_before": args.updated_before,
    }
    pages = Pages(
        lambda cursor, size: sagas.list_page(cursor=cursor or None, limit=size, **filters),
        args.cursor or "",
        limit=args.limit,
        page_size=LIST_PAGE,
    )
    items: list[Saga] = pages.all()
    if args.json:
        emit(json_text({"items": [saga.raw for saga in items], "next_cursor": pages.next}))
    elif args.quiet:
        if items:
            emit("\n".join(saga.saga_id for saga in items))
    else:
        emit(table(items, _LIST_COLUMNS) if items else "no sagas")
    if pages.next and not args.json:
        _more(f"--cursor {pages.next} (or --all)")
    return EXIT_OK


def saga_events(
    sagas: SyncSagaClient, saga_id: str, *, from_version: int = 1, limit: int | None = None
) -> Pages:
    """The saga's transitions from ``from_version``, page after page."""

    def fetch(version: Any, size: int) -> Any:
        return sagas.history_page(saga_id, from_version=version, limit=size)

    return Pages(fetch, from_version, limit=limit, page_size=EVENTS_PAGE)


def _raw(events: Sequence[Event]) -> list[Any]:
    return [event.raw for event in events]


def show_saga(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    saga = sagas.get(args.saga_id)
    events = saga_events(sagas, args.saga_id).all() if args.events else None
    if args.json:
        emit(json_text(saga.raw if events is None else {**saga.raw, "events": _raw(events)}))
        return EXIT_OK
    text = saga_text(saga)
    if events is not None:
        text += "\n\n" + table(events, EVENT_COLUMNS)
    emit(text)
    return EXIT_OK


def show_steps(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    steps = sagas.steps(args.saga_id)
    if args.json:
        emit(json_text(steps.raw))
    else:
        emit(steps_text(steps.items) if steps.items else "no steps")
    return EXIT_OK


def show_events(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    pages = saga_events(sagas, args.saga_id, from_version=args.from_version, limit=args.limit)
    items = pages.all()
    if args.json:
        emit(json_text({"saga_id": args.saga_id, "items": _raw(items),
                        "next_from_version": pages.next}))  # fmt: skip
    else:
        emit(table(items, EVENT_COLUMNS) if items else "no transitions")
        if pages.next:
            _more(f"--from-version {pages.next}")
    return EXIT_OK


def show_types(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    types = sagas.saga_types()
    if args.json:
        emit(json_text([saga_type.raw for saga_type in types]))
    else:
        emit(table(types, _TYPE_COLUMNS) if types else "no saga types (see docs/sagas.md)")
    return EXIT_OK
