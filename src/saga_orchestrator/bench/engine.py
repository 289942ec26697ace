"""The engine as the service wires it, in this process: the actor system, the store actor over
a backend, the coordinator with the benchmark's saga types, and the service's metrics.

A workload watches the sagas through a hook that the engine's observer calls right after each
append is durable (after the metrics have seen it), so it learns when a saga parks, ends or
moves without reading the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs

from saga_orchestrator.actors import ActorRef, open_actor_system
from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.coordinator import Coordinator, start_coordinator
from saga_orchestrator.coordinator.observer import SagaObserver, notify
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.coordinator.transitions import Transition
from saga_orchestrator.metrics import ServiceMetrics
from saga_orchestrator.store.actor import Store, start_store
from saga_orchestrator.store.backend import StoreBackend

from .workloads import bench_sagas

__all__ = ["Engine", "Hook", "engine_options", "running_engine"]

Hook = Callable[[sm.SagaState, sm.SagaState, Sequence[Transition]], None]
"""Called with (state before, state after, transitions) once the transitions are durable."""


@attrs.frozen
class Engine:
    """A running engine: ask ``ref`` (the coordinator's mailbox) to start sagas."""

    ref: ActorRef[Any]
    coordinator: Coordinator
    store: Store


class _Observer(SagaObserver):
    """The service's metrics first, as in the service, then the workload's hook."""

    def __init__(self, metrics: ServiceMetrics, hook: Hook | None) -> None:
        self._metrics = metrics
        self._hook = hook

    def transitions_recorded(
        self, before: sm.SagaState, after: sm.SagaState, transitions: Sequence[Transition]
    ) -> None:
        notify(self._metrics, before, after, transitions)
        if self._hook is not None:
            self._hook(before, after, transitions)


def engine_options(settings: Settings, *, at_least_active: int = 0) -> EngineOptions:
    """The engine options of ``settings``, with ``MAX_ACTIVE_SAGAS`` raised to
    ``at_least_active`` if it is lower."""
    options = EngineOptions.from_settings(settings)
    if options.max_active_sagas < at_least_active:
        options = attrs.evolve(options, max_active_sagas=at_least_active)
    return options


@asynccontextmanager
async def running_engine(
    backend: StoreBackend,
    settings: Settings,
    *,
    hook: Hook | None = None,
    options: EngineOptions | None = None,
    resources: Mapping[str, Any] | None = None,
    wait_ready: bool = True,
) -> AsyncIterator[Engine]:
    """The engine over ``backend`` (opened) for the body of the ``async with``; stopped in
    order on exit (sagas in flight stay durable, as at a service's shutdown). With
    ``wait_ready`` the body starts once the coordinator's recovery is done."""
    async with open_actor_system(
        max_restarts=settings.supervisor_max_restarts,
        period=settings.supervisor_period_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
    ) as system:
        store = await start_store(
            system,
            backend,
            mailbox_size=settings.store_mailbox_size,
            max_batch=settings.store_max_batch,
        )
        catalog = SagaCatalog(bench_sagas())
        metrics = ServiceMetrics(step_names={d.name: [s.name for s in d.steps] for d in catalog})
        store.stats.on_batch = metrics.store_batch
        ref, coordinator = await start_coordinator(
            system,
            catalog,
            store,
            options=options or EngineOptions.from_settings(settings),
            resources=resources or {},
            observer=_Observer(metrics, hook),
        )
        if wait_ready:
            await coordinator.ready.wait()
        yield Engine(ref=ref, coordinator=coordinator, store=store)
