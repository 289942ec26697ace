"""The actor system: the root nursery, the root supervisor, and orderly shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._mailbox import ActorRef
from ._supervisor import Restart, Supervisor


class ActorSystem:
    """Owns the root supervisor; long-lived actors are its (permanent) children."""

    def __init__(self, root: Supervisor, nursery: trio.Nursery) -> None:
        self.root = root
        self.nursery = nursery

    async def spawn(
        self,
        name: str,
        behaviour: Callable[..., Awaitable[None]],
        *,
        capacity: int,
        restart: Restart = Restart.PERMANENT,
        **spec_options: Any,
    ) -> ActorRef[Any]:
        """Start a named actor under the root supervisor; its reference."""
        return await self.root.spawn(
            name, behaviour, capacity=capacity, restart=restart, **spec_options
        )


@asynccontextmanager
async def open_actor_system(
    *, max_restarts: int = 3, period: float = 5.0, shutdown_grace: float = 5.0
) -> AsyncIterator[ActorSystem]:
    """Run an actor system for the body of the ``async with``; shut it down in order on exit.

    When a permanent actor exceeds the root supervisor's intensity the system ends with
    ``SupervisorEscalation`` (inside an ``ExceptionGroup``), cancelling the body.
    """
    root = Supervisor(
        "root", max_restarts=max_restarts, period=period, shutdown_grace=shutdown_grace
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(root.run)
        system = ActorSystem(root, nursery)
        try:
            yield system
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(shutdown_grace + 1):
                    await root.stop()
            nursery.cancel_scope.cancel()
