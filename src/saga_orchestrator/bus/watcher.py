"""The bus watcher: reads the figures of the service's streams in the background, for metrics.

A Prometheus scrape must not wait on the bus: a Redis that does not answer would hold every
scrape for the client's timeouts, and the Redis adapter's calls run in worker threads that a
cancel cannot abandon (``redis_streams``), so a short timeout at scrape time could not bound
it either. The watcher therefore reads :meth:`EventBus.figures` of each stream every
``interval`` seconds (each read bounded by the adapter's own command timeout) and keeps the
last figures it read; a scrape only copies them. While the bus does not answer, the figures
stay those of the last read that succeeded, and :meth:`BusWatcher.age` (exported as
``bus_figures_age_seconds``) grows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import trio

from saga_orchestrator.actors import ActorSystem, run_loop_actor
from saga_orchestrator.errors import BusError

from .base import EventBus, StreamFigures

__all__ = ["BUS_FIGURES_INTERVAL", "BusWatcher", "start_bus_watcher"]

log = logging.getLogger(__name__)

BUS_FIGURES_INTERVAL = 5.0
"""Seconds between two reads of the bus figures (metrics are at most this much older)."""


class BusWatcher:
    """The last figures read of ``streams``; :meth:`run` is the actor body."""

    def __init__(
        self, bus: EventBus, streams: Sequence[str], *, interval: float | None = None
    ) -> None:
        """``interval`` defaults to :data:`BUS_FIGURES_INTERVAL`."""
        self.bus = bus
        self.streams = list(dict.fromkeys(streams))
        self.interval = BUS_FIGURES_INTERVAL if interval is None else interval
        self.figures: dict[str, StreamFigures] = {}
        """By stream: what the last read that succeeded found."""
        self.read_at: float | None = None
        """``trio.current_time()`` of that read."""
        self.reads = 0
        """Reads that succeeded."""
        self.last_error: str | None = None
        """Why the last read failed; ``None`` once one succeeds again."""

    def age(self) -> float | None:
        """Seconds since :attr:`figures` were read; ``None`` before the first read."""
        return None if self.read_at is None else trio.current_time() - self.read_at

    async def refresh(self) -> None:
        """Read every stream's figures once; keeps them only if every read succeeded.

        Raises:
            BusError: the bus failed (``BusUnavailable``: it cannot be reached).
        """
        read = {stream: await self.bus.figures(stream) for stream in self.streams}
        self.figures = read
        self.read_at = trio.current_time()
        self.reads += 1
        self.last_error = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Refresh now, then every :attr:`interval` seconds, until cancelled. A failed read
        is logged (once until one succeeds) and tried again at the next interval: metrics
        never take the service down."""
        task_status.started()
        while True:
            try:
                await self.refresh()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if self.last_error is None:
                    if isinstance(exc, BusError):
                        log.warning("the bus figures cannot be read: %s", error)
                    else:
                        log.exception("reading the bus figures failed unexpectedly")
                self.last_error = error
            await trio.sleep(self.interval)


async def start_bus_watcher(
    system: ActorSystem,
    bus: EventBus,
    streams: Sequence[str],
    *,
    interval: float | None = None,
) -> BusWatcher:
    """Spawn the watcher as the permanent actor ``bus-watcher`` of ``system``."""
    watcher = BusWatcher(bus, streams, interval=interval)
    await system.spawn("bus-watcher", partial(run_loop_actor, body=watcher.run), capacity=1)
    return watcher
