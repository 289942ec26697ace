"""The ``wait`` workload: N sagas parked on a reply-driven step, then every reply delivered.

1. Warm-up: W ``bench.wait`` sagas are started, parked, replied to and ended (not counted).
2. Park: this process's RSS is read (after a garbage collection); C starters start N
   ``bench.wait`` sagas through the coordinator. Each saga's actor runs the step's action and
   records ``StepAwaitingReply``; once all N have (the engine's observer hook counts them), RSS
   is read again. ``rss_kb_per_saga`` = the growth / N. It counts everything N more waiting
   sagas cost this process: their actors and tasks, the coordinator's registry, the metrics,
   with the in-memory backend the stored histories, and the bench's list of the N saga ids
   (~0.1 KB each).
3. Release: C deliverers ask the coordinator to deliver a ``bench.replied`` event to each saga
   (:class:`~saga_orchestrator.coordinator.messages.DeliverEvent`, answered once the reply is
   durable in the saga's history), one after another without waiting for the saga to end; each
   saga then completes. Latency: from just before its delivery to the commit of its
   ``SagaCompleted``. ``sagas_per_s`` = N / time from the first delivery to the last end.

``MAX_ACTIVE_SAGAS`` is raised for this workload (N sagas are active at once).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.messages import DeliverEvent
from saga_orchestrator.coordinator.transitions import StepAwaitingReply, Transition

from .common import Counter, Progress, latency_ms, rounded, rss_bytes
from .engine import Engine, engine_options, running_engine
from .harness import END_STATUSES, START_TIMEOUT, start_saga
from .stores import StoreTarget, fresh_backend
from .workloads import REPLY_EVENT, SAGA_WAIT, Workload

__all__ = ["STALL_TIMEOUT", "WaitResult", "run_wait"]

STALL_TIMEOUT = 120.0
"""Seconds without one more saga parked (or ended) before the run is abandoned."""


@attrs.frozen(kw_only=True)
class WaitResult:
    """The figures of one ``wait`` run."""

    workload: str
    store: str
    n: int
    concurrency: int
    sagas_per_s: float
    """N / seconds from the first delivery to the last saga's end."""
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    rss_kb_per_saga: float
    """RSS growth from before the first start to all N parked, / N, in KB (1024 bytes)."""
    rss_before_mb: float
    rss_parked_mb: float
    park_s: float
    """Seconds from the first start to the last saga parked."""
    parked_per_s: float
    release_s: float
    cpu_ms_per_saga: float
    """CPU of this process over the release / N."""
    park_cpu_ms_per_saga: float
    transactions_per_saga: float
    """Store transactions of the release / N."""
    appends_per_saga: float
    max_active_sagas: int
    warmup: int
    errors: int
    overloaded: int
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        return rounded(self)

    def line(self) -> str:
        return (
            f"{self.workload:<12} {self.store:<10} n={self.n:<6} c={self.concurrency:<4} "
            f"{self.sagas_per_s:9,.0f} sagas/s  p50 {self.p50_ms:7.2f} ms  "
            f"p99 {self.p99_ms:7.2f} ms  rss {self.rss_kb_per_saga:6.2f} KB/waiting saga  "
            f"parked in {self.park_s:.1f} s ({self.parked_per_s:,.0f}/s)  "
            f"cpu {self.cpu_ms_per_saga:6.3f} ms/saga  {self.transactions_per_saga:5.2f} tx/saga"
            + (f"  ERRORS {self.errors}" if self.errors else "")
        )


@attrs.define
class _Watch:
    """Counts sagas parking and ending, from the engine's observer hook."""

    parked: Counter = attrs.field(factory=lambda: Counter(0))
    ended: Counter = attrs.field(factory=lambda: Counter(0))
    delivered_at: dict[str, float] = attrs.field(factory=dict)
    latencies: list[float] = attrs.field(factory=list)
    errors: int = 0
    overloaded: int = 0
    first_error: str | None = None

    def hook(
        self, before: sm.SagaState, after: sm.SagaState, transitions: Sequence[Transition]
    ) -> None:
        if any(isinstance(t, StepAwaitingReply) for t in transitions):
            self.parked.add()
        if after.status in END_STATUSES and before.status not in END_STATUSES:
            delivered = self.delivered_at.pop(after.saga_id, None)
            if delivered is not None:
                self.latencies.append(time.perf_counter() - delivered)
            if after.status is not sm.SagaStatus.COMPLETED:
                self.fail(f"saga {after.saga_id} ended {after.status.value}")
            self.ended.add()

    def fail(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what

    def count_overload(self) -> None:
        self.overloaded += 1


async def _park(
    engine: Engine,
    watch: _Watch,
    *,
    first: int,
    n: int,
    concurrency: int,
    progress: Progress,
    label: str,
) -> tuple[list[str], float]:
    """Start ``n`` sagas and wait until all are parked; (their ids, seconds taken)."""
    ids: list[str] = []
    watch.parked = Counter(n, progress)
    indexes = iter(range(first, first + n))

    async def starter() -> None:
        for index in indexes:  # shared by the starters: each takes the next number
            ids.append(await start_saga(engine.ref, SAGA_WAIT.name, index, watch.count_overload))

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.report, label, n)
        async with trio.open_nursery() as starters:
            for _ in range(min(concurrency, n)):
                starters.start_soon(starter)
        await watch.parked.wait(stall=STALL_TIMEOUT, what=f"{label}: sagas parked")
        nursery.cancel_scope.cancel()
    assert watch.parked.reached_at is not None
    return ids, watch.parked.reached_at - began


async def _release(
    engine: Engine,
    watch: _Watch,
    ids: list[str],
    *,
    concurrency: int,
    progress: Progress,
    label: str,
) -> float:
    """Deliver each saga its reply and wait until all have ended; the seconds taken."""
    watch.ended = Counter(len(ids), progress)
    pending = iter(ids)

    async def deliverer() -> None:
        for saga_id in pending:
            watch.delivered_at[saga_id] = time.perf_counter()
            message = DeliverEvent(
                saga_id=saga_id, event_id=f"reply-{saga_id}", event_type=REPLY_EVENT
            )
            try:
                answer = await engine.ref.ask(message, timeout=START_TIMEOUT)
            except Exception as exc:  # the saga will not end: count it as ended, in error
                watch.delivered_at.pop(saga_id, None)
                watch.fail(f"delivering to saga {saga_id}: {type(exc).__name__}: {exc}")
                watch.ended.add()
                continue
            if answer != "accepted":
                watch.fail(f"delivering to saga {saga_id} answered {answer!r}")

    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.report, label, len(ids))
        async with trio.open_nursery() as deliverers:
            for _ in range(min(concurrency, len(ids))):
                deliverers.start_soon(deliverer)
        await watch.ended.wait(stall=STALL_TIMEOUT, what=f"{label}: sagas ended")
        nursery.cancel_scope.cancel()
    assert watch.ended.reached_at is not None
    return watch.ended.reached_at - began


def _rss_now() -> int:
    gc.collect()
    return rss_bytes()


async def run_wait(
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
) -> WaitResult:
    """Run the ``wait`` workload on a fresh store of ``target`` (needs a trio-asyncio loop
    for PostgreSQL)."""
    progress = progress or Progress(None)
    options = engine_options(settings, at_least_active=n + concurrency)
    if options.max_active_sagas != settings.max_active_sagas:
        note(
            f"{workload.name}: MAX_ACTIVE_SAGAS raised from {settings.max_active_sagas} to "
            f"{options.max_active_sagas} for this workload ({n} sagas wait at once)"
        )
    watch = _Watch()
    async with (
        fresh_backend(target, keep=keep, note=note) as backend,
        running_engine(backend, settings, hook=watch.hook, options=options) as engine,
    ):
        if warmup:
            ids, _ = await _park(
                engine,
                watch,
                first=n,
                n=warmup,
                concurrency=concurrency,
                progress=progress,
                label=f"{workload.name} warm-up (park)",
            )
            await _release(
                engine,
                watch,
                ids,
                concurrency=concurrency,
                progress=progress,
                label=f"{workload.name} warm-up (reply)",
            )
            watch.latencies.clear()
            watch.errors, watch.overloaded, watch.first_error = 0, 0, None
        stats = engine.store.stats
        rss_before = _rss_now()
        cpu = time.process_time()
        ids, park_s = await _park(
            engine,
            watch,
            first=0,
            n=n,
            concurrency=concurrency,
            progress=progress,
            label=f"{workload.name} (park)",
        )
        park_cpu = time.process_time() - cpu
        rss_parked = _rss_now()
        batches, appends, cpu = stats.batches, stats.appends, time.process_time()
        release_s = await _release(
            engine,
            watch,
            ids,
            concurrency=concurrency,
            progress=progress,
            label=f"{workload.name} (reply)",
        )
        cpu = time.process_time() - cpu
        batches, appends = stats.batches - batches, stats.appends - appends
    if watch.errors:
        note(f"{workload.name}: {watch.errors} sagas did not complete (first: {watch.first_error})")
    mb = 1024 * 1024
    return WaitResult(
        workload=workload.name,
        store=target.kind,
        n=n,
        concurrency=concurrency,
        sagas_per_s=n / release_s if release_s > 0 else 0.0,
        **latency_ms(watch.latencies),
        rss_kb_per_saga=(rss_parked - rss_before) / n / 1024,
        rss_before_mb=rss_before / mb,
        rss_parked_mb=rss_parked / mb,
        park_s=park_s,
        parked_per_s=n / park_s if park_s > 0 else 0.0,
        release_s=release_s,
        cpu_ms_per_saga=cpu * 1000 / n,
        park_cpu_ms_per_saga=park_cpu * 1000 / n,
        transactions_per_saga=batches / n,
        appends_per_saga=appends / n,
        max_active_sagas=options.max_active_sagas,
        warmup=warmup,
        errors=watch.errors,
        overloaded=watch.overloaded,
        elapsed_s=park_s + release_s,
    )
