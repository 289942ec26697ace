"""An actor whose work is a loop of its own (reading a stream, relaying the outbox): its
mailbox takes no messages and serves to stop it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._mailbox import Mailbox


async def run_loop_actor(
    mailbox: Mailbox[Any],
    body: Callable[..., Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``body`` (started with ``nursery.start``) until the mailbox is closed."""
    async with trio.open_nursery() as nursery:
        await nursery.start(body)
        task_status.started()
        async for envelope in mailbox:
            envelope.respond_error(TypeError(f"actor {mailbox.name!r} takes no messages"))
        nursery.cancel_scope.cancel()
