"""Answering the starts in flight when the service stops, before their connections are cut.

On shutdown Hypercorn gives requests in flight its ``graceful_timeout``, then cancels them: a
start cancelled there gets no answer, although the saga it asked for may be created anyway (its
creating append was already with the store, which stops last). So each start waits for the
coordinator inside :meth:`Draining.bounded`; once the service begins to stop
(:meth:`Draining.begin`, called by the composition root with a part of the graceful timeout)
every such wait ends by that time, and the start is answered then: with its outcome, or with a
503 that carries its idempotency key (``StartInterrupted``). A start that arrives after that
time is refused before it reaches the coordinator (``ServiceStopping``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import trio

__all__ = ["ANSWER_SHARE", "Draining"]

ANSWER_SHARE = 0.75
"""The part of the graceful timeout that a command in flight may still wait; the rest is for
writing the answers."""


@attrs.define(eq=False)
class Draining:
    """The bounded waits of the commands in flight, and when they must end."""

    answer_by: float = math.inf
    """The trio time by which every command must be answered; infinite until the service
    begins to stop."""
    _scopes: set[trio.CancelScope] = attrs.field(factory=set)

    @property
    def stopping(self) -> bool:
        """The time to answer is over: no new command is asked."""
        return trio.current_time() >= self.answer_by

    def begin(self, within: float) -> None:
        """The service begins to stop: every wait, now and later, ends within ``within``
        seconds."""
        self.answer_by = min(self.answer_by, trio.current_time() + within)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self.answer_by)

    @contextmanager
    def bounded(self) -> Iterator[trio.CancelScope]:
        """A cancel scope around a wait for the coordinator that ends by :attr:`answer_by`
        (``cancelled_caught`` tells the caller it was cut short)."""
        scope = trio.CancelScope(deadline=self.answer_by)
        self._scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.discard(scope)
