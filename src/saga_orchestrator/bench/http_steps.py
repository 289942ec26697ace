"""The ``http-steps`` workload: ``saga-4`` whose four steps each make one HTTP call.

The engine runs in this process as for ``saga-4`` (:mod:`.harness`: the same driver and
figures), with the downstream clients of the service (``coordinator/downstream``: a pool per
service, requests in flight bounded) handed to the steps. Every service URL points at the stub
(:mod:`.stub_service`), a minimal HTTP service in a process of its own, so the figures are the
orchestrator's cost of a saga that calls services: ``cpu_ms_per_saga`` is this process's CPU,
beside the same figure of a no-op ``saga-4``; ``service_cpu_ms_per_saga`` is the stub's (over
the warm-up and the measured sagas).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import attrs

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.downstream import (
    DOWNSTREAM,
    DownstreamConfig,
    open_downstream_clients,
)

from .common import Progress, cpu_seconds_of, rounded
from .harness import BenchResult, run_workload
from .http_server import HOST, child_process, free_port
from .stores import StoreTarget
from .workloads import Workload

__all__ = ["HttpStepsResult", "run_http_steps", "stub_service"]


@attrs.frozen(kw_only=True)
class HttpStepsResult:
    """The ``saga-4`` figures, and the stub's CPU per saga."""

    engine: BenchResult
    service_cpu_ms_per_saga: float | None

    @property
    def errors(self) -> int:
        return self.engine.errors

    def to_json(self) -> dict[str, Any]:
        figures = rounded(self.engine)
        cpu = self.service_cpu_ms_per_saga
        figures["service_cpu_ms_per_saga"] = None if cpu is None else round(cpu, 4)
        return figures

    def line(self) -> str:
        cpu = self.service_cpu_ms_per_saga
        return self.engine.line() + f"  (stub cpu {'?' if cpu is None else f'{cpu:.3f}'} ms/saga)"


def stub_service(note: Callable[[str], None]) -> Any:
    """The stub service in a process of its own (an async context manager of its process)."""
    port = free_port()
    command = [sys.executable, "-m", "saga_orchestrator.bench.stub_service", "--port", str(port)]
    return child_process(command, os.environ, port, note=note)


async def run_http_steps(
    workload: Workload,
    target: StoreTarget,
    settings: Settings,
    *,
    n: int,
    concurrency: int,
    warmup: int,
    keep: bool = False,
    progress: Progress | None = None,
    note: Callable[[str], None] = print,
) -> HttpStepsResult:
    """Run ``http-steps``: the stub in its own process, the engine here calling it."""
    async with stub_service(note) as stub:
        config = DownstreamConfig.all_at(
            f"http://{HOST}:{stub.port}", timeout=settings.saga_step_timeout_seconds
        )
        async with open_downstream_clients(config) as clients:
            before = cpu_seconds_of(stub.pid)
            engine = await run_workload(
                workload,
                target,
                settings,
                n=n,
                concurrency=concurrency,
                warmup=warmup,
                keep=keep,
                progress=progress,
                note=note,
                resources={DOWNSTREAM: clients},
            )
            after = cpu_seconds_of(stub.pid)
    cpu = None if before is None or after is None else (after - before) * 1000 / (n + warmup)
    return HttpStepsResult(engine=engine, service_cpu_ms_per_saga=cpu)
