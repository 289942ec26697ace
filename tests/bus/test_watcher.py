"""The bus watcher keeps the last figures it read, refreshes them every interval, and keeps
them (growing older) while the bus fails; in virtual time on the in-process bus."""

from __future__ import annotations

import trio
import trio.testing

from saga_orchestrator.bus import BusMessage, BusWatcher, InProcessBus, StreamFigures
from saga_orchestrator.errors import BusUnavailable

STREAM = "events"
GROUP = "router"


class FailingBus(InProcessBus):
    """An in-process bus whose figures cannot be read while ``down``."""

    down = False

    async def figures(self, stream: str) -> StreamFigures:
        if self.down:
            raise BusUnavailable("the bus cannot be reached (test)")
        return await super().figures(stream)


async def publish(bus: InProcessBus, *event_ids: str) -> None:
    await bus.publish(STREAM, [BusMessage(event_id=e, event_type="t") for e in event_ids])


async def test_the_watcher_refreshes_every_interval_and_keeps_the_last_figures_on_failure(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    bus = FailingBus()
    await bus.ensure_group(STREAM, GROUP)
    await publish(bus, "e-1", "e-2")
    watcher = BusWatcher(bus, [STREAM, "lifecycle", STREAM], interval=5.0)
    assert (None, {}) == (watcher.age(), watcher.figures)  # nothing read yet
    await nursery.start(watcher.run)
    await trio.testing.wait_all_tasks_blocked()

    assert (1, 0.0) == (watcher.reads, watcher.age())  # read at once
    assert [STREAM, "lifecycle"] == list(watcher.figures)
    [router] = watcher.figures[STREAM].groups
    assert (2, 2, 0) == (watcher.figures[STREAM].length, router.lag, router.pending)

    await bus.read(STREAM, GROUP, "c1", count=1, block_ms=0)
    await trio.sleep(4.0)
    assert (1, 4.0) == (watcher.reads, watcher.age())  # not read again before the interval
    await trio.sleep(1.5)  # the second read was at 5 s (the sleeps end between reads)
    [router] = watcher.figures[STREAM].groups
    assert (2, 0.5) == (watcher.reads, watcher.age())
    assert (1, 1, 5.0) == (router.lag, router.pending, router.oldest_pending_age)

    bus.down = True
    await publish(bus, "e-3")
    await trio.sleep(12.0)  # two reads fail: the figures read last are kept, growing older
    assert (2, 12.5) == (watcher.reads, watcher.age())
    assert 2 == watcher.figures[STREAM].length
    assert "BusUnavailable: the bus cannot be reached (test)" == watcher.last_error

    bus.down = False
    await trio.sleep(3.0)  # the next read succeeds
    [router] = watcher.figures[STREAM].groups
    assert (3, 0.5, None) == (watcher.reads, watcher.age(), watcher.last_error)
    assert (3, 2, 1, 20.0) == (
        watcher.figures[STREAM].length,
        router.lag,
        router.pending,
        router.oldest_pending_age,
    )
