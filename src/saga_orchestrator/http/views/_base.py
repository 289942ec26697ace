"""What the view modules share: field helpers with the API's constraints, and :func:`to_json`."""

from __future__ import annotations

from typing import Any

import attrs

from ..schema import api_field, constraints

MAX_TEXT = 255
"""Most characters of a name, key or id in a request."""
MAX_INT64 = 2**63 - 1
"""Largest version or position (the stores keep them as 64-bit integers)."""
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""No control character: C0 (U+0000-U+001F), DEL and C1 (U+0080-U+009F)."""
NO_CONTROL_MESSAGE = "must not contain control characters"
TOKEN = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
TOKEN_MESSAGE = "must not contain spaces or control characters"
_TIME = "ISO-8601 time in UTC (`2024-05-01T12:00:00.123456Z`)"


def text_field(doc: str, **kwargs: Any) -> Any:
    """A string of 1 to 255 characters without control characters."""
    kwargs.setdefault("pattern", NO_CONTROL)
    kwargs.setdefault("pattern_message", NO_CONTROL_MESSAGE)
    return api_field(doc=doc, min_length=1, max_length=MAX_TEXT, **kwargs)


def token_field(doc: str, **kwargs: Any) -> Any:
    """A string of 1 to 255 characters without spaces or control characters."""
    return text_field(doc, pattern=TOKEN, pattern_message=TOKEN_MESSAGE, **kwargs)


def count_field(doc: str, *, minimum: int, maximum: int = MAX_INT64, **kwargs: Any) -> Any:
    return api_field(doc=doc, minimum=minimum, maximum=maximum, **kwargs)


def time_field(doc: str, **kwargs: Any) -> Any:
    return api_field(doc=f"{doc}: {_TIME}", format="date-time", **kwargs)


def to_json(value: Any) -> Any:
    """An instance of these classes as JSON-ready dicts and lists (``omit_if_none`` fields that
    are ``None`` left out); anything else unchanged."""
    if attrs.has(type(value)):
        return attrs.asdict(value, filter=_kept)
    return value


def _kept(field: attrs.Attribute[Any], value: Any) -> bool:
    return value is not None or not constraints(field).omit_if_none
