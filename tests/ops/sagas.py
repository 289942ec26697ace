"""Saga types for the command-line tests: one whose second step is refused, so it
compensates, and ``test_in_doubt`` (parks when cancelled during its charge).

Loaded with ``SAGA_MODULES=tests.support.sagas,tests.ops.sagas``.
"""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.coordinator.definition import (
    NonRetryableError,
    SagaDefinition,
    Step,
    StepContext,
)
from tests.support.sagas import IN_DOUBT


@attrs.frozen
class RefusedInput:
    name: str


async def _book(ctx: StepContext) -> dict[str, Any]:
    return {"booked": ctx.input.name}


async def _unbook(ctx: StepContext) -> None:
    return None


async def _refuse(ctx: StepContext) -> None:
    raise NonRetryableError(f"{ctx.input.name} is refused")


REFUSED = SagaDefinition(
    name="ops_refused",
    version=1,
    input_type=RefusedInput,
    description="Books, then is refused: ends compensated.",
    steps=[
        Step(name="book", action=_book, compensation=_unbook),
        Step(name="refuse", action=_refuse),
    ],
)

SAGAS = [REFUSED, IN_DOUBT]
