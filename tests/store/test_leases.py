"""The store contract for instances and saga ownership, over every backend: registration and
heartbeats, claims that never take a live instance's saga, and fenced appends."""

from __future__ import annotations

import attrs
import pytest
import trio

from saga_orchestrator.errors import LeaseLost
from saga_orchestrator.store import AppendRequest, AppendResult, SagaRecord
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.records import Lease, SagaCommand

from .conftest import POSTGRESQL, StoreTarget
from .test_contract import T0, commit_ok, event, saga_record

DEAD = -1.0
"""A ttl that makes an instance's leases end at once (no waiting in the tests)."""
LIVE = 60.0


def leased(saga: SagaRecord, lease: Lease, expected: int = 0, **changes: object) -> AppendRequest:
    return AppendRequest(
        stream_id=f"saga-{saga.saga_id}",
        expected_version=expected,
        events=(event("Moved"),),
        saga=attrs.evolve(saga, **changes),
        lease=lease,
    )


async def started(backend: StoreBackend, saga_id: str, owner: str, **changes: object) -> SagaRecord:
    saga = saga_record(saga_id, **changes)
    await commit_ok(backend, leased(saga, Lease(owner, 1)))
    return saga


async def test_an_instance_is_live_until_its_leases_end(backend: StoreBackend) -> None:
    await backend.register_instance("a", {"host": "h1", "pid": 1}, LIVE)
    await backend.register_instance("b", {}, DEAD)
    live = await backend.live_instances()
    assert ["a"] == [i.instance_id for i in live]
    assert {"host": "h1", "pid": 1} == live[0].info
    assert live[0].expires_at > live[0].heartbeat_at
    assert not await backend.renew_instance("nobody", LIVE)


async def test_an_instance_whose_leases_ended_cannot_renew_them(backend: StoreBackend) -> None:
    """Its sagas may have been claimed meanwhile: a renewal that went through would let it go
    on driving them (running their steps) without noticing."""
    await backend.register_instance("late", {}, DEAD)
    assert not await backend.renew_instance("late", LIVE)
    assert [] == await backend.live_instances()
    await backend.register_instance("late", {}, LIVE)  # registering again is how it comes back
    assert await backend.renew_instance("late", LIVE)


async def test_sagas_of_an_instance_whose_row_is_gone_are_claimed(backend: StoreBackend) -> None:
    """A new saga committed by an instance after the dead were forgotten (its batch was in
    flight when its leases ended) has an owner with no row: it is an orphan like any other."""
    await backend.register_instance("ghost", {}, LIVE)
    await started(backend, "s1", "ghost")
    await backend.deregister_instance("ghost")
    await started(backend, "s2", "ghost")  # committed after the ghost's row went
    await backend.register_instance("b", {}, LIVE)
    claimed = await backend.claim_orphans("b", 10)
    assert {("s1", None), ("s2", "ghost")} == {(c.saga_id, c.previous_owner) for c in claimed}
    assert ("b", 2, True) == await backend.saga_owner("s2")


async def test_a_new_saga_is_owned_by_the_lease_it_was_created_with(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    await started(backend, "s1", "a")
    assert ("a", 1, True) == await backend.saga_owner("s1")
    assert (None, 0, False) == await backend.saga_owner("unknown")


async def test_claims_take_only_the_sagas_no_live_instance_owns_oldest_first(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("live", {}, LIVE)
    await backend.register_instance("dead", {}, LIVE)
    await started(backend, "of-live", "live", created_at=T0)
    await started(backend, "of-dead-2", "dead", created_at=T0 + 2)
    await started(backend, "of-dead-1", "dead", created_at=T0 + 1)
    await started(backend, "parked", "dead", created_at=T0, status="compensation_failed")
    await started(backend, "done", "dead", created_at=T0, status="completed")
    unowned = saga_record("unowned", created_at=T0 + 3)
    await commit_ok(backend, attrs.evolve(leased(unowned, Lease("x", 1)), lease=None))
    await backend.renew_instance("dead", DEAD)
    await backend.register_instance("new", {}, LIVE)
    await backend.register_instance("other", {}, LIVE)

    first = await backend.claim_orphans("new", 2)
    assert [("of-dead-1", 2, "dead"), ("of-dead-2", 2, "dead")] == [
        (c.saga_id, c.epoch, c.previous_owner) for c in first
    ]
    assert "order" == first[0].saga_type
    rest = await backend.claim_orphans("new", 10)
    assert [("unowned", 1, None)] == [(c.saga_id, c.epoch, c.previous_owner) for c in rest]
    assert [] == await backend.claim_orphans("other", 10)
    assert ("live", 1, True) == await backend.saga_owner("of-live")
    assert ("dead", 1, False) == await backend.saga_owner("parked")  # not active: not claimed


async def test_an_append_by_an_instance_that_lost_the_saga_is_fenced(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    saga = await started(backend, "s1", "a")
    await backend.renew_instance("a", DEAD)  # a partition: a's leases end
    await backend.register_instance("b", {}, LIVE)
    (claimed,) = await backend.claim_orphans("b", 10)
    assert 2 == claimed.epoch
    fenced, taken = await backend.commit(
        [leased(saga, Lease("a", 1), expected=1), leased(saga, Lease("b", 2), expected=1)]
    )
    assert isinstance(fenced, LeaseLost) and "b" == fenced.owner
    assert isinstance(taken, AppendResult) and 2 == taken.version
    assert ("b", 2, True) == await backend.saga_owner("s1")
    # a came back, but the saga stays b's: a's epoch is old whatever a's liveness
    await backend.register_instance("a", {}, LIVE)
    (again,) = await backend.commit([leased(saga, Lease("a", 1), expected=2)])
    assert isinstance(again, LeaseLost)


async def test_an_unfenced_append_is_not_checked_and_a_batch_fences_its_own_new_saga(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    saga = saga_record("new")
    created, moved, other = await backend.commit(
        [
            leased(saga, Lease("a", 1)),
            leased(saga, Lease("a", 1), expected=1),
            leased(saga, Lease("b", 1), expected=2),
        ]
    )
    assert isinstance(created, AppendResult) and isinstance(moved, AppendResult)
    assert isinstance(other, LeaseLost)
    (unfenced,) = await backend.commit([attrs.evolve(leased(saga, Lease("z", 9), 2), lease=None)])
    assert isinstance(unfenced, AppendResult)
    assert ("a", 1, True) == await backend.saga_owner("new")  # a batch never changes an owner


async def test_a_parked_saga_is_claimed_only_when_forced(backend: StoreBackend) -> None:
    await backend.register_instance("a", {}, LIVE)
    await backend.register_instance("b", {}, LIVE)
    await started(backend, "parked", "a", status="failed")
    assert await backend.claim_saga("b", "parked", force=False) is None
    assert 2 == await backend.claim_saga("b", "parked", force=True)
    assert 2 == await backend.claim_saga("b", "parked", force=False)  # b's already
    assert await backend.claim_saga("b", "unknown", force=True) is None


async def test_deregistering_releases_the_sagas_for_others_at_once(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    await backend.register_instance("b", {}, LIVE)
    for n in range(3):
        await started(backend, f"s{n}", "a")
    assert 3 == await backend.deregister_instance("a")
    assert ["b"] == [i.instance_id for i in await backend.live_instances()]
    assert not await backend.renew_instance("a", LIVE)  # gone: it must not go on
    assert 3 == len(await backend.claim_orphans("b", 10))


async def test_the_dead_that_own_nothing_are_forgotten(backend: StoreBackend) -> None:
    await backend.register_instance("a", {}, LIVE)
    await started(backend, "s1", "a")
    await backend.renew_instance("a", DEAD)
    await backend.register_instance("b", {}, LIVE)
    assert 1 == len(await backend.claim_orphans("b", 10))
    assert not await backend.renew_instance("a", LIVE)  # its row went with its last saga


@pytest.mark.parametrize("backend_kind", [POSTGRESQL], indirect=True)
async def test_concurrent_claimers_never_take_the_same_saga(store_target: StoreTarget) -> None:
    backends = [store_target.make() for _ in range(3)]
    for opened in backends:
        await opened.open()
    try:
        await backends[0].register_instance("gone", {}, LIVE)
        for n in range(120):
            await started(backends[0], f"s{n:03}", "gone")
        await backends[0].renew_instance("gone", DEAD)
        for n in range(len(backends)):
            await backends[0].register_instance(f"c{n}", {}, LIVE)
        claims: dict[str, list[str]] = {}

        async def claimer(name: str, opened: StoreBackend) -> None:
            claims[name] = []
            while batch := await opened.claim_orphans(name, 7):
                claims[name] += [c.saga_id for c in batch]

        async with trio.open_nursery() as nursery:
            for n, opened in enumerate(backends):
                nursery.start_soon(claimer, f"c{n}", opened)
        everyone = [saga_id for taken in claims.values() for saga_id in taken]
        assert 120 == len(everyone) == len(set(everyone))
    finally:
        for opened in backends:
            await opened.close()


async def test_an_instance_takes_back_its_own_sagas_only_when_it_asks(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    await started(backend, "s1", "a")
    assert [] == await backend.claim_orphans("a", 10)
    (mine,) = await backend.claim_orphans("a", 10, mine=True)
    assert ("s1", 2, "a") == (mine.saga_id, mine.epoch, mine.previous_owner)


# -- commands for a saga owned by another instance ----------------------------------------------


async def test_a_command_waits_for_the_sagas_owner_until_it_is_applied(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    await backend.register_instance("b", {}, LIVE)
    await started(backend, "s1", "a")
    command = SagaCommand(saga_id="s1", kind="cancel", payload={"reason": "stop"})
    await backend.send_command(command, "a")
    assert [] == await backend.pending_commands("b", 10)  # not b's saga
    (pending,) = await backend.pending_commands("a", 10)
    assert (command.command_id, "cancel", {"reason": "stop"}) == (
        pending.command_id,
        pending.kind,
        pending.payload,
    )
    assert await backend.command_outcome(command.command_id) is None
    await backend.finish_command(command.command_id, {"ok": True, "value": "compensating"})
    assert {"ok": True, "value": "compensating"} == await backend.command_outcome(
        command.command_id
    )
    assert [] == await backend.pending_commands("a", 10)


async def test_a_pending_command_follows_its_saga_to_the_next_owner(
    backend: StoreBackend,
) -> None:
    await backend.register_instance("a", {}, LIVE)
    await started(backend, "s1", "a")
    await backend.send_command(SagaCommand(saga_id="s1", kind="cancel"), "a")
    await backend.renew_instance("a", DEAD)  # a died before applying it
    await backend.register_instance("b", {}, LIVE)
    assert 1 == len(await backend.claim_orphans("b", 10))
    assert ["s1"] == [c.saga_id for c in await backend.pending_commands("b", 10)]


async def test_old_commands_are_forgotten(backend: StoreBackend) -> None:
    await backend.send_command(SagaCommand(saga_id="s1", kind="cancel"), None)
    assert 0 == await backend.purge_commands(3600)
    assert 1 == await backend.purge_commands(-1)


async def test_a_command_wakes_its_owner_at_once(backend: StoreBackend) -> None:
    await backend.register_instance("a", {}, LIVE)
    await started(backend, "s1", "a")
    await backend.wait_for_commands("a", 0.01)  # listening from now on
    woke_after: list[float] = []

    async def owner() -> None:
        began = trio.current_time()
        await backend.wait_for_commands("a", 30)
        woke_after.append(trio.current_time() - began)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner)
        await trio.sleep(0.05)
        await backend.send_command(SagaCommand(saga_id="s1", kind="cancel"), "a")
    assert woke_after[0] < 10  # not the 30 s the wait would last without a wake-up


async def test_the_orphans_are_counted_as_a_claim_would_take_them(backend: StoreBackend) -> None:
    await backend.register_instance("live", {}, LIVE)
    await backend.register_instance("dead", {}, LIVE)
    await started(backend, "of-live", "live")
    await started(backend, "of-dead", "dead")
    await started(backend, "done", "dead", status="completed")
    await started(backend, "of-ghost", "ghost")  # no instance row at all
    assert 1 == await _orphans(backend)
    await backend.renew_instance("dead", DEAD)  # its leases end
    assert 2 == await _orphans(backend)
    await backend.claim_orphans("live", 10)
    assert 0 == await _orphans(backend)


async def _orphans(backend: StoreBackend) -> int:
    return sum((await backend.orphans_by_definition()).values())
