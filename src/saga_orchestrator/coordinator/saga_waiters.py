"""Wake whoever waits for a saga to change: the observer behind ``GET /sagas/{id}/wait``.

The engine tells its observer of every durable transition; a waiter registered for that saga
wakes at once. A saga driven by another instance changes without this process's engine
knowing, so waiters also look again after ``recheck`` seconds (the caller re-reads the store).
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from .observer import SagaObserver
from .state import SagaState
from .transitions import Transition

__all__ = ["SagaWaiters"]


class SagaWaiters(SagaObserver):
    """One ``trio.Event`` per saga someone waits for, set by its next durable transition."""

    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}
        self._counts: dict[str, int] = {}

    def transitions_recorded(
        self, before: SagaState, after: SagaState, transitions: Sequence[Transition]
    ) -> None:
        event = self._events.pop(after.saga_id, None)
        if event is not None:
            event.set()

    @property
    def waiting(self) -> int:
        """Sagas someone is waiting for now."""
        return len(self._counts)

    async def changed(self, saga_id: str, *, at_most: float) -> bool:
        """Wait until the saga's next transition here, or ``at_most`` seconds; ``True`` if it
        changed here (else look at the store: another instance may have moved it)."""
        event = self._events.get(saga_id)
        if event is None:
            event = self._events[saga_id] = trio.Event()
        self._counts[saga_id] = self._counts.get(saga_id, 0) + 1
        try:
            with trio.move_on_after(at_most):
                await event.wait()
        finally:
            left = self._counts.pop(saga_id) - 1
            if left:
                self._counts[saga_id] = left
            elif self._events.get(saga_id) is event:
                del self._events[saga_id]  # the last waiter leaves: nothing to keep
        return event.is_set()
