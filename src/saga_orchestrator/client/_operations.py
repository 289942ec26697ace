"""The client's operations, written once for the async and the sync client.

Each operation is a generator: it yields a :class:`Call` (the client sends it, with retries, and
sends back the decoded JSON, or throws the :class:`~._api.ClientError`) or a :class:`Pause`
(the client sleeps), and returns the result. The clients in :mod:`._saga_client` only run them.
"""

from __future__ import annotations

import time
import urllib.parse
import uuid
from collections.abc import Callable, Collection, Generator, Mapping
from typing import Any

import attrs

from ._errors import NotFound, WaitTimedOut
from ._models import ENDED, Accepted, Event, Saga, SagaStep, from_json

__all__ = ["Call", "Operation", "Pause"]

LONG_POLL_SECONDS = 25
"""One long poll of ``/sagas/{id}/wait`` lasts at most this (under usual proxy idle limits)."""


@attrs.frozen
class Call:
    """One request."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    body: Any = None
    replayable: bool = True
    """Safe to send again when its answer was lost: reads, and writes that carry their own
    idempotency key or event id. Others are sent again only when the service cannot have
    taken them (no connection made, or a 503 ``overloaded``)."""
    timeout: float | None = None
    """Seconds for this request instead of the client's (a long poll)."""
    accept: tuple[int, ...] = ()
    """Statuses besides 2xx whose body is the answer (``/health``'s 503)."""


@attrs.frozen
class Pause:
    seconds: float


Operation = Generator[Call | Pause, Any, Any]


def _quoted(saga_id: str) -> str:
    return f"/sagas/{urllib.parse.quote(saga_id, safe='')}"


def start(
    saga_type: str,
    data: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    version: int | None = None,
) -> Operation:
    """Start a saga of ``saga_type`` with input ``data``, on the type's newest loaded version
    or ``version``. Without an ``idempotency_key`` one is made, so that a start sent again
    after a lost answer makes one saga; ``Saga.created`` is ``False`` when the key's saga
    already existed."""
    body: dict[str, Any] = {
        "saga_type": saga_type,
        "data": dict(data),
        "idempotency_key": idempotency_key or str(uuid.uuid4()),
    }
    if correlation_id is not None:
        body["correlation_id"] = correlation_id
    if version is not None:
        body["version"] = version
    return from_json(Saga, (yield Call("POST", "/sagas/start", body=body)))


def get(saga_id: str) -> Operation:
    """The saga with its steps."""
    return from_json(Saga, (yield Call("GET", _quoted(saga_id))))


def steps(saga_id: str) -> Operation:
    """The saga's steps, in order."""
    body = yield Call("GET", f"{_quoted(saga_id)}/steps")
    return [from_json(SagaStep, item) for item in body["items"]]


def history(saga_id: str) -> Operation:
    """The saga's recorded transitions, oldest first (every page)."""
    events: list[Event] = []
    version: int | None = 1
    while version is not None:
        body = yield Call("GET", f"{_quoted(saga_id)}/events", params={"from_version": version})
        events.extend(from_json(Event, item) for item in body["items"])
        version = body.get("next_from_version")
    return events


def list_page(cursor: str | None, limit: int, filters: Mapping[str, Any]) -> Operation:
    """One page of sagas, newest first: ``(sagas, next cursor or None)``."""
    params = {**{k: v for k, v in filters.items() if v is not None}, "limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    body = yield Call("GET", "/sagas/", params=params)
    return [from_json(Saga, item) for item in body["items"]], body.get("next_cursor")


def cancel(saga_id: str, reason: str | None = None) -> Operation:
    """Cancel the saga: its running step is interrupted and its completed steps compensated.
    Raises ``Conflict`` when it has ended (or is compensating for another reason)."""
    body = {"reason": reason} if reason else None
    answer = yield Call("POST", f"{_quoted(saga_id)}/cancel", body=body, replayable=False)
    return from_json(Accepted, answer)


def _operate(saga_id: str, action: str, body: Mapping[str, Any]) -> Operation:
    given = {k: v for k, v in body.items() if v is not None}
    answer = yield Call("POST", f"{_quoted(saga_id)}/{action}", body=given, replayable=False)
    return from_json(Accepted, answer)


def retry(saga_id: str, *, reason: str | None = None, dry_run: bool = False) -> Operation:
    """Run a parked saga's failed compensations (or its failed step) again."""
    return (yield from _operate(saga_id, "retry", _action(reason, dry_run)))


def resolve(
    saga_id: str, step: str, outcome: str, *, reason: str | None = None, dry_run: bool = False
) -> Operation:
    """State the outcome (``applied`` or ``not_applied``) of a step in doubt."""
    body = _action(reason, dry_run, step=step, outcome=outcome)
    return (yield from _operate(saga_id, "resolve", body))


def skip_compensation(
    saga_id: str, step: str, *, reason: str | None = None, dry_run: bool = False
) -> Operation:
    """Count a step's compensation as done (undone by hand)."""
    body = _action(reason, dry_run, step=step)
    return (yield from _operate(saga_id, "skip-compensation", body))


def resume(
    saga_id: str,
    from_step: str,
    *,
    input: Mapping[str, Any] | None = None,
    reason: str | None = None,
    dry_run: bool = False,
) -> Operation:
    """Go forward again from ``from_step``, the saga's input patched by ``input`` (a JSON
    merge patch)."""
    body = _action(reason, dry_run, from_step=from_step, input=input)
    return (yield from _operate(saga_id, "resume", body))


def _action(reason: str | None, dry_run: bool, **fields: Any) -> dict[str, Any]:
    return {**fields, "reason": reason, "dry_run": dry_run or None}


def wait(
    saga_id: str,
    *,
    timeout: float | None = None,
    until: Collection[str] = ENDED,
    on_change: Callable[[Saga], None] | None = None,
    poll_every: float = 2.0,
) -> Operation:
    """Wait until the saga's status is in ``until`` (terminal or parked by default) and return
    it; ``on_change`` sees the saga as first read and after each change. Long-polls
    ``/sagas/{id}/wait``; a service without it is polled, backing off to ``poll_every``
    seconds. Raises ``WaitTimedOut`` after ``timeout`` seconds."""
    deadline = None if timeout is None else time.monotonic() + timeout
    saga = from_json(Saga, (yield Call("GET", _quoted(saga_id))))
    long_poll, pause = True, min(0.1, poll_every)
    while True:
        if on_change is not None:
            on_change(saga)
        if saga.status in until:
            return saga
        left = LONG_POLL_SECONDS if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise WaitTimedOut(
                f"gave up waiting after {timeout:g} s: saga {saga.saga_id} is {saga.status} "
                f"(sagas show {saga.saga_id})"
            )
        if long_poll:
            seconds = max(1, int(min(LONG_POLL_SECONDS, left)))
            params = {"after_version": saga.version, "timeout": seconds}
            try:
                body = yield Call("GET", f"{_quoted(saga_id)}/wait", params=params,
                                  timeout=seconds + 10)  # fmt: skip
            except NotFound as exc:
                if exc.code == "saga_not_found":
                    raise
                long_poll = False  # a service from before /wait
                continue
        else:
            yield Pause(min(pause, left))
            pause = min(pause * 2, poll_every)
            body = yield Call("GET", _quoted(saga_id))
        saga = from_json(Saga, body)


def raw(
    method: str,
    path: str,
    *,
    body: Any = None,
    params: Mapping[str, Any] | None = None,
    accept: Collection[int] = (),
) -> Operation:
    """Any request, answered with its decoded JSON (for the command line's printing); only a
    GET is sent again after a lost answer."""
    query = {k: v for k, v in (params or {}).items() if v is not None}
    return (yield Call(method, path, params=query, body=body, replayable=method == "GET",
                       accept=tuple(accept)))  # fmt: skip


def publish(
    event_type: str,
    stream_id: str,
    data: Mapping[str, Any],
    *,
    event_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    expected_version: int | None = None,
) -> Operation:
    """Publish a domain event. Without an ``event_id`` one is made, so that a publish sent
    again after a lost answer stores one event; ``Event.created`` is ``False`` then."""
    body: dict[str, Any] = {
        "event_type": event_type,
        "stream_id": stream_id,
        "data": dict(data),
        "event_id": event_id or str(uuid.uuid4()),
    }
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if expected_version is not None:
        body["expected_version"] = expected_version
    return from_json(Event, (yield Call("POST", "/events/publish", body=body)))


def health() -> Operation:
    """The service's ``/health`` (``status``, checks, instances); a 503 answers too."""
    return (yield Call("GET", "/health", accept=(503,)))
