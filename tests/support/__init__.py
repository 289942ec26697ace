"""Shared helpers of the tests: the HTTP app around an in-process actor system."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from quart_trio import QuartTrio

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.coordinator import Coordinator, start_coordinator
from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.coordinator.saga_waiters import SagaWaiters
from saga_orchestrator.http.app import ApiDeps, create_app
from saga_orchestrator.store.actor import start_store
from saga_orchestrator.store.memory import MemoryBackend

from .sagas import SAGAS


@attrs.frozen
class Api:
    """An app under test and what it talks to."""

    app: QuartTrio
    client: Any
    """``app.test_client()``."""
    deps: ApiDeps
    backend: Any
    coordinator: Coordinator
    """The coordinator's state object (``ready`` is set once recovery is done)."""


@asynccontextmanager
async def open_api(
    *,
    settings: Settings | None = None,
    options: EngineOptions | None = None,
    backend: Any = None,
    sagas: Sequence[SagaDefinition] = SAGAS,
    command_timeout: float = 5.0,
    health_timeout: float = 2.0,
    wire_waiters: bool = True,
) -> AsyncIterator[Api]:
    """Run a store and a coordinator over ``backend`` (default: in memory) and the app.
    ``wire_waiters=False``: the long polls hear nothing from this engine, as when another
    instance drives the sagas."""
    backend = backend if backend is not None else MemoryBackend()
    catalog = SagaCatalog(sagas)
    await backend.open()
    try:
        async with open_actor_system(shutdown_grace=0.5) as system:
            store = await start_store(system, backend)
            waiters = SagaWaiters() if wire_waiters else None
            ref, coordinator = await start_coordinator(
                system, catalog, store, options=options or EngineOptions(), observer=waiters
            )
            deps = ApiDeps(
                coordinator=ref,
                store=store,
                catalog=catalog,
                settings=settings or Settings(environment="test"),
                command_timeout=command_timeout,
                health_timeout=health_timeout,
                waiters=waiters or SagaWaiters(),
            )
            app = create_app(deps)
            yield Api(
                app=app,
                client=app.test_client(),
                deps=deps,
                backend=backend,
                coordinator=coordinator,
            )
    finally:
        await backend.close()


async def wait_for_status(
    client: Any,
    saga_id: str,
    statuses: Sequence[str],
    *,
    headers: Mapping[str, str] | None = None,
    within: float = 5.0,
) -> dict[str, Any]:
    """Poll ``GET /sagas/<id>`` until the saga's status is one of ``statuses``; its body."""
    body: dict[str, Any] = {}
    with trio.move_on_after(within):
        while True:
            response = await client.get(f"/sagas/{saga_id}", headers=dict(headers or {}))
            body = await response.get_json()
            if body.get("status") in statuses:
                return body
            await trio.sleep(0.01)
    raise AssertionError(f"saga {saga_id} is {body.get('status')!r}, not one of {statuses}")
