"""Logging that a flood of one error cannot drown: each kind of line at most once per interval,
with a count of those left out.

A :class:`ThrottledLog` wraps a logger. The first line of a kind is logged at once; more lines
of that kind within ``interval`` seconds are counted, not logged; the first one after the
interval is logged with ``(repeated N times in the last T s)``: N lines of its kind were left
out in the T seconds since the last one logged. A kind that went quiet with lines left out is
reported the same way (its last line left out, with the count) by the next :meth:`log` or
:meth:`flush` after its interval, so the count of a burst is not lost when the burst stops.

A line's kind is the ``key`` given (any hashable), else its format string: callers choose what
makes two lines "the same error" (say, the event type and the error class, not the entry id).
Time is ``trio.current_time()`` inside trio (a ``MockClock`` drives it in tests), else
``time.monotonic()``; at most ``max_kinds`` kinds are remembered (the oldest is reported and
forgotten first).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

import attrs
import trio

__all__ = ["ThrottledLog"]

DEFAULT_INTERVAL = 60.0
"""Seconds between two lines of one kind."""


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # not inside trio
        return time.monotonic()


@attrs.define
class _Kind:
    logged_at: float
    """When the last line of this kind was logged."""
    left_out: int = 0
    """Lines of this kind not logged since then."""
    last: tuple[int, str, tuple[Any, ...]] | None = None
    """(level, format, args) of the last line left out."""


class ThrottledLog:
    """``logger`` with each kind of line logged at most once per ``interval`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_kinds: int = 1000,
        clock: Callable[[], float] = _now,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.max_kinds = max_kinds
        self.clock = clock
        self.left_out = 0
        """Lines left out so far, all kinds together."""
        self._kinds: collections.OrderedDict[Hashable, _Kind] = collections.OrderedDict()
        """Oldest ``logged_at`` first."""

    def log(
        self, level: int, msg: str, *args: Any, key: Hashable = None, exc_info: Any = None
    ) -> bool:
        """Log ``msg % args`` at ``level`` unless a line of its kind was logged less than
        ``interval`` seconds ago; returns whether it was logged."""
        return self._log(level, msg, args, key, exc_info)

    def error(self, msg: str, *args: Any, key: Hashable = None, exc_info: Any = None) -> bool:
        return self._log(logging.ERROR, msg, args, key, exc_info)

    def warning(self, msg: str, *args: Any, key: Hashable = None, exc_info: Any = None) -> bool:
        return self._log(logging.WARNING, msg, args, key, exc_info)

    def info(self, msg: str, *args: Any, key: Hashable = None, exc_info: Any = None) -> bool:
        return self._log(logging.INFO, msg, args, key, exc_info)

    def flush(self) -> None:
        """Report the kinds whose interval has passed with lines left out; forget the kinds
        whose interval has passed without."""
        now = self.clock()
        while self._kinds:
            key, kind = next(iter(self._kinds.items()))
            if now - kind.logged_at < self.interval:
                break
            self._report(key, kind, now)

    def _log(
        self, level: int, msg: str, args: tuple[Any, ...], key: Hashable, exc_info: Any
    ) -> bool:
        if not self.logger.isEnabledFor(level):
            return False
        now = self.clock()
        key = msg if key is None else key
        kind = self._kinds.get(key)
        if kind is not None and now - kind.logged_at < self.interval:
            kind.left_out += 1
            kind.last = (level, msg, args)
            self.left_out += 1
            self.flush()
            return False
        suffix = ""
        if kind is not None:
            if kind.left_out:
                suffix = _repeated(kind.left_out, now - kind.logged_at)
            del self._kinds[key]
        self.flush()
        self._kinds[key] = _Kind(logged_at=now)
        while len(self._kinds) > self.max_kinds:
            oldest = next(iter(self._kinds))
            self._report(oldest, self._kinds[oldest], now, forget=True)
        self.logger.log(level, msg + suffix, *args, exc_info=exc_info, stacklevel=3)
        return True

    def _report(self, key: Hashable, kind: _Kind, now: float, *, forget: bool = False) -> None:
        """Log ``kind``'s last line left out with the count, if any; then start its interval
        again from now (or forget it: nothing was left out, or ``forget``)."""
        del self._kinds[key]
        if kind.left_out == 0 or kind.last is None:
            return
        level, msg, args = kind.last
        self.logger.log(level, msg + _repeated(kind.left_out, now - kind.logged_at), *args)
        if not forget:
            self._kinds[key] = _Kind(logged_at=now)


def _repeated(times: int, seconds: float) -> str:
    return f" (repeated {times} time{'' if times == 1 else 's'} in the last {seconds:.0f} s)"
