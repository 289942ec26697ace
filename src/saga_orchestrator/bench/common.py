"""What every workload uses: nearest-rank percentiles, the progress line, counters to wait on,
and how much memory and CPU a process uses."""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from typing import Any, TextIO

import attrs
import trio

from .stores import BenchError

__all__ = [
    "Counter",
    "Progress",
    "cpu_seconds_of",
    "latency_ms",
    "percentile",
    "rounded",
    "rss_bytes",
]


def rounded(result: Any) -> dict[str, Any]:
    """An attrs result as a JSON object, floats rounded to 4 decimals."""
    return {
        name: round(value, 4) if isinstance(value, float) else value
        for name, value in attrs.asdict(result).items()
    }


def percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``ordered`` (sorted ascending); 0.0 if empty."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_ms(seconds: list[float]) -> dict[str, float]:
    """``p50_ms``, ``p99_ms``, ``mean_ms`` and ``max_ms`` of latencies in seconds (0.0 when
    there are none): the latency figures every workload reports."""
    ordered = sorted(seconds)
    if not ordered:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0, "max_ms": 0.0}
    return {
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "mean_ms": sum(ordered) / len(ordered) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


class Progress:
    """Counts what is done and prints ``label: done/total`` to ``stream`` every ``interval``."""

    def __init__(self, stream: TextIO | None = sys.stderr, interval: float = 1.0) -> None:
        self.stream = stream
        self.interval = interval
        self.done = 0

    async def report(self, label: str, total: int) -> None:
        """Print until cancelled (the caller cancels it when the phase is over)."""
        if self.stream is None:
            await trio.sleep_forever()
        start, last = time.perf_counter(), 0
        while True:
            await trio.sleep(self.interval)
            now, done = time.perf_counter(), self.done
            rate = (done - last) / self.interval
            print(
                f"{label}: {done}/{total} ({rate:,.0f}/s, {now - start:.0f} s)",
                file=self.stream,
                flush=True,
            )
            last = done


class Counter:
    """Counts things as they happen (sagas parked, sagas ended, ...) and wakes the task that
    waits for ``total`` of them; the count is mirrored into ``progress``."""

    def __init__(self, total: int, progress: Progress | None = None) -> None:
        self.total = total
        self.count = 0
        self.reached_at: float | None = None
        """``time.perf_counter()`` when the count reached ``total``."""
        self._progress = progress
        self._reached = trio.Event()
        if total <= 0:
            self._reach()

    def add(self, amount: int = 1) -> None:
        self.count += amount
        if self._progress is not None:
            self._progress.done = self.count
        if self.count >= self.total and not self._reached.is_set():
            self._reach()

    def _reach(self) -> None:
        self.reached_at = time.perf_counter()
        self._reached.set()

    async def wait(self, *, stall: float, what: str) -> float:
        """Wait until ``total`` is reached; returns the ``perf_counter`` time it was.

        Raises:
            BenchError: the count did not move for ``stall`` seconds.
        """
        seen = -1
        while not self._reached.is_set():
            if self.count == seen:
                raise BenchError(
                    f"{what}: stuck at {self.count}/{self.total} for {stall:g} s; giving up"
                )
            seen = self.count
            with trio.move_on_after(stall):
                await self._reached.wait()
        assert self.reached_at is not None
        return self.reached_at


def rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc``); elsewhere its peak so far."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def cpu_seconds_of(pid: int) -> float | None:
    """CPU time (user + system) used so far by process ``pid``; ``None`` without ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
