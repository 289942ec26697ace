"""The memory store of a test kit, which a simulated crash can freeze."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import AppendRequest, AppendResult

__all__ = ["CrashableBackend"]


class CrashableBackend(MemoryBackend):
    """A :class:`MemoryBackend` whose commits hang while frozen: after a simulated crash
    nothing more becomes durable, as when the process dies."""

    frozen = False

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    async def commit(self, batch: Sequence[AppendRequest]) -> list[AppendResult | Exception]:
        if self.frozen:
            await trio.sleep_forever()
        return await super().commit(batch)
