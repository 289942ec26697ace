"""Saga types for tests: steps that do no I/O, and one that waits (to be cancelled).

Loaded by the e2e tests through ``SAGA_MODULES=tests.support.sagas``.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from saga_orchestrator.coordinator.definition import (
    NonRetryableError,
    SagaDefinition,
    Step,
    StepContext,
)


@attrs.frozen
class TwoStepsInput:
    name: str
    count: int = 1


async def _reserve(ctx: StepContext) -> dict[str, Any]:
    return {"reserved": ctx.input.count, "for": ctx.input.name}


async def _release(ctx: StepContext) -> None:
    return None


async def _confirm(ctx: StepContext) -> dict[str, Any]:
    return {"confirmed": ctx.results["reserve"]["reserved"]}


TWO_STEPS = SagaDefinition(
    name="test_two_steps",
    version=1,
    input_type=TwoStepsInput,
    description="Two steps without I/O: reserve, then confirm.",
    steps=[
        Step(name="reserve", action=_reserve, compensation=_release),
        Step(name="confirm", action=_confirm),
    ],
)


@attrs.frozen
class SlowInput:
    seconds: float = 30.0


async def _prepare(ctx: StepContext) -> dict[str, Any]:
    return {"prepared": True}


async def _undo_prepare(ctx: StepContext) -> None:
    return None


async def _wait(ctx: StepContext) -> dict[str, Any]:
    await trio.sleep(ctx.input.seconds)
    return {"waited": ctx.input.seconds}


SLOW = SagaDefinition(
    name="test_slow",
    version=1,
    input_type=SlowInput,
    description="Prepares, then waits `seconds` in its second step (cancel it meanwhile).",
    steps=[
        Step(name="prepare", action=_prepare, compensation=_undo_prepare),
        Step(name="wait", action=_wait, timeout=3600.0),
    ],
)

SAGAS = [TWO_STEPS, SLOW]


@attrs.frozen
class ParkInput:
    name: str = "parked"


_undo_failed_once: set[str] = set()


async def _hold(ctx: StepContext) -> dict[str, Any]:
    return {"held": ctx.input.name}


async def _release_after_a_failure(ctx: StepContext) -> None:
    if ctx.saga_id not in _undo_failed_once:
        _undo_failed_once.add(ctx.saga_id)
        raise RuntimeError("the release fails the first time")


async def _refuse(ctx: StepContext) -> None:
    raise NonRetryableError("refused")


PARKS = SagaDefinition(
    name="test_parks",
    version=1,
    input_type=ParkInput,
    description="Fails its second step; the first one's compensation fails once, so with one "
    "compensation attempt the saga parks as compensation_failed until it is retried.",
    steps=[
        Step(name="hold", action=_hold, compensation=_release_after_a_failure),
        Step(name="refuse", action=_refuse),
    ],
)
"""Not in :data:`SAGAS`: for servers run with ``COMPENSATION_RETRY_ATTEMPTS=1``."""


@attrs.frozen
class InDoubtInput:
    seconds: float = 30.0


async def _charge(ctx: StepContext) -> dict[str, Any]:
    await trio.sleep(ctx.input.seconds)
    return {"charged": True}


async def _refund(ctx: StepContext) -> None:
    return None


async def _confirm_charge(ctx: StepContext) -> dict[str, Any]:
    return {"confirmed": True}


IN_DOUBT = SagaDefinition(
    name="test_in_doubt",
    version=1,
    input_type=InDoubtInput,
    description="Prepares, then charges for `seconds`; its refund is not declared safe when "
    "the charge is in doubt, so a cancel during the charge parks the saga on it.",
    steps=[
        Step(name="prepare", action=_prepare, compensation=_undo_prepare),
        Step(name="charge", action=_charge, compensation=_refund, timeout=3600.0),
        Step(name="confirm", action=_confirm_charge),
    ],
)
"""Not in :data:`SAGAS`: for the operator actions' tests."""
