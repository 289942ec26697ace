"""Store records written straight to a backend, as a process that is gone left them."""

from __future__ import annotations

from saga_orchestrator.store import AppendRequest, NewEvent
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.records import SagaRecord


async def stored(backend: StoreBackend, saga_id: str, saga_type: str, version: int) -> None:
    """A running saga on ``saga_type`` ``version``, left by a process that is gone."""
    record = SagaRecord(
        saga_id=saga_id,
        saga_type=saga_type,
        saga_version=version,
        status="running",
        current_step=None,
        input={"name": "ada"},
        result=None,
        error=None,
        deadline_at=1e10,
        created_at=1.0,
        updated_at=1.0,
        version=1,
    )
    started = NewEvent(event_type="SagaStarted", data={})
    (result,) = await backend.commit(
        [AppendRequest(stream_id=f"saga-{saga_id}", expected_version=0, events=(started,),
                       saga=record)]
    )  # fmt: skip
    assert not isinstance(result, Exception)
