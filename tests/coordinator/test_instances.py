"""Several engines (instances) on one store, in virtual time: who drives a saga, what a
partition does, how a command reaches the owner, and that nothing is recorded twice."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.clock import TrioClock
from saga_orchestrator.coordinator.coordinator import start_coordinator
from saga_orchestrator.coordinator.definition import SagaDefinition, Step, StepContext
from saga_orchestrator.coordinator.messages import CancelSaga
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.errors import SagaOwnedElsewhere, StoreUnavailable
from saga_orchestrator.store.actor import start_store
from saga_orchestrator.store.memory import MemoryBackend

from .harness import FAST, Harness, Recorder, saga, step

OPTIONS = attrs.evolve(FAST, heartbeat_interval=1.0, instance_ttl=5.0, scan_interval=1.0)


class Link:
    """One engine's connection to the shared store: cut it and every call fails as if the
    database could not be reached (a partition)."""

    def __init__(self, inner: MemoryBackend) -> None:
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                await trio.lowlevel.checkpoint()
                raise StoreUnavailable("partitioned from the database")
            return await attr(*args, **kwargs)

        return call


@attrs.frozen
class Instance:
    harness: Harness
    link: Link

    @property
    def coordinator(self) -> Any:
        return self.harness.coordinator


@asynccontextmanager
async def instances(
    definitions: Sequence[SagaDefinition], names: Sequence[str], shared: MemoryBackend
) -> AsyncIterator[list[Instance]]:
    async with AsyncExitStack() as stack:
        started = []
        for name in names:
            started.append(await stack.enter_async_context(engine(definitions, name, shared)))
        yield started


@asynccontextmanager
async def engine(
    definitions: Sequence[SagaDefinition],
    name: str,
    shared: MemoryBackend,
    *,
    options: EngineOptions = OPTIONS,
) -> AsyncIterator[Instance]:
    link = Link(shared)
    options = attrs.evolve(options, instance_name=name)
    async with open_actor_system() as system:
        store = await start_store(system, link)  # type: ignore[arg-type]
        ref, coordinator = await start_coordinator(
            system, SagaCatalog(definitions), store, options=options, clock=TrioClock()
        )
        await coordinator.ready.wait()
        yield Instance(Harness(ref, coordinator, store, shared), link)


def unknown_safe(rec: Recorder, name: str, **options: Any) -> Any:
    """A step whose compensation is safe to run when its outcome is unknown (it was cut)."""
    return step(rec, name, compensation_safe_if_unknown=True, **options)


def shared_store() -> MemoryBackend:
    return MemoryBackend(clock=TrioClock().now)  # the database's clock: virtual time too


async def owner_of(shared: MemoryBackend, saga_id: str) -> str | None:
    return (await shared.saga_owner(saga_id))[0]


async def test_a_starting_instance_takes_no_saga_a_live_one_drives(autojump_clock: Any) -> None:
    rec = Recorder()
    shared = shared_store()
    definitions = [saga("slow", [step(rec, "s1", sleep=20), step(rec, "s2")])]
    async with engine(definitions, "a", shared) as a:
        saga_id = (await a.harness.start("slow")).saga.saga_id
        async with engine(definitions, "b", shared) as b:  # a restart of another instance
            assert 0 == b.coordinator.ownership.recovered
            final = await a.harness.wait_terminal(saga_id)
            assert 0 == sum(b.coordinator.ownership.claims.values())
    assert "completed" == final.status
    assert ["s1", "s2"] == rec.names("action")  # each step once: no second driver


async def test_a_cancel_sent_to_another_instance_cuts_the_owners_step_at_once(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    shared = shared_store()
    definitions = [saga("slow", [step(rec, "s1"), unknown_safe(rec, "s2", sleep=1000)])]
    async with instances(definitions, ["a", "b"], shared) as (a, b):
        saga_id = (await a.harness.start("slow")).saga.saga_id
        while rec.names("action") != ["s1", "s2"]:
            await trio.sleep(0.01)
        started = trio.current_time()
        answer = await b.harness.ref.ask(CancelSaga(saga_id=saga_id, reason="changed mind"))
        assert answer in ("compensating", "cancelled")
        assert trio.current_time() - started < 2  # the step was cut, not waited for
        final = await a.harness.wait_terminal(saga_id)
        sent = b.coordinator.forwarding.stats.sent
        assert (1, 1) == (sent, a.coordinator.forwarding.stats.applied)
        assert a.coordinator.instance_id == await owner_of(shared, saga_id)
    assert "cancelled" == final.status
    assert ["s2", "s1"] == rec.names("compensation")  # in reverse, each once, by the owner


def watched(rec: Recorder, name: str, seconds: float, ends: list[tuple[str, float]]) -> Step:
    """A step that sleeps ``seconds`` and records in ``ends`` when each attempt started and how
    and when it ended (``done`` or ``cut``), so a test can tell whether two ran at once."""

    async def action(ctx: StepContext) -> None:
        rec.calls.append(("action", name, ctx.attempt))
        rec.keys.append(ctx.idempotency_key)
        ends.append(("start", trio.current_time()))
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            ends.append(("cut", trio.current_time()))
            raise
        ends.append(("done", trio.current_time()))

    return Step(name=name, action=action)


async def test_a_partitioned_instance_stops_its_steps_and_another_finishes_its_sagas(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    shared = shared_store()
    ends: list[tuple[str, float]] = []
    s2 = watched(rec, "s2", OPTIONS.instance_ttl + 3, ends)  # outlasts a's leases
    definitions = [saga("slow", [step(rec, "s1"), s2, step(rec, "s3")])]
    async with instances(definitions, ["a", "b"], shared) as (a, b):
        saga_id = (await a.harness.start("slow")).saga.saga_id
        while rec.names("action") != ["s1", "s2"]:
            await trio.sleep(0.01)
        a.link.down = True  # a can no longer reach the database
        cut_at = trio.current_time()
        final = await b.harness.wait_terminal(saga_id)
        # b took over only after a's leases ended, and a had stopped its step before that
        assert a.coordinator.lease.stats.lost >= 1
        assert b.coordinator.ownership.claims["failover"] == 1
        assert trio.current_time() - cut_at >= OPTIONS.instance_ttl
        a.link.down = False
        await trio.sleep(OPTIONS.instance_ttl)  # a is back: it must not touch b's saga
        history = await shared.read_stream(f"saga-{saga_id}")
    # a cut its own attempt of s2 before its leases ended, so before b could claim the saga:
    # the two attempts never ran at once; b's ran to its end
    (_, _), (a_end, a_cut), (_, b_start), (b_end, _) = ends
    assert ("cut", "done") == (a_end, b_end)
    assert a_cut + OPTIONS.heartbeat_interval <= b_start  # with one heartbeat of margin
    assert "completed" == final.status
    # s2 ran twice with one idempotency key: the cut attempt, then b's; every other step once
    assert ["s1", "s2", "s2", "s3"] == rec.names("action")
    assert 1 == len({k for k in rec.keys if k.endswith(":s2")})
    assert "SagaParked" not in [e.event_type for e in history]
    assert history[-1].event_type == "SagaCompleted"


async def test_a_command_for_a_dead_owner_is_applied_by_the_next_owner(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    shared = shared_store()
    definitions = [
        saga(
            "slow",
            [step(rec, "s1"), step(rec, "s2", sleep=1000, compensation_safe_if_unknown=True)],
        )
    ]
    async with instances(definitions, ["a", "b"], shared) as (a, b):
        saga_id = (await a.harness.start("slow")).saga.saga_id
        while rec.names("action") != ["s1", "s2"]:
            await trio.sleep(0.01)
        a.link.down = True
        with pytest.raises(SagaOwnedElsewhere):  # the owner does not answer...
            await b.harness.ref.ask(CancelSaga(saga_id=saga_id, reason="stop"), timeout=None)
        final = await b.harness.wait_terminal(saga_id)  # ...its successor applies the cancel
    assert "cancelled" == final.status
    assert ["s2", "s1"] == rec.names("compensation")
    # b resumed the saga (s2 again, same key) and applied the pending cancel, which cut it
    assert ["s1", "s2", "s2"] == rec.names("action")
    assert 1 == len({k for k in rec.keys if k.endswith(":s2")})


async def test_an_instance_that_lost_its_saga_stops_driving_it_without_a_crash(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    shared = shared_store()
    definitions = [saga("slow", [step(rec, "s1"), step(rec, "s2", sleep=10), step(rec, "s3")])]
    async with instances(definitions, ["a", "b"], shared) as (a, b):
        saga_id = (await a.harness.start("slow")).saga.saga_id
        while rec.names("action") != ["s1", "s2"]:
            await trio.sleep(0.01)
        # b takes the saga while a still runs s2 (as after a's lease ended unnoticed by a)
        taken = await shared.claim_saga(b.coordinator.instance_id, saga_id, force=True)
        before = len(await shared.read_stream(f"saga-{saga_id}"))
        await trio.sleep(20)  # a's s2 ends; its append is fenced
        after = await shared.read_stream(f"saga-{saga_id}")
        assert saga_id not in a.coordinator.sagas.actors  # stopped, not restarted
        assert before == len(after)  # a wrote nothing after the claim
        assert 2 == taken
        # b drives it from here: a command makes b start its actor, which applies it
        answer = await b.harness.ref.ask(CancelSaga(saga_id=saga_id, reason="x"), timeout=None)
        final = await b.harness.wait_terminal(saga_id)
    assert answer in ("compensating", "compensation_failed")
    assert final.status == answer or final.status == "compensation_failed"
    assert [] == [e for e in after if e.event_type == "SagaParked"]


async def test_sagas_claimed_under_an_id_whose_lease_was_lost_are_left_to_the_new_id(
    autojump_clock: Any,
) -> None:
    # z dies with a saga in flight; a, cut from the database at the same time, is retrying a
    # look for orphans under its id when its lease ends and it registers again under a new
    # one; the retried look then succeeds under the old id. The sagas it claimed must not run
    # under the dead id (their actors would keep the new id's claim from starting its own:
    # nobody would drive them): the new id takes them over.
    rec = Recorder()
    shared = shared_store()
    definitions = [saga("slow", [step(rec, "s1"), step(rec, "s2", sleep=20), step(rec, "s3")])]
    async with instances(definitions, ["z", "a"], shared) as (z, a):
        saga_id = (await z.harness.start("slow")).saga.saga_id
        while rec.names("action") != ["s1", "s2"]:
            await trio.sleep(0.01)
        old_id = a.coordinator.instance_id
        z.link.down = a.link.down = True
        await trio.sleep(2 * OPTIONS.instance_ttl)
        a.link.down = False
        final = await a.harness.wait_terminal(saga_id, limit=120)
        new_id = a.coordinator.instance_id
        assert (new_id, old_id != new_id) == (await owner_of(shared, saga_id), True)
    assert "completed" == final.status


class Stalled(Link):
    """A link whose reads of saga histories wait for :attr:`reads_open` and whose renewals
    fail while :attr:`renewals_down`."""

    def __init__(self, inner: MemoryBackend) -> None:
        super().__init__(inner)
        self.reads_open = trio.Event()
        self.renewals_down = False

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)
        if name == "read_streams":

            async def read(*args: Any) -> Any:
                await self.reads_open.wait()
                return await call(*args)

            return read
        if name == "renew_instance":

            async def renew(*args: Any) -> Any:
                if self.renewals_down:
                    raise StoreUnavailable("the heartbeat does not get through")
                return await call(*args)

            return renew
        return call


async def test_an_instance_that_lost_its_lease_starts_no_saga_it_had_claimed(
    autojump_clock: Any,
) -> None:
    """Its recovery claimed a saga, then the lease was lost while the histories were read: no
    actor may start under the ended registration (it would run steps of a saga that is
    another's as soon as that registration expires). The saga is resumed later, by a claim
    under the new registration."""
    rec = Recorder()
    shared = shared_store()
    definitions = [saga("slow", [step(rec, "s1", sleep=1000, compensation_safe_if_unknown=True)])]
    async with engine(definitions, "x", shared) as x:  # leaves an unowned saga on shutdown
        saga_id = (await x.harness.start("slow")).saga.saga_id
        while rec.names("action") != ["s1"]:
            await trio.sleep(0.01)
    assert await owner_of(shared, saga_id) is None
    link = Stalled(shared)
    options = attrs.evolve(OPTIONS, instance_name="a")
    async with open_actor_system() as system:
        store = await start_store(system, link)  # type: ignore[arg-type]
        _, a = await start_coordinator(
            system, SagaCatalog(definitions), store, options=options, clock=TrioClock()
        )
        while await owner_of(shared, saga_id) is None:  # claimed; its history is being read
            await trio.sleep(0.01)
        first = a.instance_id
        link.renewals_down = True
        while a.lease.stats.lost == 0:
            await trio.sleep(0.01)
        link.renewals_down = False
        link.reads_open.set()
        await a.ready.wait()
        await trio.sleep(0.1)
        assert [] == [lease for lease in a.sagas.leases.values() if lease.instance_id == first]
        assert ["s1"] == rec.names("action")  # not run again under the lost lease
        while rec.names("action") == ["s1"]:  # the new registration claims it once the old
            await trio.sleep(0.1)  # one has expired
        assert a.instance_id == await owner_of(shared, saga_id) != first
        assert trio.current_time() >= OPTIONS.instance_ttl


async def test_a_dead_instances_sagas_are_shared_out_among_the_survivors(
    autojump_clock: Any,
) -> None:
    rec = Recorder()
    shared = shared_store()
    definitions = [saga("slow", [step(rec, "s1", sleep=1000, compensation_safe_if_unknown=True)])]
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(engine(definitions, "a", shared))
        for _ in range(40):
            await a.harness.start("slow")
        small = attrs.evolve(OPTIONS, claim_batch=5)  # the share, not one batch, bounds a look
        b, c = [
            await stack.enter_async_context(engine(definitions, n, shared, options=small))
            for n in "bc"
        ]
        await trio.sleep(2 * OPTIONS.heartbeat_interval)  # every heartbeat has read all three
        a.link.down = True  # a is gone: its 40 sagas are orphans once its leases end
        while (
            b.coordinator.ownership.claims["failover"] + c.coordinator.ownership.claims["failover"]
            < 40
        ):
            await trio.sleep(0.1)
        taken = [x.coordinator.ownership.claims["failover"] for x in (b, c)]
        a.link.down = False
    assert 40 == sum(taken)
    assert min(taken) >= 10, taken  # each took a share, not one of them all
