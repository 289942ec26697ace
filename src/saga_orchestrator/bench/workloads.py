"""The benchmark workloads: what each one runs, and the saga types they use.

Each workload drives sagas of one type through the real engine. In most the steps do no I/O,
so what is measured is the orchestrator itself: the coordinator, the saga actors, the store
actor and the backend's transactions (and, for ``http``, the HTTP server in front of them).
The real path's workloads add what users run: ``http-steps`` (each step one HTTP call),
``onboarding`` and ``events`` (``user_onboarding`` through the server's API and its event path).

``SAGAS`` lists the benchmark's saga types for ``SAGA_MODULES=saga_orchestrator.bench.workloads``
(the ``http`` workload's server process loads them that way).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs
import trio

from saga_orchestrator.coordinator.catalog.user_onboarding import USER_ONBOARDING
from saga_orchestrator.coordinator.definition import (
    AwaitReply,
    NonRetryableError,
    Parallel,
    SagaDefinition,
    Step,
    StepContext,
)

__all__ = [
    "ALL_WORKLOADS",
    "DEFAULT_WORKLOADS",
    "PROBE",
    "REPLY_EVENT",
    "SAGAS",
    "SAGA_4",
    "SAGA_4_FAIL",
    "SAGA_FANOUT_4",
    "SAGA_HTTP_STEPS",
    "SAGA_RECOVERY",
    "SAGA_WAIT",
    "WORKLOADS",
    "BenchInput",
    "RecoveryProbe",
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

SAGA_FANOUT_4 = SagaDefinition(
    name="bench.fanout-4",
    version=1,
    input_type=BenchInput,
    steps=[
        Parallel(
            "fanout",
            branches=[
                [Step(name=f"step-{i}", action=_noop, compensation=_noop)] for i in range(1, 5)
            ],
        )
    ],
    description="benchmark: one parallel group of four branches, each one step without I/O",
)

REPLY_EVENT = "bench.replied"
"""The event type that completes the ``bench.wait`` saga's step."""
WAIT_STEP_TIMEOUT = 24 * 3600.0
"""Seconds the ``bench.wait`` step waits for its reply (the saga deadline,
``SAGA_TIMEOUT_SECONDS``, still applies)."""

SAGA_WAIT = SagaDefinition(
    name="bench.wait",
    version=1,
    input_type=BenchInput,
    steps=[
        Step(
            name="request",
            action=_noop,
            compensation=_noop,
            reply=AwaitReply(success=[REPLY_EVENT]),
            timeout=WAIT_STEP_TIMEOUT,
        )
    ],
    description="benchmark: one reply-driven step (sends nothing, waits for bench.replied)",
)

PROBE = "bench.recovery-probe"
"""The key of the :class:`RecoveryProbe` in the coordinator's ``resources``."""


class RecoveryProbe:
    """Step 2 of ``bench.recovery`` reports to it. ``hold``: the step then never returns (the
    first process, which is abandoned there); else it notes when each saga re-runs it."""

    def __init__(self, *, hold: bool, on_call: Callable[[], None] | None = None) -> None:
        self.hold = hold
        self.calls = 0
        self.last_call_at = 0.0
        self._on_call = on_call

    async def step_2(self) -> None:
        self.calls += 1
        self.last_call_at = time.perf_counter()
        if self._on_call is not None:
            self._on_call()
        if self.hold:
            await trio.sleep_forever()


async def _recovery_step_2(ctx: StepContext) -> None:
    probe = ctx.resources.get(PROBE)
    if isinstance(probe, RecoveryProbe):
        await probe.step_2()


SAGA_RECOVERY = SagaDefinition(
    name="bench.recovery",
    version=1,
    input_type=BenchInput,
    steps=[
        Step(name="step-1", action=_noop, compensation=_noop),
        Step(name="step-2", action=_recovery_step_2, compensation=_noop),
        Step(name="step-3", action=_noop, compensation=_noop),
        Step(name="step-4", action=_noop, compensation=_noop),
    ],
    description="benchmark: saga-4 whose step 2 a RecoveryProbe can hold (recovery workload)",
)


async def _http_step(ctx: StepContext) -> None:
    from saga_orchestrator.coordinator.downstream import Call, downstream_of

    await downstream_of(ctx).auth.get_user(f"bench-{ctx.input.index}", Call.of(ctx))


SAGA_HTTP_STEPS = SagaDefinition(
    name="bench.http-steps",
    version=1,
    input_type=BenchInput,
    steps=[Step(name=f"step-{i}", action=_http_step, compensation=_noop) for i in range(1, 5)],
    description="benchmark: saga-4 whose steps each make one HTTP call (auth GET /users/{id})",
)


def bench_sagas() -> list[SagaDefinition]:
    """The saga types the benchmark registers in its own catalog."""
    return [SAGA_4, SAGA_4_FAIL, SAGA_FANOUT_4, SAGA_WAIT, SAGA_RECOVERY, SAGA_HTTP_STEPS]


SAGAS = bench_sagas()
"""For ``SAGA_MODULES=saga_orchestrator.bench.workloads``."""


@attrs.frozen(kw_only=True)
class Workload:
    """A workload that the bench command can run."""

    name: str
    kind: str
    """Which runner runs it: ``drive`` (the harness), ``http-steps`` (the harness, with a
    stub service), ``wait``, ``recovery``, ``http`` or ``api`` (``onboarding``, ``events``)."""
    saga_type: str
    expected_status: str
    """The terminal status each saga must reach; any other counts as an error."""
    default_n: int
    fixed_concurrency: int | None = None
    """Sagas in flight regardless of ``-c`` (1 for ``latency``)."""
    description: str


_TABLE: tuple[tuple[str, str, SagaDefinition, str, int, int | None, str], ...] = (
    # name, kind, saga type, status each saga must end in, default N, fixed in-flight, description
    (
        "saga-4",
        "drive",
        SAGA_4,
        "completed",
        5000,
        None,
        "4 sequential no-I/O steps with compensations",
    ),
    (
        "saga-4-fail",
        "drive",
        SAGA_4_FAIL,
        "compensated",
        5000,
        None,
        "step 4 fails, 3, 2, 1 compensated",
    ),
    ("latency", "drive", SAGA_4, "completed", 500, 1, "one saga-4 at a time: latency at idle"),
    (
        "fanout-4",
        "drive",
        SAGA_FANOUT_4,
        "completed",
        5000,
        None,
        "4 parallel branches of one no-I/O step each, joined",
    ),
    (
        "wait",
        "wait",
        SAGA_WAIT,
        "completed",
        100_000,
        None,
        "N sagas parked on a reply-driven step (RSS per saga), then all replied to",
    ),
    (
        "recovery",
        "recovery",
        SAGA_RECOVERY,
        "completed",
        10_000,
        None,
        "N sagas left mid-step by a stopped engine, resumed by a new one",
    ),
    (
        "http",
        "http",
        SAGA_4,
        "completed",
        10_000,
        None,
        "the real server: N GET /health/live, then N POST /sagas/start",
    ),
    (
        "failover",
        "failover",
        SAGA_WAIT,
        "running",
        1000,
        None,
        "N sagas parked on one of --instances servers (3), SIGKILLed: claim and resume times",
    ),
    (
        "http-steps",
        "http-steps",
        SAGA_HTTP_STEPS,
        "completed",
        2000,
        None,
        "saga-4 whose steps each make one HTTP call to a stub service (its own process)",
    ),
    (
        "onboarding",
        "api",
        USER_ONBOARDING,
        "completed",
        1000,
        None,
        "user_onboarding started by POST /sagas/start on the real server, against devservices",
    ),
    (
        "events",
        "api",
        USER_ONBOARDING,
        "completed",
        1000,
        None,
        "user_onboarding triggered by POST /events/publish (outbox, Redis Streams, router)",
    ),
)

WORKLOADS: dict[str, Workload] = {
    name: Workload(
        name=name,
        kind=kind,
        saga_type=saga.name,
        expected_status=status,
        default_n=n,
        fixed_concurrency=fixed,
        description=description,
    )
    for name, kind, saga, status, n, fixed, description in _TABLE
}
"""Every workload, by name, in the order they run."""

DEFAULT_WORKLOADS = ("saga-4", "saga-4-fail", "latency")
"""What runs when no workload is named."""
ALL_WORKLOADS = tuple(WORKLOADS)
