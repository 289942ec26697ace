"""Wall-clock time for deadlines and timestamps, fakeable together with trio's clock."""

from __future__ import annotations

import time
from typing import Protocol

import trio


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class WallClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()


class TrioClock:
    """Wall time that advances with ``trio.current_time()``: under ``MockClock`` it jumps too."""

    def __init__(self, epoch: float = 1_700_000_000.0) -> None:
        self.epoch = epoch

    def now(self) -> float:
        return self.epoch + trio.current_time()
