"""The router on both buses: event-triggered sagas (one per event, however often it comes),
reply events to reply-driven steps, backpressure at the admission limit, poison events."""

from __future__ import annotations

import logging

import pytest
import trio

from saga_orchestrator.bus import BusMessage, EventBus, dead_letter_stream
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.coordinator.router import EventRouter, trigger_key
from saga_orchestrator.errors import CommandPending, StoreError
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import SagaRecord

from ..support.records import stored
from .harness import (
    AUDIT,
    EVENTS,
    GROUP,
    LIFECYCLE,
    ONBOARDING,
    SYNC,
    EventPath,
    consumer_options,
    event,
    event_path,
    gated_saga,
)


async def test_a_trigger_event_starts_one_saga_even_delivered_twice_or_replayed(
    bus: EventBus,
) -> None:
    registered = event(
        "user.registered",
        "evt-1",
        {"correlation_id": "signup-7"},
        user_id="u-1",
        email="u1@example.com",  # more than the saga's input declares
    )
    async with event_path(bus) as path:
        await path.publish(registered, registered)  # delivered twice
        [saga] = await path.wait_for_sagas(ONBOARDING.name, 1)
        await path.wait_for(lambda: path.router.stats.started + path.router.stats.repeated == 2)
        await path.publish(registered)  # replayed later
        await path.wait_for(lambda: path.router.stats.repeated == 2)
        await path.settled()
        done = await path.wait_status(saga.saga_id, ["completed"])
        assert 1 == len(await path.sagas_of(ONBOARDING.name))
    assert trigger_key("evt-1", ONBOARDING.name) == done.idempotency_key
    assert {"user_id": "u-1"} == done.input
    assert "signup-7" == done.correlation_id
    assert (1, 2) == (path.router.stats.started, path.router.stats.repeated)


async def test_one_event_starts_each_saga_type_it_triggers(bus: EventBus) -> None:
    async with event_path(bus, [ONBOARDING, AUDIT]) as path:
        await path.publish(event("user.registered", "evt-2", user_id="u-2"))
        [onboarding] = await path.wait_for_sagas(ONBOARDING.name, 1)
        [audit] = await path.wait_for_sagas(AUDIT.name, 1)
        await path.settled()
    assert "evt-2" == onboarding.correlation_id == audit.correlation_id  # no correlation id given


async def test_an_event_no_saga_cares_about_is_acknowledged(bus: EventBus) -> None:
    async with event_path(bus) as path:
        await path.publish(event("order.placed", "evt-3", order_id="o-1"))
        await path.wait_for(lambda: path.router.consumer_stats.handled == 1)
        await path.settled()
        assert [] == list(path.backend.sagas.values())


async def sync_saga_waiting(path: EventPath) -> SagaRecord:
    await path.publish(event("airtable.base.connected", "evt-base", base_id="b-1"))
    [saga] = await path.wait_for_sagas(SYNC.name, 1)
    await path.wait_step(saga.saga_id, 1, "waiting")
    return saga


async def test_a_reply_event_completes_a_reply_driven_step(bus: EventBus) -> None:
    async with event_path(bus) as path:
        saga = await sync_saga_waiting(path)
        reply = event("sync.completed", "reply-1", {"saga_id": saga.saga_id}, rows=42)
        await path.publish(reply, reply)  # a duplicate reply is harmless
        done = await path.wait_status(saga.saga_id, ["completed"])
        await path.settled()
    assert {"accepted": {"job": "sync-b-1"}, "reply": {"rows": 42}} == done.result["sync"]


async def test_a_failure_reply_naming_the_saga_in_its_data_fails_the_step(
    bus: EventBus,
) -> None:
    async with event_path(bus) as path:
        saga = await sync_saga_waiting(path)
        await path.publish(event("sync.failed", "reply-2", saga_id=saga.saga_id, error="no base"))
        done = await path.wait_status(saga.saga_id, ["compensated"])
    assert "step 'sync' failed: sync.failed: no base" == done.error


async def test_a_reply_for_a_saga_that_is_gone_or_ended_is_dropped(bus: EventBus) -> None:
    async with event_path(bus) as path:
        await path.publish(event("user.registered", "evt-4", user_id="u-4"))
        [ended] = await path.wait_for_sagas(ONBOARDING.name, 1)
        await path.wait_status(ended.saga_id, ["completed"])
        await path.publish(
            event("sync.completed", "late", {"saga_id": ended.saga_id}),
            event("sync.completed", "stray", {"saga_id": "6e0c0e1e-0000-4000-8000-000000000000"}),
        )
        await path.wait_for(lambda: path.router.stats.dropped == 2)
        await path.settled()
        info = await bus.info(EVENTS, GROUP)
    assert 0 == info.dead_letters


async def test_replayed_replies_for_a_saga_that_is_gone_are_logged_once_with_a_count(
    bus: EventBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="saga_orchestrator.coordinator.router")
    gone = "6e0c0e1e-0000-4000-8000-000000000001"
    async with event_path(bus) as path:
        await path.publish(
            *(event("sync.completed", f"old-{n}", {"saga_id": gone}) for n in range(30))
        )
        await path.wait_for(lambda: path.router.stats.dropped == 30)
        await path.settled()
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert 1 == len(dropped)


async def test_the_router_stops_reading_at_the_admission_limit_and_resumes(
    bus: EventBus,
) -> None:
    gate = trio.Event()
    options = EngineOptions(max_active_sagas=1, lifecycle_topic=LIFECYCLE)
    consumer = consumer_options(count=1)
    saga = gated_saga(gate)
    async with event_path(bus, [saga], options=options, consumer=consumer) as path:
        await path.publish(*(event("job.requested", f"job-{n}", n=n) for n in range(3)))
        await path.wait_for_sagas(saga.name, 1)
        stats = path.router.consumer_stats
        await path.wait_for(lambda: stats.busy_waits >= 3)
        assert stats.paused
        info = await bus.info(EVENTS, GROUP)
        assert 1 == info.pending  # job-1 waits for room; job-2 is not even read
        assert info.lag in (1, None)
        assert 1 == len(await path.sagas_of(saga.name))
        gate.set()
        await path.wait_for_sagas(saga.name, 3)
        await path.settled()
    assert 0 == stats.failed and 0 == stats.dead_lettered


class PoisonedKeys(MemoryBackend):
    """The saga lookup of one event's trigger key fails: a store error that is not transient."""

    def __init__(self, poisoned: str) -> None:
        super().__init__()
        self.poisoned = poisoned
        self.lookups = 0

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None:
        if idempotency_key == self.poisoned:
            self.lookups += 1
            raise StoreError("row is corrupt")
        return await super().find_saga_by_key(idempotency_key)


async def test_a_poison_event_is_dead_lettered_after_n_deliveries_and_the_router_goes_on(
    bus: EventBus,
) -> None:
    backend = PoisonedKeys(trigger_key("poison", ONBOARDING.name))
    async with event_path(bus, backend=backend) as path:
        await path.publish(
            event("user.registered", "poison", user_id="u-x"),
            event("user.registered", "fine-1", user_id="u-1"),
        )
        await path.wait_for_sagas(ONBOARDING.name, 1)  # the good one is not held up
        await path.wait_for(lambda: path.router.consumer_stats.dead_lettered == 1)
        await path.publish(event("user.registered", "fine-2", user_id="u-2"))
        await path.wait_for_sagas(ONBOARDING.name, 2)
        await path.settled()
    assert 3 == backend.lookups  # BUS_MAX_DELIVERIES=3 deliveries, then the dead-letter stream
    [dead] = await bus.entries(dead_letter_stream(EVENTS))
    assert "poison" == dead.message.event_id
    assert "StoreError: row is corrupt" in dead.fields["dead_reason"]


async def test_an_event_whose_data_fails_the_saga_input_is_dead_lettered_at_once(
    bus: EventBus,
) -> None:
    async with event_path(bus) as path:
        await path.publish(event("user.registered", "bad", user_id=42))
        await path.wait_for(lambda: path.router.consumer_stats.dead_lettered == 1)
        await path.settled()
    [dead] = await bus.entries(dead_letter_stream(EVENTS))
    assert dead.fields["dead_reason"].startswith("rejected: event bad cannot start")
    assert "data.user_id" in dead.fields["dead_reason"]
    assert "1" == dead.fields["dead_deliveries"]


async def test_a_trigger_a_dead_router_read_is_claimed_and_starts_its_saga(
    bus: EventBus,
) -> None:
    await bus.ensure_group(EVENTS, GROUP)
    await bus.publish(EVENTS, [event("user.registered", "orphan", user_id="u-9")])
    assert 1 == len(await bus.read(EVENTS, GROUP, "router-killed", count=10, block_ms=10))
    async with event_path(bus) as path:
        [saga] = await path.wait_for_sagas(ONBOARDING.name, 1)
        await path.settled()
    assert trigger_key("orphan", ONBOARDING.name) == saga.idempotency_key
    assert 1 == path.router.consumer_stats.claimed


async def test_lifecycle_events_go_to_their_own_stream_and_are_not_routed(
    bus: EventBus,
) -> None:
    async with event_path(bus) as path:
        await path.publish(event("user.registered", "evt-5", user_id="u-5"))
        [saga] = await path.wait_for_sagas(ONBOARDING.name, 1)
        await path.wait_status(saga.saga_id, ["completed"])
        with trio.fail_after(10):
            while len(lifecycle := await bus.entries(LIFECYCLE)) < 3:
                await trio.sleep(0.01)
        await path.settled()
    assert ["saga.started", "saga.step.completed", "saga.completed"] == [
        d.message.event_type for d in lifecycle
    ]
    assert {saga.saga_id} == {d.message.data["saga_id"] for d in lifecycle}
    assert ["evt-5"] == [d.message.event_id for d in await bus.entries(EVENTS)]
    assert 1 == path.router.consumer_stats.handled


async def test_a_restarted_router_does_not_start_a_second_saga(bus: EventBus) -> None:
    backend = MemoryBackend()
    registered = event("user.registered", "evt-6", user_id="u-6")
    async with event_path(bus, backend=backend) as path:
        await path.publish(registered)
        await path.wait_for_sagas(ONBOARDING.name, 1)
        await path.settled()
    # a new process over the same store and bus; the event comes again (replayed)
    async with event_path(bus, backend=backend) as path:
        await path.publish(registered)
        await path.wait_for(lambda: path.router.stats.repeated == 1)
        await path.settled()
        assert 1 == len(await path.sagas_of(ONBOARDING.name))


class SlowOwner:
    """A coordinator whose forwarded deliveries are kept for the saga's owner on another
    instance, which does not answer in time (``CommandPending``)."""

    def __init__(self) -> None:
        self.asked = 0

    async def ask(self, message: object, **_: object) -> object:
        self.asked += 1
        await trio.lowlevel.checkpoint()
        raise CommandPending(getattr(message, "saga_id", ""), "instance-b")


async def test_a_reply_kept_for_a_slow_owner_on_another_instance_is_acknowledged() -> None:
    """It is durable in the store and the owner (or its successor) applies it: delivering it
    again would only keep it again, and after BUS_MAX_DELIVERIES it would go to the dead
    letters although it was applied."""
    coordinator = SlowOwner()
    router = EventRouter(coordinator, SagaCatalog([]))  # type: ignore[arg-type]
    reply = BusMessage(event_id="e1", event_type="sync.done", metadata={"saga_id": "s1"})
    await router.handle(reply)  # no error: the bus acknowledges it
    assert (1, 1) == (coordinator.asked, router.stats.delivered)


async def test_a_reply_for_a_saga_waiting_for_its_definition_is_dead_lettered_not_dropped(
    bus: EventBus,
) -> None:
    """No instance can take the reply now; dead-lettered, it can be replayed once a process
    that loads the saga's version runs."""
    waiting = "6e0c0e1e-0000-4000-8000-000000000009"
    backend = MemoryBackend()
    await stored(backend, waiting, SYNC.name, SYNC.version + 1)
    async with event_path(bus, backend=backend) as path:
        await path.publish(event("sync.completed", "early", {"saga_id": waiting}, rows=1))
        await path.wait_for(lambda: path.router.consumer_stats.dead_lettered == 1)
        await path.settled()
    assert 0 == path.router.stats.dropped
    [dead] = await bus.entries(dead_letter_stream(EVENTS))
    assert "early" == dead.message.event_id
    assert "SagaDefinitionMissing" in dead.fields["dead_reason"]
