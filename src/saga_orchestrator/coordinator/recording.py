"""The one append path of a saga: from the transitions the pure core decided to a durable
append (transitions, projection row, lifecycle events, in one store transaction).

The saga actor records every transition here, and so does the coordinator when it creates a
saga or parks one that kept crashing.
"""

from __future__ import annotations

import logging

from saga_orchestrator.errors import ConcurrencyError, LeaseLost, StoreUnavailable
from saga_orchestrator.store import AppendRequest, NewEvent, Store
from saga_orchestrator.store.records import Lease
from saga_orchestrator.store.retry import retry_unavailable

from .decide import Append
from .projection import lifecycle_events, stream_id, to_record
from .state import SagaShape, SagaState, replay
from .transitions import Transition, from_record
from .transitions import to_record as transition_record

__all__ = ["append_request", "commit", "load_state"]

log = logging.getLogger(__name__)

_PAGE = 1000


def append_request(
    saga_id: str,
    append: Append,
    shape: SagaShape,
    topic: str,
    *,
    lease: Lease | None,
    new: bool = False,
) -> AppendRequest:
    """The store's request for ``append``: its transitions as events, the saga's projection row
    (all step rows when ``new``, else only the steps that changed) and its lifecycle events for
    the outbox (``topic``), expecting the stream at ``append.before``'s version, fenced by
    ``lease`` (a new saga is created owned by it)."""
    events = [NewEvent(event_type=n, data=d) for n, d in map(transition_record, append.transitions)]
    before: SagaState = append.before
    return AppendRequest(
        stream_id=stream_id(saga_id),
        expected_version=before.version,
        events=events,
        saga=to_record(append.after, shape, changed_since=None if new else before),
        outbox=lifecycle_events(
            append.after,
            shape,
            append.transitions,
            topic,
            event_ids=[e.event_id for e in events],
        ),
        lease=lease,
    )


async def commit(store: Store, request: AppendRequest, *, max_delay: float) -> bool:
    """Make ``request`` durable; False when another instance drives the saga now (its lease
    was fenced, or another process appended to the stream first).

    The store being unavailable is waited out (with backoff). An append whose answer was lost
    (the store went away after the commit) is found in the stream on the retry and counts as
    made.

    Raises:
        StoreRejected: the store refuses this append for good.
        StoreError: any other failure of the store but unavailability.
    """

    async def append() -> bool:
        try:
            await store.append(request)
        except ConcurrencyError:
            return await _already_recorded(store, request)
        except LeaseLost as lost:
            log.warning("%s", lost)
            return False
        return True

    try:  # the usual case, without the retry loop's frames
        return await append()
    except StoreUnavailable:
        pass
    return await retry_unavailable(
        append,
        doing=f"{request.stream_id} waits for the store to record its transitions",
        max_delay=max_delay,
        log=log,
    )


async def _already_recorded(store: Store, request: AppendRequest) -> bool:
    """Whether the request's last event is in the stream at its version (our own commit)."""
    last = request.events[-1]
    version = request.expected_version + len(request.events)
    found = await store.read_stream(request.stream_id, from_version=version, limit=1)
    return bool(found) and found[0].event_id == last.event_id


async def load_state(store: Store, shape: SagaShape, saga_id: str) -> SagaState:
    """A saga's state, replayed from its durable history."""
    history: list[Transition] = []
    version = 1
    while True:
        events = await store.read_stream(stream_id(saga_id), from_version=version, limit=_PAGE)
        history.extend(from_record(e.event_type, e.data) for e in events)
        if len(events) < _PAGE:
            return replay(shape, history)
        version += len(events)
