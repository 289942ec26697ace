"""A coordinator on the in-memory store, and helpers to drive sagas in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from saga_orchestrator.actors import ActorRef, open_actor_system
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.clock import TrioClock
from saga_orchestrator.coordinator.coordinator import Coordinator, start_coordinator
from saga_orchestrator.coordinator.definition import SagaDefinition, Step, StepContext
from saga_orchestrator.coordinator.messages import StartResult, StartSaga
from saga_orchestrator.coordinator.observer import SagaObserver
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.store.actor import Store, start_store
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import SagaRecord

TERMINAL = {"completed", "compensated", "cancelled", "timed_out", "compensation_failed", "failed"}

FAST = EngineOptions(
    saga_timeout=3600,
    step_timeout=30,
    retry_attempts=3,
    retry_backoff=1.0,
    retry_backoff_max=10.0,
    compensation_attempts=3,
)


@attrs.frozen
class Input:
    user_id: str


@attrs.define
class Recorder:
    """Records every action and compensation call, in order."""

    calls: list[tuple[str, str, int]] = attrs.field(factory=list)
    keys: list[str] = attrs.field(factory=list)

    def names(self, kind: str) -> list[str]:
        return [name for k, name, _ in self.calls if k == kind]


def step(
    recorder: Recorder,
    name: str,
    *,
    fail_times: int = 0,
    error: type[Exception] = RuntimeError,
    sleep: float = 0.0,
    compensation: bool = True,
    compensation_fails: int = 0,
    **options: Any,
) -> Step:
    """A step that records its calls, fails its first ``fail_times`` attempts, and can sleep."""
    failures = {"action": fail_times, "compensation": compensation_fails}

    async def action(ctx: StepContext) -> dict[str, Any]:
        recorder.calls.append(("action", name, ctx.attempt))
        recorder.keys.append(ctx.idempotency_key)
        if sleep:
            await trio.sleep(sleep)
        if failures["action"]:
            failures["action"] -= 1
            raise error(f"{name} failed")
        return {"step": name, "seen": sorted(ctx.results)}

    async def undo(ctx: StepContext) -> None:
        recorder.calls.append(("compensation", name, ctx.attempt))
        if failures["compensation"]:
            failures["compensation"] -= 1
            raise RuntimeError(f"undo {name} failed")

    return Step(name=name, action=action, compensation=undo if compensation else None, **options)


def saga(name: str, steps: Iterable[Step]) -> SagaDefinition:
    return SagaDefinition(name=name, version=1, input_type=Input, steps=list(steps))


@attrs.frozen
class Harness:
    ref: ActorRef[Any]
    coordinator: Coordinator
    store: Store
    backend: MemoryBackend

    async def start(self, saga_type: str, key: str | None = None, **data: Any) -> StartResult:
        data = data or {"user_id": "u-1"}
        message = StartSaga(saga_type=saga_type, data=data, idempotency_key=key)
        return await self.ref.ask(message)

    async def wait_terminal(self, saga_id: str, limit: float = 3600) -> SagaRecord:
        """Wait (in virtual time) until the saga has ended or parked."""
        with trio.fail_after(limit):
            while True:
                record = await self.store.get_saga(saga_id)
                if record is not None and record.status in TERMINAL:
                    return record
                await trio.sleep(0.01)


@asynccontextmanager
async def running(
    definitions: Iterable[SagaDefinition],
    *,
    options: EngineOptions = FAST,
    backend: MemoryBackend | None = None,
    observer: SagaObserver | None = None,
) -> AsyncIterator[Harness]:
    backend = backend or MemoryBackend()
    async with open_actor_system() as system:
        store = await start_store(system, backend)
        ref, coordinator = await start_coordinator(
            system,
            SagaCatalog(definitions),
            store,
            options=options,
            clock=TrioClock(),
            observer=observer,
        )
        await coordinator.ready.wait()
        yield Harness(ref, coordinator, store, backend)
