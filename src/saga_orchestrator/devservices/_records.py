"""The stand-in's records: an operation's request and answer, every call, every effect applied,
and the events it announces."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

__all__ = [
    "Announcement",
    "Announcer",
    "Answer",
    "CallRecord",
    "EffectRecord",
    "Request",
    "missing",
]


@attrs.frozen
class Answer:
    """A status and a JSON body (``None``: no body), plus headers."""

    status: int
    body: dict[str, Any] | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Request:
    """What an operation sees of a request."""

    body: dict[str, Any]
    args: Mapping[str, str]
    idempotency_key: str


@attrs.frozen(kw_only=True)
class CallRecord:
    """One request to a service, as answered."""

    seq: int
    operation: str
    method: str
    path: str
    idempotency_key: str | None
    correlation_id: str | None
    authorized: bool
    """The bearer token was the expected one (or none is expected)."""
    status: int | None
    """``None``: never answered (the caller went away first, or a fault made it hang)."""
    replayed: bool = False
    """Answered from the idempotency record: nothing was applied."""
    fault: bool = False
    """An injected fault answered."""


@attrs.frozen(kw_only=True)
class EffectRecord:
    """A change the stand-in applied: at most one per idempotency key and operation."""

    seq: int
    operation: str
    idempotency_key: str
    subject: str
    """The id of what was created, changed or deleted."""


@attrs.frozen(kw_only=True)
class Announcement:
    """An event the stand-in publishes (the Airtable connector's sync outcome)."""

    event_id: str
    event_type: str
    saga_id: str
    stream_id: str
    """The connector's stream the event belongs to (``airtable-base-<base id>``)."""
    data: dict[str, Any]


Announcer = Callable[[Announcement], Awaitable[None]]
"""Delivers an announcement (to the orchestrator's ``POST /events/publish``, or in tests
straight to a coordinator); raises when it could not."""


def missing(body: Mapping[str, Any], *names: str) -> Answer | None:
    """A 422 naming the ``names`` that are not non-empty strings in ``body``, or ``None``."""
    absent = [name for name in names if not isinstance(body.get(name), str) or not body[name]]
    if absent:
        return Answer(422, {"error": f"missing or not a string: {', '.join(absent)}"})
    return None
