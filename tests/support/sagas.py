"""Saga types for tests: steps that do no I/O, and one that waits (to be cancelled).

Loaded by the e2e tests through ``SAGA_MODULES=tests.support.sagas``.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from saga_orchestrator.coordinator.definition import SagaDefinition, Step, StepContext


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
