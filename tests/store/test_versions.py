"""The store contract for versions side by side, over every backend: a claimer takes only the
sagas whose (type, version) it has loaded; the sagas no live instance drives are counted by
version (those of a version no process has loaded wait for their definition); active sagas
are counted by version, and the list filters by version."""

from __future__ import annotations

from saga_orchestrator.store import SagaQuery
from saga_orchestrator.store.backend import StoreBackend

from .test_contract import T0, create_sagas, saga_record
from .test_leases import DEAD, LIVE, started

V1 = ("order", 1)
V2 = ("order", 2)


async def test_a_claim_takes_only_the_sagas_of_loaded_versions(backend: StoreBackend) -> None:
    await backend.register_instance("dead", {}, DEAD)
    await started(backend, "on-v1", "dead", saga_version=1, created_at=T0 + 1)
    await started(backend, "on-v2", "dead", saga_version=2, created_at=T0 + 2)
    await started(backend, "refund", "dead", saga_type="refund", created_at=T0 + 3)
    await backend.register_instance("b", {}, LIVE)

    assert {V1: 1, V2: 1, ("refund", 2): 1} == await backend.orphans_by_definition()
    claimed = await backend.claim_orphans("b", 10, loaded={V2})
    assert [("on-v2", "order", 2)] == [(c.saga_id, c.saga_type, c.saga_version) for c in claimed]
    assert (None, 0, False) != await backend.saga_owner("on-v2")
    assert "dead" == (await backend.saga_owner("on-v1"))[0]  # left where it was

    assert [] == await backend.claim_orphans("b", 10, loaded=set())
    claimed = await backend.claim_orphans("b", 10, loaded={V1, V2, ("refund", 2)})
    assert ["on-v1", "refund"] == [c.saga_id for c in claimed]
    assert {} == await backend.orphans_by_definition()


async def test_a_restarted_instance_takes_back_only_its_sagas_of_loaded_versions(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    await started(backend, "mine-v1", "a", saga_version=1)
    await started(backend, "mine-v2", "a", saga_version=2, created_at=T0 + 1)
    (mine,) = await backend.claim_orphans("a", 10, mine=True, loaded={V1})
    assert ("mine-v1", 1) == (mine.saga_id, mine.saga_version)


async def test_the_sagas_no_live_instance_drives_are_counted_by_version(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("live", {}, LIVE)
    await backend.register_instance("dead", {}, DEAD)
    await started(backend, "v1-dead", "dead", saga_version=1)
    await started(backend, "v1-dead-2", "dead", saga_version=1, created_at=T0 + 1)
    await started(backend, "v3-ghost", "ghost", saga_version=3)  # an owner with no row
    await started(backend, "v3-live", "live", saga_version=3)  # driven: it does not wait
    await started(backend, "v1-ended", "dead", saga_version=1, status="completed")
    await started(backend, "v1-parked", "dead", saga_version=1, status="failed")
    await started(backend, "v2-dead", "dead", saga_version=2)

    # not ended, not parked, not driven by a live instance
    assert {V1: 2, V2: 1, ("order", 3): 1} == await backend.orphans_by_definition()

    await backend.claim_orphans("live", 10, loaded={V1})  # a process that has v1 came
    assert {V2: 1, ("order", 3): 1} == await backend.orphans_by_definition()


async def test_active_sagas_are_counted_by_type_and_version(backend: StoreBackend) -> None:
    assert {} == await backend.active_counts()
    await create_sagas(
        backend,
        saga_record("a", saga_version=1, status="running"),
        saga_record("b", saga_version=1, status="compensating"),
        saga_record("c", saga_version=1, status="pending"),
        saga_record("d", saga_version=2, status="running"),
        saga_record("e", saga_version=2, status="completed"),
        saga_record("f", saga_version=2, status="failed"),
        saga_record("g", saga_version=1, status="running", saga_type="refund"),
    )
    assert {V1: 3, V2: 1, ("refund", 1): 1} == await backend.active_counts()


async def test_the_list_filters_by_version(backend: StoreBackend) -> None:
    await create_sagas(
        backend,
        saga_record("s-1", created_at=T0 + 1, saga_version=1),
        saga_record("s-2", created_at=T0 + 2, saga_version=2),
        saga_record("s-3", created_at=T0 + 3, saga_version=1, status="completed"),
        saga_record("s-4", created_at=T0 + 4, saga_version=1, saga_type="refund"),
    )

    async def ids(**filters: object) -> list[str]:
        page = await backend.list_sagas(SagaQuery(**filters))  # type: ignore[arg-type]
        return [item.saga_id for item in page.items]

    assert ["s-4", "s-3", "s-1"] == await ids(saga_version=1)
    assert ["s-3", "s-1"] == await ids(saga_type="order", saga_version=1)
    assert ["s-1"] == await ids(saga_type="order", saga_version=1, statuses=["running"])
    assert ["s-2"] == await ids(saga_version=2)
    assert [] == await ids(saga_version=3)
