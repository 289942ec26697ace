"""What the commands print: aligned tables and ``name  value`` blocks for people, JSON for
scripts. Pure functions from data to text, except :func:`emit`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = [
    "EVENT_COLUMNS",
    "Column",
    "cell",
    "emit",
    "json_text",
    "key_values",
    "short_time",
    "table",
]

MAX_CELL = 60
"""Longest cell of a table; longer values are cut with ``…`` (``--json`` shows them whole)."""

Column = tuple[str, Callable[[Any], Any]]
"""A table column: its header and how to get its value from a row (a typed result)."""


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def short_time(value: dt.datetime | None) -> str:
    """A time as the service wrote it, to the second: ``2024-05-01 12:00:00``."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


EVENT_COLUMNS: Sequence[Column] = (
    ("version", lambda e: e.version),
    ("type", lambda e: e.type),
    ("event id", lambda e: e.event_id),
    ("recorded", lambda e: short_time(e.recorded_at)),
    ("data", lambda e: e.data),
)
"""The columns of a stream's events (a saga's transitions, too)."""


def cell(value: Any, width: int | None = None) -> str:
    """A value on one line: ``-`` for nothing, compact JSON for lists and objects."""
    if value is None or value == "":
        text = "-"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    text = " ".join(text.split())  # no line breaks or tabs inside a table
    if width is not None and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def table(rows: Sequence[Any], columns: Sequence[Column]) -> str:
    """Rows under upper-case headers, columns padded to their widest cell."""
    grid = [[header.upper() for header, _ in columns]]
    grid += [[cell(get(row), MAX_CELL) for _, get in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in grid
    )


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name  value`` lines, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {cell(value)}" for name, value in pairs)


def emit(text: str, stream: TextIO | None = None) -> None:
    """Print ``text`` (a reader that went away, as in ``| head``, is not an error)."""
    out = stream if stream is not None else sys.stdout
    try:
        print(text, file=out, flush=True)
    except BrokenPipeError:
        # So that Python's own flush at exit does not complain either:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise SystemExit(0) from None
