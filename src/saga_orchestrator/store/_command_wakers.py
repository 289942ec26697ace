"""Waking an instance of this process when a command is sent to it (the memory and SQLite
backends: every instance they serve is in this process)."""

from __future__ import annotations

import trio


class CommandWakers:
    """One event per waiting instance, set when a command is sent to it."""

    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}

    def wake(self, instance_id: str | None) -> None:
        event = None if instance_id is None else self._events.pop(instance_id, None)
        if event is not None:
            event.set()

    async def wait(self, instance_id: str, at_most: float) -> None:
        event = self._events.get(instance_id)
        if event is None:
            event = self._events[instance_id] = trio.Event()
        with trio.move_on_after(at_most):
            await event.wait()
