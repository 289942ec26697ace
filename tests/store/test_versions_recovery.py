"""Versions side by side on the durable stores, in virtual time: a saga keeps the definition
version it started with across restarts; one whose version no running process has loaded waits
for it (reported, not claimed) and resumes once a process that has it runs."""

from __future__ import annotations

import attrs
import pytest
import trio
from trio.testing import MockClock

from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.messages import CancelSaga, GetStatus
from saga_orchestrator.errors import SagaDefinitionMissing
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.records import SagaRecord

from ..coordinator.harness import FAST, TERMINAL, Harness, Input, Recorder, running, step
from .conftest import DURABLE_KINDS

pytestmark = pytest.mark.parametrize("backend_kind", DURABLE_KINDS, indirect=True)

OPTIONS = attrs.evolve(FAST, heartbeat_interval=10.0, instance_ttl=3600.0, scan_interval=1.0)
"""Leases that outlast any wait for the store (in virtual time: see ``store_clock``); the
instances here deregister when they stop, none expires."""


@pytest.fixture
def store_clock() -> MockClock:
    """Virtual time that jumps once every task has waited 20 ms of real time: SQLite's thread or
    PostgreSQL's asyncio loop answers meanwhile (a clock that jumps at once would let a lease
    end while a renewal waits for the store)."""
    return MockClock(autojump_threshold=0.02)


def versions(rec: Recorder) -> tuple[SagaDefinition, SagaDefinition]:
    """``order`` version 1 (``a``, a long ``wait``, ``v1-only``) and 2 (``a``, ``v2-only``)."""
    v1 = SagaDefinition(
        name="order",
        version=1,
        input_type=Input,
        steps=[step(rec, "a"), step(rec, "wait", sleep=5), step(rec, "v1-only")],
    )
    v2 = SagaDefinition(
        name="order", version=2, input_type=Input, steps=[step(rec, "a"), step(rec, "v2-only")]
    )
    return v1, v2


async def ended(h: Harness, saga_id: str) -> SagaRecord:
    """The saga once it has ended or parked, looked at every virtual second (each look costs
    real time here: see ``store_clock``)."""
    with trio.fail_after(600):
        while (record := await h.store.get_saga(saga_id)) is None or record.status not in TERMINAL:
            await trio.sleep(1)
    return record


async def in_flight_on_v1(backend: StoreBackend, v1: SagaDefinition) -> str:
    """A saga started on version 1, left in its ``wait`` step by a process that stopped."""
    async with running([v1], options=OPTIONS, backend=backend) as h:  # type: ignore[arg-type]
        saga_id = (await h.start("order")).saga.saga_id
        await trio.sleep(1)
    return saga_id


async def test_a_recovered_saga_runs_its_own_version_and_a_new_one_the_newest(
    backend: StoreBackend, store_clock: MockClock
) -> None:
    rec = Recorder()
    v1, v2 = versions(rec)
    saga_id = await in_flight_on_v1(backend, v1)
    async with running([v1, v2], options=OPTIONS, backend=backend) as h:  # type: ignore[arg-type]
        old = await ended(h, saga_id)
        new = await ended(h, (await h.start("order")).saga.saga_id)
    assert ("completed", 1) == (old.status, old.saga_version)
    assert ("completed", 2) == (new.status, new.saga_version)
    assert ["a", "wait", "wait", "v1-only", "a", "v2-only"] == rec.names("action")


async def test_a_saga_whose_version_is_not_loaded_waits_for_a_process_that_has_it(
    backend: StoreBackend, store_clock: MockClock
) -> None:
    rec = Recorder()
    v1, v2 = versions(rec)
    saga_id = await in_flight_on_v1(backend, v1)
    async with running([v2], options=OPTIONS, backend=backend) as only_v2:  # type: ignore[arg-type]
        await trio.sleep(3 * OPTIONS.scan_interval)  # recovery and a few failover looks
        assert (None, False) == (await backend.saga_owner(saga_id))[::2]  # not claimed
        assert {("order", 1): 1} == only_v2.coordinator.ownership.waiting  # type: ignore[union-attr]
        status = await only_v2.ref.ask(GetStatus())
        assert (("order", 1, 1),) == status.waiting_for_definition
        with pytest.raises(SagaDefinitionMissing, match="order version 1"):
            await only_v2.ref.ask(CancelSaga(saga_id=saga_id))
        assert "running" == (await backend.get_saga(saga_id)).status  # type: ignore[union-attr]

        async with running([v1], options=OPTIONS, backend=backend) as with_v1:  # type: ignore[arg-type]
            final = await ended(with_v1, saga_id)
            await trio.sleep(2 * OPTIONS.scan_interval)
        assert "completed" == final.status
        assert {} == only_v2.coordinator.ownership.waiting  # type: ignore[union-attr]
    assert ["a", "wait", "wait", "v1-only"] == rec.names("action")
