"""Event-driven saga types for tests, and the whole event path (store, coordinator, outbox
relay, router) around a bus."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorRef, open_actor_system
from saga_orchestrator.bus import (
    BusMessage,
    ConsumerOptions,
    EventBus,
    OutboxRelay,
    start_relay,
)
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.coordinator import Coordinator, start_coordinator
from saga_orchestrator.coordinator.definition import (
    AwaitReply,
    SagaDefinition,
    Step,
    StepContext,
)
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.coordinator.router import EventRouter, start_router
from saga_orchestrator.coordinator.trigger_links import TriggerDecisions
from saga_orchestrator.store.actor import Store, start_store
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import SagaQuery, SagaRecord

EVENTS = "events"
LIFECYCLE = "saga.lifecycle"
GROUP = "router"
WITHIN = 15.0
TERMINAL = {"completed", "compensated", "cancelled", "timed_out", "compensation_failed", "failed"}


# -- saga types -------------------------------------------------------------------------------


@attrs.frozen
class NewUser:
    user_id: str


async def _welcome(ctx: StepContext) -> dict[str, Any]:
    return {"welcomed": ctx.input.user_id}


ONBOARDING = SagaDefinition(
    name="test_onboarding",
    version=1,
    input_type=NewUser,
    triggers=["user.registered"],
    steps=[Step(name="welcome", action=_welcome)],
)

AUDIT = attrs.evolve(ONBOARDING, name="test_audit")
"""A second saga type that the same event triggers."""


@attrs.frozen
class Base:
    base_id: str


async def _request_sync(ctx: StepContext) -> dict[str, Any]:
    # The command goes out here (an HTTP call, a published event); the reply comes as an event
    # naming this saga.
    return {"job": f"sync-{ctx.input.base_id}"}


async def _nothing(ctx: StepContext) -> None:
    return None


SYNC = SagaDefinition(
    name="test_sync",
    version=1,
    input_type=Base,
    triggers=["airtable.base.connected"],
    steps=[
        Step(name="prepare", action=_nothing, compensation=_nothing),
        Step(
            name="sync",
            action=_request_sync,
            reply=AwaitReply(success=["sync.completed"], failure=["sync.failed"]),
            timeout=60,
        ),
        Step(name="finish", action=_nothing),
    ],
)


@attrs.frozen
class Gated:
    n: int


def gated_saga(gate: trio.Event) -> SagaDefinition:
    async def wait(ctx: StepContext) -> None:
        await gate.wait()

    return SagaDefinition(
        name="test_gated",
        version=1,
        input_type=Gated,
        triggers=["job.requested"],
        steps=[Step(name="wait", action=wait, timeout=60)],
    )


SAGAS = [ONBOARDING, SYNC]


def event(event_type: str, event_id: str, metadata: dict[str, Any] | None = None, **data: Any):
    return BusMessage(
        event_id=event_id, event_type=event_type, data=data, metadata=dict(metadata or {})
    )


# -- the event path ---------------------------------------------------------------------------


def consumer_options(**changes: Any) -> ConsumerOptions:
    base = ConsumerOptions(
        stream=EVENTS,
        group=GROUP,
        consumer="router-1",
        count=10,
        block_ms=20,
        claim_idle=0.3,
        max_deliveries=3,
        retry_max=0.2,
    )
    return attrs.evolve(base, **changes)


@attrs.frozen
class EventPath:
    bus: EventBus
    store: Store
    backend: StoreBackend
    catalog: SagaCatalog
    coordinator_ref: ActorRef[Any]
    coordinator: Coordinator
    relay: OutboxRelay
    router: EventRouter
    decisions: TriggerDecisions

    async def publish(self, *messages: BusMessage) -> None:
        await self.bus.publish(EVENTS, list(messages))

    async def sagas_of(self, saga_type: str) -> list[SagaRecord]:
        page = await self.store.list_sagas(SagaQuery(saga_type=saga_type, limit=500))
        return list(page.items)

    async def wait_for(self, condition: Any, within: float = WITHIN) -> None:
        with trio.fail_after(within):
            while not condition():
                await trio.sleep(0.01)

    async def wait_for_sagas(self, saga_type: str, count: int) -> list[SagaRecord]:
        with trio.fail_after(WITHIN):
            while len(found := await self.sagas_of(saga_type)) < count:
                await trio.sleep(0.01)
        return found

    async def wait_status(self, saga_id: str, statuses: Iterable[str]) -> SagaRecord:
        wanted = set(statuses)
        with trio.fail_after(WITHIN):
            while True:
                record = await self.store.get_saga(saga_id)
                if record is not None and record.status in wanted:
                    return record
                await trio.sleep(0.01)

    async def wait_step(self, saga_id: str, index: int, status: str) -> None:
        with trio.fail_after(WITHIN):
            while True:
                record = await self.store.get_saga(saga_id)
                if record is not None and record.steps[index].status == status:
                    return
                await trio.sleep(0.01)

    async def settled(self) -> None:
        """Wait until the router has acknowledged everything it read."""
        with trio.fail_after(WITHIN):
            while (await self.bus.info(EVENTS, GROUP)).pending:
                await trio.sleep(0.01)


@asynccontextmanager
async def event_path(
    bus: EventBus,
    definitions: Iterable[SagaDefinition] = SAGAS,
    *,
    backend: StoreBackend | None = None,
    options: EngineOptions | None = None,
    consumer: ConsumerOptions | None = None,
) -> AsyncIterator[EventPath]:
    backend = backend if backend is not None else MemoryBackend()
    catalog = SagaCatalog(definitions)
    await backend.open()
    try:
        async with open_actor_system(shutdown_grace=0.5) as system:
            store = await start_store(system, backend)
            ref, coordinator = await start_coordinator(
                system, catalog, store, options=options or EngineOptions(lifecycle_topic=LIFECYCLE)
            )
            await coordinator.ready.wait()
            relay = await start_relay(system, store, bus, poll_interval=0.5)
            decisions = TriggerDecisions()
            router = await start_router(
                system,
                bus,
                ref,
                catalog,
                consumer or consumer_options(),
                ask_timeout=5.0,
                decisions=decisions,
            )
            yield EventPath(
                bus, store, backend, catalog, ref, coordinator, relay, router, decisions
            )
    finally:
        await backend.close()
