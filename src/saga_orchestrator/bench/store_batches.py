"""A store-only benchmark: batches of typical saga appends committed straight through a backend.

It measures what one batch costs the store, whatever the engine does: no actors, no store actor,
no saga logic. Each batch holds ``batch_size`` appends, each to a different saga, shaped like the
engine's (two transition events, the saga row with its four step rows, one lifecycle message in
the outbox). A saga lives for five appends: the first creates its stream (expected version 0,
with an idempotency key), the next four advance it (the last one completes it); the sagas of a
batch are at staggered phases, so every batch mixes new and existing sagas the way a steady
stream of sagas does. Batches are committed one after another, as the store actor commits them.

Only the ``commit`` calls are timed: the requests of a batch are built before its commit starts.

Figures: batches/s and appends/s (over the sum of the commit times), the mean, p50 and p99 wall
time of a commit, and the CPU time of this process spent per batch inside ``commit`` (the
PostgreSQL server's CPU does not count).

Wire it to a command with :func:`run_store_batches` (on an opened backend) or
:func:`bench_store_batches` (a fresh store per run, as the other workloads get); or run
``python -m saga_orchestrator.bench.store_batches --database-url URL [-n BATCHES] [-b SIZE]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import attrs
import trio
import trio_asyncio

from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.records import (
    AppendRequest,
    AppendResult,
    NewEvent,
    OutboxMessage,
    SagaRecord,
    StepRecord,
)

from .common import percentile

__all__ = ["StoreBatchesResult", "bench_store_batches", "make_batch", "run_store_batches"]

STEPS = 4
APPENDS_PER_SAGA = 5
"""A saga's appends: its start, then one per step (the last also completes it)."""


@attrs.frozen(kw_only=True)
class StoreBatchesResult:
    store: str
    batches: int
    batch_size: int
    batches_per_s: float
    appends_per_s: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_batch: float
    cpu_us_per_append: float
    warmup: int

    def to_json(self) -> dict[str, Any]:
        return {
            k: round(v, 3) if isinstance(v, float) else v for k, v in attrs.asdict(self).items()
        }

    def line(self) -> str:
        return (
            f"store-batches[{self.store}] {self.batches} x {self.batch_size}: "
            f"{self.batches_per_s:.0f} batches/s, {self.appends_per_s:.0f} appends/s, "
            f"commit mean {self.mean_ms:.2f} ms (p50 {self.p50_ms:.2f}, p99 {self.p99_ms:.2f}), "
            f"CPU {self.cpu_ms_per_batch:.3f} ms/batch ({self.cpu_us_per_append:.1f} us/append)"
        )


def _saga(saga_id: str, phase: int, version: int, created_at: float, now: float) -> SagaRecord:
    """The projection row of a four-step saga after its append number ``phase`` (0-based)."""
    done = phase  # steps completed before this append's state
    steps = tuple(
        StepRecord(
            index=i,
            name=f"step-{i + 1}",
            status="completed" if i < done else ("running" if i == done else "pending"),
            attempts=1 if i <= done else 0,
            started_at=created_at + i if i <= done else None,
            finished_at=created_at + i + 0.5 if i < done else None,
            result={"ok": True, "step": i} if i < done else None,
        )
        for i in range(STEPS)
    )
    finished = phase == APPENDS_PER_SAGA - 1
    return SagaRecord(
        saga_id=saga_id,
        saga_type="bench-saga-4",
        saga_version=1,
        status="completed" if finished else "running",
        current_step=None if finished else f"step-{phase + 1}",
        input={"order_id": saga_id, "amount": 1250, "currency": "EUR", "items": [1, 2, 3]},
        result={"ok": True} if finished else None,
        error=None,
        deadline_at=created_at + 3600.0,
        created_at=created_at,
        updated_at=now,
        version=version,
        idempotency_key=f"key-{saga_id}",
        correlation_id=f"corr-{saga_id}",
        steps=steps,
    )


def make_batch(
    batch: int, batch_size: int, *, run: str = "r", started: float = 1.7e9
) -> list[AppendRequest]:
    """The requests of batch number ``batch`` (0-based): ``batch_size`` sagas, one append each.
    A saga's times are ``started`` + the batch it started in (+ its steps' indexes), so the
    rows its steps had before the append are sent again unchanged, as the engine sends them."""
    now = time.time()
    requests = []
    for slot in range(batch_size):
        generation, phase = divmod(batch + slot % APPENDS_PER_SAGA, APPENDS_PER_SAGA)
        # The first saga of a slot starts at batch 0, part-way through its life.
        done = phase if generation else batch
        saga_id = f"{run}-{slot}-{generation}"
        at = {"at": now}
        if done == 0:
            events = (
                NewEvent(event_type="SagaStarted", data={"saga_id": saga_id, **at}),
                NewEvent(event_type="StepStarted", data={"step": 0, "attempt": 1, **at}),
            )
        else:
            events = (
                NewEvent(
                    event_type="StepCompleted",
                    data={"step": phase - 1, "result": {"ok": True, "step": phase - 1}, **at},
                ),
                NewEvent(
                    event_type="SagaCompleted" if phase == APPENDS_PER_SAGA - 1 else "StepStarted",
                    data={"step": phase, "attempt": 1, **at},
                ),
            )
        outbox = (
            OutboxMessage(
                topic="saga.lifecycle",
                event=NewEvent(
                    event_type="saga.started" if done == 0 else "saga.step.completed",
                    data={"saga_id": saga_id, "saga_type": "bench-saga-4", "step": phase},
                    metadata={"correlation_id": f"corr-{saga_id}"},
                ),
            ),
        )
        requests.append(
            AppendRequest(
                stream_id=f"saga-{saga_id}",
                expected_version=2 * done,
                events=events,
                saga=_saga(saga_id, phase, 2 * (done + 1), started + batch - done, now),
                outbox=outbox,
            )
        )
    return requests


async def run_store_batches(
    backend: StoreBackend,
    *,
    batches: int = 2000,
    batch_size: int = 64,
    warmup: int = 50,
    store: str = "?",
) -> StoreBatchesResult:
    """Commit ``warmup`` + ``batches`` batches through ``backend.commit`` (opened, empty) and
    measure the last ``batches``. Raises ``RuntimeError`` if a request does not commit."""
    times: list[float] = []
    cpu = 0.0
    run = f"r{time.monotonic_ns() % 1_000_000}"
    for number in range(warmup + batches):
        requests = make_batch(number, batch_size, run=run)
        cpu_before = time.process_time()
        started = time.perf_counter()
        results = await backend.commit(requests)
        elapsed = time.perf_counter() - started
        cpu_used = time.process_time() - cpu_before
        failed = [r for r in results if not isinstance(r, AppendResult)]
        if failed:
            raise RuntimeError(f"batch {number}: {len(failed)} appends failed, e.g. {failed[0]!r}")
        if number >= warmup:
            times.append(elapsed)
            cpu += cpu_used
    total = sum(times)
    ordered = sorted(times)
    return StoreBatchesResult(
        store=store,
        batches=batches,
        batch_size=batch_size,
        batches_per_s=batches / total if total else 0.0,
        appends_per_s=batches * batch_size / total if total else 0.0,
        mean_ms=1000 * total / max(batches, 1),
        p50_ms=1000 * percentile(ordered, 50),
        p99_ms=1000 * percentile(ordered, 99),
        cpu_ms_per_batch=1000 * cpu / max(batches, 1),
        cpu_us_per_append=1e6 * cpu / max(batches * batch_size, 1),
        warmup=warmup,
    )


async def bench_store_batches(
    database_url: str | None,
    *,
    batches: int = 2000,
    batch_size: int = 64,
    warmup: int = 50,
    keep: bool = False,
) -> StoreBatchesResult:
    """:func:`run_store_batches` on a fresh store made as the other workloads make theirs
    (``memory``, SQLite, or a new PostgreSQL database dropped afterwards). Needs a trio-asyncio
    loop for PostgreSQL (``trio_asyncio.open_loop()``)."""
    from saga_orchestrator.config import Settings

    from .stores import fresh_backend, resolve_target

    target = resolve_target(database_url, Settings())
    async with fresh_backend(target, keep=keep) as backend:
        return await run_store_batches(
            backend, batches=batches, batch_size=batch_size, warmup=warmup, store=target.kind
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m saga_orchestrator.bench.store_batches")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("-n", "--batches", type=int, default=2000)
    parser.add_argument("-b", "--batch-size", type=int, action="append")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    async def run() -> None:
        async with trio_asyncio.open_loop():
            for size in args.batch_size or [64]:
                result = await bench_store_batches(
                    args.database_url, batches=args.batches, batch_size=size, warmup=args.warmup
                )
                print(json.dumps(result.to_json()) if args.json else result.line(), flush=True)

    trio.run(run)


if __name__ == "__main__":
    main()
