"""The lease keeper's timing, in virtual time: its renewals keep the leases holding while the
database is slow, and a renewal that does not answer in time stops the sagas when the leases
may end, not later."""

from __future__ import annotations

from typing import Any

import trio

from saga_orchestrator.coordinator.lease import InstanceLease
from saga_orchestrator.store.memory import MemoryBackend


class SlowStore:
    """A store whose renewals take ``renew_takes`` seconds (``inf``: never answer)."""

    def __init__(self, renew_takes: float) -> None:
        self.backend = MemoryBackend(clock=trio.current_time)
        self.renew_takes = renew_takes

    async def register_instance(self, *args: Any) -> Any:
        return await self.backend.register_instance(*args)

    async def renew_instance(self, *args: Any) -> bool:
        await trio.sleep(self.renew_takes)
        return await self.backend.renew_instance(*args)

    async def live_instances(self) -> Any:
        return await self.backend.live_instances()


async def test_slow_renewals_keep_the_leases_holding_even_at_the_shortest_expiry(
    autojump_clock: Any,
) -> None:
    """INSTANCE_EXPIRY_SECONDS may be twice the heartbeat: renewals then come often enough for
    one that takes a fifth of the heartbeat not to let the leases lapse (503s, no claims)."""
    lease = InstanceLease(store=SlowStore(renew_takes=0.2), name="i", interval=1.0, ttl=2.0)  # type: ignore[arg-type]
    lapsed = []
    async with trio.open_nursery() as nursery:
        await nursery.start(lease.run)
        await lease.registered.wait()
        for _ in range(200):
            await trio.sleep(0.05)
            if not lease.holds:
                lapsed.append(round(trio.current_time(), 2))
        nursery.cancel_scope.cancel()
    assert [] == lapsed
    assert 0 == lease.stats.lost


async def test_a_renewal_that_hangs_stops_the_sagas_when_the_leases_may_end(
    autojump_clock: Any,
) -> None:
    store = SlowStore(renew_takes=0.0)
    lost_at: list[float] = []

    async def lost(_: str) -> None:
        lost_at.append(trio.current_time())

    lease = InstanceLease(
        store=store,  # type: ignore[arg-type]
        name="i",
        interval=1.0,
        ttl=4.5,
        on_lost=lost,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(lease.run)
        await lease.registered.wait()
        await trio.sleep(0.2)
        store.renew_takes = float("inf")  # the database stops answering
        hung_at = trio.current_time()
        with trio.fail_after(10):
            while not lost_at:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    # the last renewal began at most one period before the hang; its leases hold for
    # ttl - period after it began: the sagas are stopped then, before anyone may claim them
    assert lost_at[0] <= hung_at + 4.5 - 1.0 + 1e-6
