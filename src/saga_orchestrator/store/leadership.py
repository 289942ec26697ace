"""Relay leadership: at most one outbox relay publishes a database's outbox at a time.

Every process of the service runs an outbox relay over the same outbox; only the relay that
holds the database's leadership reads and publishes it, so a message is published once, in
outbox order, however many processes share the database. The others stand by and try again
every ``RELAY_LEADER_RETRY_SECONDS``.

* PostgreSQL (:mod:`.pg_leadership`): a session-level advisory lock held on a connection of the
  leader's own; the leader reads the outbox on that connection, so a batch is read only while
  the lock is held (the read is the check: no extra round trip).
* SQLite and memory serve one process: their relay always leads
  (:class:`SingleProcessLeadership`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from .records import OutboxRecord

__all__ = ["RelayLeadership", "SingleProcessLeadership"]


class RelayLeadership(Protocol):
    """One relay's claim to lead the outbox relay of its database.

    Used by one task at a time (the relay). ``is_leader`` is cheap (no I/O); it turns false as
    soon as the claim is known to be lost.
    """

    single_process: bool
    """True where the database serves one process (SQLite, memory): always the leader."""

    @property
    def is_leader(self) -> bool: ...

    async def try_lead(self) -> bool:
        """Try once to become the leader (true when it leads now, also when it already led).

        Raises:
            StoreUnavailable: the database cannot be reached; try again later.
        """
        ...

    async def outbox_pending(self, *, limit: int) -> list[OutboxRecord] | None:
        """The unsent outbox messages, oldest first, read while leading; ``None`` when the
        leadership turned out to be lost (then :attr:`is_leader` is false).

        Raises:
            StoreError: the read failed, the leadership is kept.
        """
        ...

    async def release(self) -> None:
        """Stop leading (on shutdown), so that a standby takes over at its next try;
        idempotent, never raises."""
        ...


class SingleProcessLeadership:
    """The leadership of a database only one process uses: taken at the first try, never
    lost; the outbox is read with ``read`` (the backend's ``outbox_pending``)."""

    single_process = True

    def __init__(self, read: Callable[..., Awaitable[list[OutboxRecord]]]) -> None:
        self._read = read
        self._leading = False

    def __repr__(self) -> str:
        return f"SingleProcessLeadership(leading={self._leading})"

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def try_lead(self) -> bool:
        self._leading = True
        return True

    async def outbox_pending(self, *, limit: int) -> list[OutboxRecord] | None:
        return await self._read(limit=limit)

    async def release(self) -> None:
        self._leading = False
