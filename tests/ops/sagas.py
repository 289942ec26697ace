"""Saga types for the command-line tests: one whose second step is refused, so it
compensates, one whose second step has a bug (``KeyError``, not retried), so it
compensates too, and ``test_in_doubt`` (parks when cancelled during its charge).

Loaded with ``SAGA_MODULES=tests.support.sagas,tests.ops.sagas``.
"""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.coordinator.definition import (
    NonRetryableError,
    RetryPolicy,
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


async def _lookup(ctx: StepContext) -> dict[str, Any]:
    return {"found": {}[ctx.input.name]}  # a bug: KeyError


BUGGY = SagaDefinition(
    name="ops_buggy",
    version=1,
    input_type=RefusedInput,
    description="Books, then its lookup has a bug: ends compensated.",
    steps=[
        Step(name="book", action=_book, compensation=_unbook),
        Step(name="lookup", action=_lookup, retry=RetryPolicy(max_attempts=1)),
    ],
)

SAGAS = [REFUSED, BUGGY, IN_DOUBT]
