"""The ``recovery`` workload: N sagas left mid-step by a stopped process, resumed by a new one.

1. Populate (not timed): an engine over a fresh store starts N ``bench.recovery`` sagas (C
   starters). Step 1 completes; step 2's action never returns (a :class:`RecoveryProbe` holds
   it). Once all N are inside step 2, the engine is stopped as a service stops (the actors are
   cancelled; nothing more is written) and its backend is closed. Every saga's last durable
   transition is now ``StepStarted(step 2)``, exactly as the engine wrote it; this is checked
   by reading every history back.
2. Restart (timed from here): a new backend over the same store is opened (PostgreSQL: a new
   pool; SQLite: the file opened again; memory: the same in-memory store), a new store actor
   and coordinator start, and the coordinator's recovery reads the active sagas and their
   histories (``store.read_streams``) and respawns every actor, which re-runs step 2, then
   steps 3 and 4.

Figures, each in seconds from the restart: ``open_s`` (the backend open), ``ready_s``
(``coordinator.ready``: every saga respawned), ``resumed_s`` (the last saga's step 2 called
again) and ``completed_s`` (the last ``SagaCompleted`` durable). ``sagas_per_s`` = N /
``completed_s``; ``p50_ms``/``p99_ms``: each saga's time from the restart to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.messages import CoordinatorStatus, GetStatus
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.coordinator.projection import stream_id
from saga_orchestrator.coordinator.transitions import StepStarted, Transition, from_record
from saga_orchestrator.store.backend import StoreBackend

from .common import Counter, Progress, latency_ms, rounded
from .engine import engine_options, running_engine
from .harness import END_STATUSES, START_TIMEOUT, start_saga
from .stores import BenchError, FreshStore, StoreTarget, fresh_store, opened
from .workloads import PROBE, SAGA_RECOVERY, RecoveryProbe, Workload

__all__ = ["RecoveryResult", "run_recovery"]

STALL_TIMEOUT = 120.0
"""Seconds without one more saga moving before the run is abandoned."""
HELD_STEP = 1
"""The index of the step the first process is left in (step 2)."""
READ_BATCH = 500
"""Histories read at once when checking what the first process left."""


@attrs.frozen(kw_only=True)
class RecoveryResult:
    """The figures of one ``recovery`` run."""

    workload: str
    store: str
    n: int
    concurrency: int
    """Sagas in flight after the restart: all N."""
    sagas_per_s: float
    """N / ``completed_s``."""
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    open_s: float
    ready_s: float
    resumed_s: float
    completed_s: float
    recovered: int
    """Sagas the coordinator says its recovery resumed."""
    populate_s: float
    cpu_ms_per_saga: float
    """CPU of this process from the restart to the last end / N."""
    transactions_per_saga: float
    appends_per_saga: float
    max_active_sagas: int
    warmup: int
    errors: int

    def to_json(self) -> dict[str, Any]:
        return rounded(self)

    def line(self) -> str:
        return (
            f"{self.workload:<12} {self.store:<10} n={self.n:<6} "
            f"ready {self.ready_s:6.2f} s  resumed {self.resumed_s:6.2f} s  "
            f"completed {self.completed_s:6.2f} s  {self.sagas_per_s:9,.0f} sagas/s  "
            f"p50 {self.p50_ms:8.1f} ms  p99 {self.p99_ms:8.1f} ms  "
            f"cpu {self.cpu_ms_per_saga:6.3f} ms/saga  {self.transactions_per_saga:5.2f} tx/saga"
            + (f"  ERRORS {self.errors}" if self.errors else "")
        )


async def _populate(
    store: FreshStore,
    settings: Settings,
    options: EngineOptions,
    *,
    n: int,
    concurrency: int,
    progress: Progress,
    label: str,
) -> None:
    """Leave ``n`` sagas inside step 2 in ``store``, as a process stopped there would."""
    held = Counter(n, progress)
    probe = RecoveryProbe(hold=True, on_call=held.add)
    indexes = iter(range(n))

    def overloaded() -> None:
        return None

    async with opened(store.backend()) as backend:
        async with running_engine(
            backend, settings, options=options, resources={PROBE: probe}
        ) as engine:

            async def starter() -> None:
                for index in indexes:
                    await start_saga(engine.ref, SAGA_RECOVERY.name, index, overloaded)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(progress.report, label, n)
                async with trio.open_nursery() as starters:
                    for _ in range(min(concurrency, n)):
                        starters.start_soon(starter)
                await held.wait(stall=STALL_TIMEOUT, what=f"{label}: sagas in step 2")
                nursery.cancel_scope.cancel()
        # The engine has stopped: its saga actors were cancelled inside step 2.
        await _check_left_in_step_2(backend, n)


async def _check_left_in_step_2(backend: StoreBackend, n: int) -> None:
    """Every active saga's history ends with ``StepStarted`` of step 2, and there are ``n``."""
    records = await backend.active_sagas()
    if len(records) != n:
        raise BenchError(f"recovery: {len(records)} active sagas left behind, not {n}")
    for start in range(0, n, READ_BATCH):
        ids = [stream_id(r.saga_id) for r in records[start : start + READ_BATCH]]
        histories = await backend.read_streams(ids)
        for sid in ids:
            history = histories.get(sid, [])
            last = from_record(history[-1].event_type, history[-1].data) if history else None
            if not (isinstance(last, StepStarted) and last.step == HELD_STEP):
                raise BenchError(f"recovery: {sid} was left at {last!r}, not in step 2")


@attrs.define
class _Ends:
    """When each saga ended, from the engine's observer hook."""

    began: float
    counter: Counter
    times: list[float] = attrs.field(factory=list)
    errors: int = 0
    first_error: str | None = None

    def hook(
        self, before: sm.SagaState, after: sm.SagaState, transitions: Sequence[Transition]
    ) -> None:
        if after.status in END_STATUSES and before.status not in END_STATUSES:
            self.times.append(time.perf_counter() - self.began)
            if after.status is not sm.SagaStatus.COMPLETED:
                self.errors += 1
                self.first_error = self.first_error or f"saga {after.saga_id} {after.status.value}"
            self.counter.add()


async def run_recovery(
    workload: Workload,
    target: StoreTarget,
    settings: Settings,
    *,
    n: int,
    concurrency: int,
    warmup: int = 0,
    keep: bool = False,
    progress: Progress | None = None,
    note: Callable[[str], None] = print,
) -> RecoveryResult:
    """Run the ``recovery`` workload on a fresh store of ``target`` (needs a trio-asyncio loop
    for PostgreSQL). ``warmup`` does not apply (the restart is what is measured)."""
    progress = progress or Progress(None)
    options = engine_options(settings, at_least_active=n + concurrency)
    if options.max_active_sagas != settings.max_active_sagas:
        note(
            f"{workload.name}: MAX_ACTIVE_SAGAS raised from {settings.max_active_sagas} to "
            f"{options.max_active_sagas} for this workload ({n} sagas in flight at once)"
        )
    async with fresh_store(target, keep=keep, note=note) as store:
        began = time.perf_counter()
        await _populate(
            store,
            settings,
            options,
            n=n,
            concurrency=concurrency,
            progress=progress,
            label=f"{workload.name} (populate)",
        )
        populate_s = time.perf_counter() - began

        resumed = Counter(n)
        probe = RecoveryProbe(hold=False, on_call=resumed.add)
        ends = _Ends(began=0.0, counter=Counter(n, progress))
        ready_s = 0.0
        cpu = time.process_time()
        began = ends.began = time.perf_counter()
        async with opened(store.backend()) as backend:
            open_s = time.perf_counter() - began
            async with running_engine(
                backend,
                settings,
                hook=ends.hook,
                options=options,
                resources={PROBE: probe},
                wait_ready=False,
            ) as engine:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(progress.report, workload.name, n)
                    await engine.coordinator.ready.wait()
                    ready_s = time.perf_counter() - began
                    status: CoordinatorStatus = await engine.ref.ask(
                        GetStatus(), timeout=START_TIMEOUT
                    )
                    resumed_at = await resumed.wait(
                        stall=STALL_TIMEOUT, what=f"{workload.name}: sagas resumed"
                    )
                    ended_at = await ends.counter.wait(
                        stall=STALL_TIMEOUT, what=f"{workload.name}: sagas ended"
                    )
                    nursery.cancel_scope.cancel()
                cpu = time.process_time() - cpu
                stats = engine.store.stats
                batches, appends = stats.batches, stats.appends
    errors = ends.errors + abs(status.recovered_sagas - n)
    if status.recovered_sagas != n:
        note(f"{workload.name}: the coordinator resumed {status.recovered_sagas} sagas, not {n}")
    if ends.errors:
        note(f"{workload.name}: {ends.errors} sagas did not complete (first: {ends.first_error})")
    completed_s = ended_at - began
    return RecoveryResult(
        workload=workload.name,
        store=target.kind,
        n=n,
        concurrency=n,
        sagas_per_s=n / completed_s if completed_s > 0 else 0.0,
        **latency_ms(ends.times),
        open_s=open_s,
        ready_s=ready_s,
        resumed_s=resumed_at - began,
        completed_s=completed_s,
        recovered=status.recovered_sagas,
        populate_s=populate_s,
        cpu_ms_per_saga=cpu * 1000 / n,
        transactions_per_saga=batches / n,
        appends_per_saga=appends / n,
        max_active_sagas=options.max_active_sagas,
        warmup=0,
        errors=errors,
    )
