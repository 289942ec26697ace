"""The dashboard's metrics page's figures: the last hour, minute by minute, in memory.

:class:`MetricsRing` is an engine observer that counts, per wall-clock minute, the sagas started,
completed, compensated (any ending by compensation: ``compensated``, ``cancelled``,
``timed_out``) and failed (parked for an operator: ``failed``, ``compensation_failed``), and
keeps a bounded sample of step latencies per minute. Only the last :data:`MINUTES` minutes are
kept: memory is bounded whatever the load. Per process; Prometheus stays the long-term store.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

import attrs

from saga_orchestrator.coordinator.observer import SagaObserver
from saga_orchestrator.coordinator.state import PARKED, SagaState, SagaStatus, StepStatus
from saga_orchestrator.coordinator.transitions import Transition

__all__ = ["KINDS", "MINUTES", "SAMPLES_PER_MINUTE", "MetricsRing", "Minute", "percentile"]

MINUTES = 60
"""Minutes kept."""
SAMPLES_PER_MINUTE = 512
"""Step latencies kept per minute (a uniform sample beyond that)."""
KINDS = ("started", "completed", "compensated", "failed")
_COMPENSATED = frozenset((SagaStatus.COMPENSATED, SagaStatus.CANCELLED, SagaStatus.TIMED_OUT))
_STEP_END = frozenset((StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.UNKNOWN))


@attrs.define
class Minute:
    """One minute's counts and step latency sample."""

    start: int
    """The minute, in seconds since the epoch (a multiple of 60)."""
    counts: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(KINDS, 0))
    latencies: list[float] = attrs.field(factory=list)
    seen: int = 0
    """Step latencies observed (``latencies`` holds a sample of them)."""


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class MetricsRing(SagaObserver):
    """Counts per minute over the last hour; see the module's docstring."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.minutes: dict[int, Minute] = {}
        self._random = random.Random(0)

    def _minute(self) -> Minute:
        start = int(self.clock() // 60 * 60)
        minute = self.minutes.get(start)
        if minute is None:
            minute = self.minutes[start] = Minute(start)
            for old in [m for m in self.minutes if m <= start - MINUTES * 60]:
                del self.minutes[old]
        return minute

    def transitions_recorded(
        self, before: SagaState, after: SagaState, transitions: Sequence[Transition]
    ) -> None:
        minute = self._minute()
        if before.version == 0:
            minute.counts["started"] += 1
        if before.status is not after.status:
            if after.status is SagaStatus.COMPLETED:
                minute.counts["completed"] += 1
            elif after.status in _COMPENSATED:
                minute.counts["compensated"] += 1
            elif after.status in PARKED:
                minute.counts["failed"] += 1
        for old, new in zip(before.steps, after.steps, strict=False):
            if new is old or new.status not in _STEP_END or old.status in _STEP_END:
                continue
            if new.started_at:
                self._sample(minute, max(0.0, (new.finished_at or self.clock()) - new.started_at))

    def _sample(self, minute: Minute, seconds: float) -> None:
        minute.seen += 1
        if len(minute.latencies) < SAMPLES_PER_MINUTE:
            minute.latencies.append(seconds)
        else:  # reservoir sampling: each latency kept with the same chance
            slot = self._random.randrange(minute.seen)
            if slot < SAMPLES_PER_MINUTE:
                minute.latencies[slot] = seconds

    def series(self) -> list[Minute]:
        """The last :data:`MINUTES` minutes, oldest first, empty minutes included."""
        now = int(self.clock() // 60 * 60)
        return [
            self.minutes.get(start) or Minute(start)
            for start in range(now - (MINUTES - 1) * 60, now + 60, 60)
        ]
