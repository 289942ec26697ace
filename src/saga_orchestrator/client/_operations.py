"""The client's operations, written once for the async and the sync client.

Each operation is a generator: it yields a :class:`Call` (the client sends it, with retries, and
sends back the decoded JSON, or throws the :class:`~._errors.ClientError`) or a :class:`Pause`
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
from ._models import (
    ENDED,
    Accepted,
    Event,
    EventTypes,
    Page,
    Replayed,
    Saga,
    SagaSteps,
    SagaType,
    from_json,
)

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


def _given(**params: Any) -> dict[str, Any]:
    """The parameters that have a value."""
    return {k: v for k, v in params.items() if v is not None}


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
    """The saga's steps, in order, with its status."""
    return from_json(SagaSteps, (yield Call("GET", f"{_quoted(saga_id)}/steps")))


def history_page(saga_id: str, *, from_version: int = 1, limit: int | None = None) -> Operation:
    """One page of the saga's recorded transitions from ``from_version``: a ``Page`` whose
    ``next`` is the version the next page starts at."""
    params = _given(from_version=from_version, limit=limit)
    body = yield Call("GET", f"{_quoted(saga_id)}/events", params=params)
    return _page(Event, body, "next_from_version")


def history(saga_id: str) -> Operation:
    """The saga's recorded transitions, oldest first (every page)."""
    events: list[Event] = []
    version: int | None = 1
    while version is not None:
        page = yield from history_page(saga_id, from_version=version)
        events.extend(page.items)
        version = page.next
    return events


def list_page(*, cursor: str | None = None, limit: int | None = None, **filters: Any) -> Operation:
    """One page of sagas, newest first: a ``Page`` whose ``next`` is the cursor of the next
    page. ``filters`` are the query parameters of ``GET /sagas/``."""
    params = _given(**filters, limit=limit, cursor=cursor)
    return _page(Saga, (yield Call("GET", "/sagas/", params=params)), "next_cursor")


def saga_types() -> Operation:
    """The saga types the service runs."""
    body = yield Call("GET", "/sagas/types/available")
    return [from_json(SagaType, item) for item in body["items"]]


def _page(cls: Any, body: Any, following: str) -> Page[Any]:
    return Page(items=[from_json(cls, i) for i in body["items"]], next=body.get(following),
                raw=body)  # fmt: skip


def cancel(saga_id: str, reason: str | None = None) -> Operation:
    """Cancel the saga: its running step is interrupted and its completed steps compensated.
    Raises ``Conflict`` when it has ended (or is compensating for another reason)."""
    body = {"reason": reason} if reason else None
    answer = yield Call("POST", f"{_quoted(saga_id)}/cancel", body=body, replayable=False)
    return from_json(Accepted, answer)


def _operate(saga_id: str, action: str, body: Mapping[str, Any]) -> Operation:
    answer = yield Call("POST", f"{_quoted(saga_id)}/{action}", body=_given(**body),
                        replayable=False)  # fmt: skip
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


def read_stream(stream_id: str, *, from_version: int = 1, limit: int | None = None) -> Operation:
    """One page of a stream's events from ``from_version`` (any stream, a saga's transitions
    ``saga-<id>`` too): ``next`` is the version the next page starts at."""
    path = f"/events/stream/{urllib.parse.quote(stream_id, safe='')}"
    body = yield Call("GET", path, params=_given(from_version=from_version, limit=limit))
    return _page(Event, body, "next_from_version")


def read_all(
    *, after_position: int = 0, limit: int | None = None, event_type: str | None = None
) -> Operation:
    """One page of the events of every stream after a global position, in commit order,
    ``event_type`` only if given: ``next`` is the ``after_position`` of the next page (a page
    may hold fewer than ``limit`` events, being filtered after it is read)."""
    params = _given(after_position=after_position, limit=limit, event_type=event_type)
    return _page(Event, (yield Call("GET", "/events/all", params=params)), "next_after_position")


def event_types() -> Operation:
    """The event types that start sagas (and which), and those seen in the store."""
    return EventTypes.from_json((yield Call("GET", "/events/types")))


def replay_stream(stream_id: str, *, from_version: int = 1, limit: int | None = None) -> Operation:
    """Re-publish a stream's events from ``from_version`` to the bus (at most ``limit``):
    ``Replayed.next`` is the version to go on from. Not sent again after a lost answer."""
    path = f"/events/replay/{urllib.parse.quote(stream_id, safe='')}"
    body = _given(from_version=from_version, limit=limit)
    answer = yield Call("POST", path, body=body, replayable=False)
    return _replayed(answer, "next_from_version")


def replay_range(
    *,
    after_position: int,
    to_position: int | None = None,
    event_type: str | None = None,
    limit: int | None = None,
) -> Operation:
    """Re-publish the events after ``after_position`` (up to ``to_position``, ``event_type``
    only if given) to the bus: ``Replayed.next`` is the position to go on after."""
    body = _given(after_position=after_position, limit=limit, to_position=to_position,
                  event_type=event_type)  # fmt: skip
    answer = yield Call("POST", "/events/replay", body=body, replayable=False)
    return _replayed(answer, "next_after_position")


def _replayed(answer: Any, following: str) -> Replayed:
    return Replayed(event_ids=answer.get("event_ids", ()), bus_stream=answer.get("bus_stream"),
                    next=answer.get(following), raw=answer)  # fmt: skip


def health() -> Operation:
    """The service's ``/health`` (``status``, checks, instances); a 503 answers too."""
    return (yield Call("GET", "/health", accept=(503,)))
