"""Saga types whose steps call the recording service named by ``RECORDER_URL``.

Loaded into a real server process with ``SAGA_MODULES=tests.support.recording_sagas``.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
import httpx

from saga_orchestrator.coordinator.definition import (
    NonRetryableError,
    SagaDefinition,
    Step,
    StepContext,
)


@attrs.frozen
class RecordedInput:
    name: str
    fail_at: str = ""
    """Name of the step that the service refuses (the saga then compensates)."""


async def _call(ctx: StepContext, op: str) -> dict[str, Any]:
    body = {"saga_id": ctx.saga_id, "step": ctx.step, "fail": ctx.input.fail_at == ctx.step}
    headers = {"Idempotency-Key": ctx.idempotency_key}
    async with httpx.AsyncClient(base_url=os.environ["RECORDER_URL"], timeout=10) as client:
        response = await client.post(f"/effects/{op}", json=body, headers=headers)
    if response.status_code == 422:
        raise NonRetryableError(f"{ctx.step} refused by the service")
    response.raise_for_status()
    return response.json()


async def do(ctx: StepContext) -> dict[str, Any]:
    return await _call(ctx, "do")


async def undo(ctx: StepContext) -> None:
    await _call(ctx, "undo")


SAGAS = [
    SagaDefinition(
        name="recorded_three",
        version=1,
        input_type=RecordedInput,
        steps=[
            Step(name="one", action=do, compensation=undo),
            Step(name="two", action=do, compensation=undo),
            Step(name="three", action=do, compensation=undo),
        ],
        description="Three steps against the recording service (tests only).",
    )
]
