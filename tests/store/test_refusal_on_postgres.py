"""A value PostgreSQL refuses for good, met by a real saga: the saga parks at once as failed,
with the reason, instead of waiting for a store that will never take the append."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.coordinator import start_coordinator
from saga_orchestrator.coordinator.definition import Step, StepContext
from saga_orchestrator.coordinator.messages import StartSaga
from saga_orchestrator.store.actor import start_store
from saga_orchestrator.store.postgres import PostgresBackend

from ..coordinator.harness import FAST, Recorder, saga, step

pytestmark = pytest.mark.integration


async def test_a_step_result_postgresql_refuses_parks_the_saga_as_failed(
    pg_dsn: str, aio_loop: Any
) -> None:
    rec = Recorder()

    async def nul(ctx: StepContext) -> dict[str, str]:
        rec.calls.append(("action", "nul", ctx.attempt))
        return {"text": "a\x00b"}  # JSON can hold it; PostgreSQL's jsonb cannot

    definition = saga("refused", [step(rec, "first"), Step(name="nul", action=nul)])
    backend = PostgresBackend(pg_dsn, pool_size=2, command_timeout=5.0)
    await backend.open()
    try:
        async with open_actor_system(shutdown_grace=0.5) as system:
            store = await start_store(system, backend)
            ref, coordinator = await start_coordinator(
                system, SagaCatalog([definition]), store, options=FAST
            )
            await coordinator.ready.wait()
            started = await ref.ask(StartSaga(saga_type="refused", data={"user_id": "u"}))
            with trio.fail_after(10):
                while (record := await store.get_saga(started.saga.saga_id)).status != "failed":
                    await trio.sleep(0.05)
    finally:
        await backend.close()
    assert "the store refused" in (record.error or "")
    assert ["first", "nul"] == rec.names("action")  # no restart ran it again
