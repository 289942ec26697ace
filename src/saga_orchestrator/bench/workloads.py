"""The benchmark workloads: what each one runs, and the saga types they use.

Each workload drives sagas of one type through the real engine. The steps do no I/O, so what
is measured is the orchestrator itself: the coordinator, the saga actors, the store actor and
the backend's transactions.
"""

from __future__ import annotations

import attrs

from saga_orchestrator.coordinator.definition import (
    NonRetryableError,
    SagaDefinition,
    Step,
    StepContext,
)

__all__ = [
    "ALL_WORKLOADS",
    "IMPLEMENTED",
    "NOT_IMPLEMENTED",
    "SAGA_4",
    "SAGA_4_FAIL",
    "WORKLOADS",
    "BenchInput",
    "Workload",
    "bench_sagas",
]


@attrs.frozen
class BenchInput:
    """The input of the benchmark sagas: the saga's number in its run."""

    index: int = 0


async def _noop(ctx: StepContext) -> None:
    return None


async def _fail(ctx: StepContext) -> None:
    raise NonRetryableError("step 4 fails on purpose (saga-4-fail)")


def _saga_4(name: str, *, fail_last: bool) -> SagaDefinition:
    steps = [Step(name=f"step-{i}", action=_noop, compensation=_noop) for i in range(1, 4)]
    steps.append(Step(name="step-4", action=_fail if fail_last else _noop, compensation=_noop))
    return SagaDefinition(
        name=name,
        version=1,
        input_type=BenchInput,
        steps=steps,
        description="benchmark: four steps without I/O, each with a compensation",
    )


SAGA_4 = _saga_4("bench.saga-4", fail_last=False)
SAGA_4_FAIL = _saga_4("bench.saga-4-fail", fail_last=True)


def bench_sagas() -> list[SagaDefinition]:
    """The saga types the benchmark registers in its own catalog."""
    return [SAGA_4, SAGA_4_FAIL]


@attrs.frozen(kw_only=True)
class Workload:
    """A workload that the harness can run."""

    name: str
    saga_type: str
    expected_status: str
    """The terminal status each saga must reach; any other counts as an error."""
    default_n: int
    fixed_concurrency: int | None = None
    """Sagas in flight regardless of ``-c`` (1 for ``latency``)."""
    description: str


_TABLE: tuple[tuple[str, SagaDefinition, str, int, int | None, str], ...] = (
    # name, saga type, status each saga must end in, default N, fixed in-flight, description
    ("saga-4", SAGA_4, "completed", 5000, None, "4 sequential no-I/O steps with compensations"),
    ("saga-4-fail", SAGA_4_FAIL, "compensated", 5000, None, "step 4 fails, 3, 2, 1 compensated"),
    ("latency", SAGA_4, "completed", 500, 1, "one saga-4 at a time: latency at idle"),
)

WORKLOADS: dict[str, Workload] = {
    name: Workload(
        name=name,
        saga_type=saga.name,
        expected_status=status,
        default_n=n,
        fixed_concurrency=fixed,
        description=description,
    )
    for name, saga, status, n, fixed, description in _TABLE
}
"""The workloads that run today, by name, in their default order."""

NOT_IMPLEMENTED: dict[str, str] = {
    "wait": "K sagas parked on a reply-driven step, RSS per waiting saga: next round",
    "recovery": "K in-flight sagas left by a killed process, time to resume: next round",
    "http": "POST /sagas/start through the real server under a load generator: next round",
}
"""Workloads of issue 7 that need features not built yet, with what they need."""

IMPLEMENTED = tuple(WORKLOADS)
ALL_WORKLOADS = (*IMPLEMENTED, *NOT_IMPLEMENTED)
