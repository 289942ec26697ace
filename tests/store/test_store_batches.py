"""The store-only benchmark's workload (``bench/store_batches.py``) is valid on every backend:
each append it makes commits, and its sagas end up as the engine would leave them."""

from __future__ import annotations

from saga_orchestrator.bench.store_batches import STEPS, run_store_batches
from saga_orchestrator.store.backend import StoreBackend


async def test_the_store_batches_workload_commits_everything(backend: StoreBackend) -> None:
    size = 7
    result = await run_store_batches(backend, batches=8, batch_size=size, warmup=2)
    assert result.batches == 8 and result.batch_size == size
    assert result.appends_per_s > 0 and result.cpu_ms_per_batch >= 0
    events = await backend.read_all(limit=10_000)
    assert len(events) == 2 * size * 10  # two events per append, every append committed
    completed = 0
    for stream_id in {e.stream_id for e in events}:
        saga = await backend.get_saga(stream_id.removeprefix("saga-"))
        assert saga is not None
        assert saga.version == len(await backend.read_stream(stream_id))
        assert [s.index for s in saga.steps] == list(range(STEPS))
        completed += saga.status == "completed"
    assert completed > 0
