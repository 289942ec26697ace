"""Run one workload in-process: the real store actor, backend, coordinator and saga actors.

The driver starts sagas with C concurrent starters, each asking the coordinator
(:class:`~saga_orchestrator.coordinator.messages.StartSaga`) and waiting for its saga to end
before starting the next. A saga has ended when the transition that gives it a terminal (or
parked) status is durable: the engine's observer hook is called right after that commit, and
the observer wakes the starter. That is the moment the service would report the end, found
without reading the store. The observer also feeds the service's Prometheus metrics, as in the
service, so their cost is in the figures.

Figures (over the measured sagas only, after ``warmup`` sagas that are not counted):

* ``sagas_per_s``: measured sagas / wall time from the first start to the last end;
* ``p50_ms``/``p99_ms``: start-to-terminal latency (from just before the ``StartSaga`` ask to
  the commit of the terminal transition);
* ``cpu_ms_per_saga``: CPU time of this process (all threads, so SQLite's writer thread too;
  not the PostgreSQL server's) / sagas;
* ``transactions_per_saga``: batches the store actor committed / sagas.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorRef
from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.messages import StartResult, StartSaga
from saga_orchestrator.coordinator.transitions import Transition
from saga_orchestrator.errors import OverloadedError

from .common import Progress, latency_ms, percentile, rounded
from .engine import running_engine
from .stores import BenchError, StoreTarget, fresh_backend
from .workloads import Workload

__all__ = ["BenchResult", "Progress", "percentile", "run_workload", "start_saga"]

END_STATUSES = sm.TERMINAL | sm.PARKED
"""Statuses in which a saga's actor stops: the workload's saga has ended (well or not)."""
SAGA_END_TIMEOUT = 120.0
"""Seconds one saga may take from its start to its end before the run is abandoned."""
START_TIMEOUT = 60.0
"""Seconds a ``StartSaga`` ask may wait for the coordinator."""


@attrs.frozen(kw_only=True)
class BenchResult:
    """The figures of one workload run."""

    workload: str
    store: str
    n: int
    concurrency: int
    sagas_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_saga: float
    transactions_per_saga: float
    appends_per_saga: float
    """Appends committed (each one saga's transitions written together) / sagas."""
    mean_batch: float
    """Appends per transaction: how much group commit grouped."""
    largest_batch: int
    mean_ms: float
    max_ms: float
    elapsed_s: float
    warmup: int
    errors: int
    """Sagas that ended in another status than the workload expects."""
    overloaded: int
    """Starts refused with ``OverloadedError`` (and retried)."""

    def to_json(self) -> dict[str, Any]:
        return rounded(self)

    def line(self) -> str:
        """The one text line of these figures."""
        return (
            f"{self.workload:<12} {self.store:<10} n={self.n:<6} c={self.concurrency:<4} "
            f"{self.sagas_per_s:9,.0f} sagas/s  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  cpu {self.cpu_ms_per_saga:6.3f} ms/saga  "
            f"{self.transactions_per_saga:5.2f} tx/saga  "
            f"({self.appends_per_saga:.1f} appends/saga, {self.mean_batch:.1f} per tx)"
            + (f"  ERRORS {self.errors}" if self.errors else "")
        )


class _Endings:
    """When each saga's terminal transition committed, and in which status."""

    def __init__(self) -> None:
        self._waiting: dict[str, trio.Event] = {}
        self._ended: dict[str, tuple[str, float]] = {}

    def ended(self, saga_id: str, status: str) -> None:
        self._ended[saga_id] = (status, time.perf_counter())
        event = self._waiting.pop(saga_id, None)
        if event is not None:
            event.set()

    async def wait(self, saga_id: str) -> tuple[str, float]:
        """(status, perf_counter time of the commit) once the saga has ended."""
        if saga_id not in self._ended:
            event = self._waiting[saga_id] = trio.Event()
            try:
                await event.wait()
            finally:
                self._waiting.pop(saga_id, None)
        return self._ended.pop(saga_id)


def _end_hook(on_end: Callable[[str, str], None]) -> Callable[..., None]:
    """The engine hook that tells ``on_end`` when a saga reaches an ending status."""

    def hook(before: sm.SagaState, after: sm.SagaState, transitions: Sequence[Transition]) -> None:
        if after.status in END_STATUSES and before.status not in END_STATUSES:
            on_end(after.saga_id, after.status.value)

    return hook


@attrs.define
class _Phase:
    """The outcome of driving a number of sagas."""

    latencies: list[float] = attrs.field(factory=list)
    errors: int = 0
    overloaded: int = 0
    first_error: str | None = None


async def start_saga(
    coordinator: ActorRef[Any], saga_type: str, index: int, on_overload: Callable[[], None]
) -> str:
    """Start a saga of ``saga_type`` (input ``{"index": index}``); returns its id. A start the
    coordinator refuses as overloaded calls ``on_overload`` and is retried after 1 ms."""
    message = StartSaga(saga_type=saga_type, data={"index": index})
    while True:
        try:
            result: StartResult = await coordinator.ask(message, timeout=START_TIMEOUT)
            return result.saga.saga_id
        except OverloadedError:
            on_overload()
            await trio.sleep(0.001)


async def _start(coordinator: ActorRef[Any], saga_type: str, index: int, phase: _Phase) -> str:
    def overloaded() -> None:
        phase.overloaded += 1

    return await start_saga(coordinator, saga_type, index, overloaded)


async def _drive(
    coordinator: ActorRef[Any],
    endings: _Endings,
    workload: Workload,
    *,
    n: int,
    concurrency: int,
    progress: Progress,
    label: str,
) -> _Phase:
    """Run ``n`` sagas, ``concurrency`` at a time; returns their latencies in seconds."""
    phase = _Phase()
    indexes = iter(range(n))

    async def starter() -> None:
        for index in indexes:  # shared by the starters: each takes the next number
            started = time.perf_counter()
            saga_id = await _start(coordinator, workload.saga_type, index, phase)
            with trio.move_on_after(SAGA_END_TIMEOUT) as timer:
                status, ended = await endings.wait(saga_id)
            if timer.cancelled_caught:
                raise BenchError(
                    f"saga {saga_id} ({workload.saga_type}) did not end within "
                    f"{SAGA_END_TIMEOUT:g} s"
                )
            phase.latencies.append(ended - started)
            if status != workload.expected_status:
                phase.errors += 1
                phase.first_error = phase.first_error or f"saga {saga_id} ended {status}"
            progress.done += 1

    progress.done = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.report, label, n)
        async with trio.open_nursery() as starters:
            for _ in range(min(concurrency, n)):
                starters.start_soon(starter)
        nursery.cancel_scope.cancel()
    return phase


async def run_workload(
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
    resources: Mapping[str, Any] | None = None,
) -> BenchResult:
    """Run ``workload`` on a fresh store of ``target``; needs a running trio-asyncio loop
    (for PostgreSQL). ``resources`` are handed to the steps (``ctx.resources``)."""
    progress = progress or Progress(None)
    concurrency = workload.fixed_concurrency or concurrency
    endings = _Endings()
    async with (
        fresh_backend(target, keep=keep, note=note) as backend,
        running_engine(
            backend, settings, hook=_end_hook(endings.ended), resources=resources
        ) as engine,
    ):
        coordinator_ref, store = engine.ref, engine.store
        drive = partial(
            _drive, coordinator_ref, endings, workload, concurrency=concurrency, progress=progress
        )
        if warmup:
            await drive(n=warmup, label=f"{workload.name} warm-up")
        stats = store.stats
        batches, appends, cpu = stats.batches, stats.appends, time.process_time()
        stats.largest_batch = 0
        began = time.perf_counter()
        phase = await drive(n=n, label=workload.name)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
        batches, appends = stats.batches - batches, stats.appends - appends
        largest = stats.largest_batch
    if phase.errors:
        note(
            f"{workload.name}: {phase.errors} sagas did not end {workload.expected_status} "
            f"(first: {phase.first_error})"
        )
    return BenchResult(
        workload=workload.name,
        store=target.kind,
        n=n,
        concurrency=concurrency,
        sagas_per_s=n / elapsed if elapsed > 0 else 0.0,
        **latency_ms(phase.latencies),
        cpu_ms_per_saga=cpu * 1000 / n,
        transactions_per_saga=batches / n,
        appends_per_saga=appends / n,
        mean_batch=appends / batches if batches else 0.0,
        largest_batch=largest,
        elapsed_s=elapsed,
        warmup=warmup,
        errors=phase.errors,
        overloaded=phase.overloaded,
    )
