"""The fault injector: strikes the planned faults at their offsets.

Process faults (orchestrator SIGKILL, or with several orchestrators SIGKILL or SIGTERM of one of
them; PostgreSQL and Redis restarts, stand-in stalls) come one
after the other, each over before the next one starts; stand-in faults (failures, latency,
hangs through its control API) are added beside them. :meth:`Injector.calm` ends every fault.
"""

from __future__ import annotations

import attrs
import trio

from . import plan
from .cluster import Cluster
from .plan import DISRUPTIONS, PlannedFault


@attrs.define
class Struck:
    fault: PlannedFault
    at: float
    """Seconds after the start of the window it was struck (later than planned when the one
    before it overran)."""
    took: float
    error: str | None = None


class Injector:
    def __init__(self, cluster: Cluster, faults: list[PlannedFault]) -> None:
        self.cluster = cluster
        self.faults = faults
        self.struck: list[Struck] = []

    async def run(self, start: float) -> None:
        """Strike every fault (offsets from ``start``, on ``trio.current_time()``)."""
        disruptions = [f for f in self.faults if f.kind in DISRUPTIONS]
        others = [f for f in self.faults if f.kind not in DISRUPTIONS]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._strike_all, start, disruptions)
            nursery.start_soon(self._strike_all, start, others)

    async def _strike_all(self, start: float, faults: list[PlannedFault]) -> None:
        for fault in faults:
            await trio.sleep_until(start + fault.at)
            began = trio.current_time()
            error = None
            try:
                await self.strike(fault)
            except Exception as exc:  # recorded: the run's report says what did not strike
                error = f"{type(exc).__name__}: {exc}"
            took = trio.current_time() - began
            self.struck.append(Struck(fault, began - start, took, error))

    async def strike(self, fault: PlannedFault) -> None:
        cluster = self.cluster
        match fault.kind:
            case plan.KILL_ORCHESTRATOR:
                orchestrator = cluster.orchestrators.servers[fault.target]
                if fault.variant == "sigterm":
                    await orchestrator.terminate(fault.seconds)
                else:
                    await orchestrator.kill(fault.seconds)
            case plan.RESTART_POSTGRES:
                await trio.to_thread.run_sync(cluster.postgres.stop, fault.variant)
                await trio.sleep(fault.seconds)
                await trio.to_thread.run_sync(cluster.postgres.start)
            case plan.RESTART_REDIS:
                await trio.to_thread.run_sync(cluster.redis.kill)
                await trio.sleep(fault.seconds)
                await trio.to_thread.run_sync(cluster.redis.start)
            case plan.STALL_STANDIN:
                cluster.standin.stall()
                try:
                    await trio.sleep(fault.seconds)
                finally:
                    cluster.standin.resume()
            case _:
                await cluster.standin.control("POST", "faults", fault.fault)
                if fault.seconds:
                    await trio.sleep(fault.seconds)
                    await cluster.standin.remove_fault(fault.fault)

    async def calm(self) -> None:
        """End every fault: the stand-in's are cleared, every process is up."""
        cluster = self.cluster
        cluster.standin.resume()
        await cluster.standin.control("DELETE", "faults")
        if not cluster.postgres.running():
            await trio.to_thread.run_sync(cluster.postgres.start)
        if not cluster.redis.running():
            await trio.to_thread.run_sync(cluster.redis.start)

    def counts(self) -> dict[str, int]:
        """Faults struck without error, by label."""
        counts: dict[str, int] = {}
        for struck in self.struck:
            if struck.error is None:
                counts[struck.fault.label] = counts.get(struck.fault.label, 0) + 1
        return dict(sorted(counts.items()))
