"""Waiting out an unavailable store: the one retry loop every caller of the store uses.

Only :class:`~saga_orchestrator.errors.StoreUnavailable` is retried (the database cannot be
reached now; it will be again). A request the store refuses for good
(:class:`~saga_orchestrator.errors.StoreRejected`) or any other error goes to the caller at once:
retrying it would loop forever.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from saga_orchestrator.errors import StoreUnavailable

__all__ = ["FIRST_DELAY", "retry_unavailable"]

T = TypeVar("T")

FIRST_DELAY = 0.05
"""Seconds before the second attempt; each later pause doubles, up to ``max_delay``."""


async def retry_unavailable(
    operation: Callable[[], Awaitable[T]],
    *,
    doing: str,
    max_delay: float,
    log: logging.Logger,
    first_delay: float = FIRST_DELAY,
) -> T:
    """``await operation()``, again with exponential backoff while it raises
    ``StoreUnavailable``.

    The first failure is logged at WARNING (``doing`` says what waits, e.g. "saga 1f… waits for
    the store to record its transitions"), later ones at DEBUG, and the recovery at INFO: a
    database outage gives one line per waiting caller, not one per attempt.

    Raises:
        StoreError: any store error but ``StoreUnavailable`` (for instance ``StoreRejected``).
    """
    delay = first_delay
    failures = 0
    while True:
        try:
            result = await operation()
        except StoreUnavailable as exc:
            failures += 1
            level = logging.WARNING if failures == 1 else logging.DEBUG
            log.log(level, "%s: %s (retrying in %.2f s)", doing, exc, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, max_delay)
            continue
        if failures:
            log.info("%s: the store answers again after %d attempts", doing, failures + 1)
        return result
