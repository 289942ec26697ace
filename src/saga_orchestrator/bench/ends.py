"""Seeing sagas that run in another process (the server) end, without asking the server.

The ``onboarding`` and ``events`` workloads start sagas through the server's API; what each
saga waits for is its end. :class:`EndWatch` learns it from the store the server writes, over a
backend of its own opened in the bench process, so that the server's CPU is not spent
answering the bench: every ``interval`` it reads the active sagas (at most the sagas in
flight), and reads on its own each awaited saga that left them. A saga is awaited by its id
(started through the API) or by its idempotency key (started by the router for an event, whose
key the bench knows from the event's id). The end time is the saga's ``updated_at``, written by
the transition that ended it, on the same machine's clock as the bench's ``time.time()``.
"""

from __future__ import annotations

import time

import trio

from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.store.backend import StoreBackend

__all__ = ["END_STATUSES", "EndWatch"]

END_STATUSES = frozenset(status.value for status in sm.TERMINAL | sm.PARKED)
"""Statuses in which a saga's actor stops: it has ended, well or not."""
LOOKUP_AFTER = 0.2
"""Seconds after which a key not yet seen among the active sagas is looked up on its own (its
saga may have started and ended between two reads)."""
LOOKUPS_PER_ROUND = 50


class _Waiter:
    def __init__(self) -> None:
        self.since = time.monotonic()
        self.event = trio.Event()
        self.ended: tuple[str, str, float] | None = None
        """(saga id, status, ``updated_at``) once ended."""


class EndWatch:
    """The sagas awaited, and the loop that finds their ends (run it in a nursery)."""

    def __init__(self, backend: StoreBackend, *, interval: float = 0.01) -> None:
        self._backend = backend
        self._interval = interval
        self._by_id: dict[str, _Waiter] = {}
        self._by_key: dict[str, _Waiter] = {}

    async def wait_for_id(self, saga_id: str) -> tuple[str, str, float]:
        """(saga id, status, end time) once the saga ``saga_id`` has ended."""
        return await self._wait(self._by_id, saga_id)

    async def wait_for_key(self, key: str) -> tuple[str, str, float]:
        """(saga id, status, end time) once the saga with idempotency key ``key`` has ended."""
        return await self._wait(self._by_key, key)

    async def _wait(self, table: dict[str, _Waiter], name: str) -> tuple[str, str, float]:
        waiter = table[name] = _Waiter()
        try:
            await waiter.event.wait()
        finally:
            if waiter.ended is None:  # cancelled: forget it wherever it is now
                self._by_key.pop(name, None)
                self._by_id = {k: w for k, w in self._by_id.items() if w is not waiter}
        assert waiter.ended is not None
        return waiter.ended

    def _end(self, waiter: _Waiter, saga_id: str, status: str, at: float) -> None:
        waiter.ended = (saga_id, status, at)
        waiter.event.set()

    async def run(self) -> None:
        """Read the store every ``interval`` until cancelled."""
        while True:
            await self.check()
            await trio.sleep(self._interval)

    async def check(self) -> None:
        """One round: wake the waiters whose saga has ended."""
        active = await self._backend.active_sagas()
        running: set[str] = set()
        for record in active:
            key_waiter = self._by_key.pop(record.idempotency_key or "", None)
            if key_waiter is not None:
                self._by_id[record.saga_id] = key_waiter
            if record.status in END_STATUSES:
                continue
            running.add(record.saga_id)
        for saga_id in [s for s in self._by_id if s not in running]:
            record = await self._backend.get_saga(saga_id)
            if record is not None and record.status in END_STATUSES:
                self._end(self._by_id.pop(saga_id), saga_id, record.status, record.updated_at)
        now = time.monotonic()
        late = [k for k, w in self._by_key.items() if now - w.since > LOOKUP_AFTER]
        for key in late[:LOOKUPS_PER_ROUND]:
            record = await self._backend.find_saga_by_key(key)
            if record is None:
                continue
            waiter = self._by_key.pop(key)
            if record.status in END_STATUSES:
                self._end(waiter, record.saga_id, record.status, record.updated_at)
            else:
                self._by_id[record.saga_id] = waiter
