"""The composition root: the store, the event bus, the actor system (store, coordinator, outbox
relay, event router) and the HTTP server, started in order in one trio run loop and stopped in
reverse order.

:func:`run_service` is what ``python -m saga_orchestrator.main`` runs (inside its signal
handling) and what tests run in-process::

    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(run_service, settings, shutdown=stop))
        ...
        stop.set()   # Hypercorn stops, then the actors (in order), then the store

Shutdown order: Hypercorn stops accepting and gives requests in flight
:data:`HTTP_GRACEFUL_TIMEOUT` seconds (starts still waiting for the coordinator are answered
within a part of it: see ``http/draining.py``; the dashboard's live streams end at once); then
the actor system stops its actors in
reverse start order (the router, the relay, the coordinator, the store: sagas in flight stay
durable and resume on the next start); then the bus and the backend close.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from saga_orchestrator.actors import open_actor_system
from saga_orchestrator.bus import (
    ConsumerOptions,
    EventBus,
    default_consumer_name,
    make_bus,
    start_bus_watcher,
    start_relay,
)
from saga_orchestrator.config import Settings, mask_url
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.coordinator import start_coordinator
from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.downstream import (
    DOWNSTREAM,
    DownstreamConfig,
    open_downstream_clients,
)
from saga_orchestrator.coordinator.observer import FanOut
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.coordinator.plugins import load_saga_modules, parse_module_names
from saga_orchestrator.coordinator.router import start_router
from saga_orchestrator.coordinator.saga_waiters import SagaWaiters
from saga_orchestrator.coordinator.trigger_links import TriggerDecisions
from saga_orchestrator.errors import ConfigError, StoreUnavailable
from saga_orchestrator.http.access_log import ACCESS_LOG_FORMAT, AccessLogger
from saga_orchestrator.http.app import ApiDeps, create_app
from saga_orchestrator.http.auth import log_auth_mode
from saga_orchestrator.http.draining import ANSWER_SHARE, Draining
from saga_orchestrator.metrics import ServiceMetrics
from saga_orchestrator.metrics_export import (
    export_bus_figures,
    export_bus_lag,
    export_engine,
)
from saga_orchestrator.store.actor import start_store
from saga_orchestrator.ui import Dashboard, make_dashboard

if TYPE_CHECKING:
    from saga_orchestrator.store.backend import StoreBackend

__all__ = [
    "BACKEND_CLOSE_TIMEOUT",
    "HTTP_GRACEFUL_TIMEOUT",
    "build_catalog",
    "builtin_sagas",
    "describe_bus",
    "describe_store",
    "head_buffer_bytes",
    "hypercorn_config",
    "router_options",
    "run_service",
]

log = logging.getLogger(__name__)

HTTP_GRACEFUL_TIMEOUT = 2.0
"""Most seconds Hypercorn waits for requests in flight (and idle keep-alive connections) on
shutdown; capped further by ``SHUTDOWN_GRACE_SECONDS``."""
STORE_OPEN_RETRY_MAX = 5.0
"""Longest pause between attempts to open a store that was unreachable at start-up."""
BACKEND_CLOSE_TIMEOUT = 5.0
"""Most seconds closing the store backend (or the event bus) may take on shutdown."""
BUS_PING_TIMEOUT = 2.0
"""Most seconds the start-up check of the event bus waits."""


def builtin_sagas() -> list[SagaDefinition]:
    """The saga types that ship with the service (``coordinator/catalog``): user onboarding and
    Airtable integration. Their steps call the downstream services through the clients that
    :func:`run_service` hands the coordinator as ``resources``."""
    from saga_orchestrator.coordinator.catalog.airtable_integration import AIRTABLE_INTEGRATION
    from saga_orchestrator.coordinator.catalog.user_onboarding import USER_ONBOARDING

    return [USER_ONBOARDING, AIRTABLE_INTEGRATION]


def build_catalog(settings: Settings, *, extra: Sequence[SagaDefinition] = ()) -> SagaCatalog:
    """The built-in saga types, those of ``SAGA_MODULES``, then ``extra``.

    Raises:
        ConfigError: a module of ``SAGA_MODULES`` cannot be loaded, or two definitions share a
            name and version (several versions of a type may be loaded side by side).
    """
    definitions = [
        *builtin_sagas(),
        *load_saga_modules(parse_module_names(settings.saga_modules)),
        *extra,
    ]
    catalog = SagaCatalog()
    for definition in definitions:
        try:
            catalog.register(definition)
        except ValueError as exc:
            raise ConfigError(f"SAGA_MODULES: {exc}") from None
    return catalog


def describe_store(settings: Settings) -> str:
    """The store for the start-up line: the SQLite path, or the PostgreSQL URL, password masked."""
    if settings.database_kind == "sqlite":
        return f"sqlite {settings.sqlite_path}"
    assert settings.database_url is not None
    return f"postgresql {mask_url(settings.database_url)}"


def describe_bus(settings: Settings) -> str:
    """The bus for the start-up line: the Redis URL (password masked), or in-process."""
    if settings.use_redis_event_bus:
        return f"redis {mask_url(settings.redis_url)}"
    return "in-process"


def router_options(settings: Settings) -> ConsumerOptions:
    """How the router reads ``EVENT_STREAM`` (see ``docs/events.md``)."""
    return ConsumerOptions(
        stream=settings.event_stream,
        group=settings.consumer_group,
        consumer=settings.consumer_name or default_consumer_name(),
        count=settings.bus_read_count,
        block_ms=settings.bus_block_ms,
        claim_idle=settings.bus_claim_idle_seconds,
        max_deliveries=settings.bus_max_deliveries,
    )


def hypercorn_config(settings: Settings) -> HypercornConfig:
    """Hypercorn's configuration: bind, short graceful shutdown, logs through ours, connection
    and header limits.

    ``HTTP_KEEP_ALIVE_SECONDS`` is Hypercorn's idle timer: it runs from the moment a connection
    opens or answers its last request until a whole request head has arrived, so it closes idle
    connections and slow-header clients alike. The app refuses a head over
    ``HTTP_MAX_HEADER_BYTES`` with a 431 in the standard error shape
    (:mod:`saga_orchestrator.http.limits`); Hypercorn's own buffer for a head still arriving is
    twice that (:func:`head_buffer_bytes`), so that such a head reaches the app however the
    client splits it, and a larger one is refused by Hypercorn (an empty 431) before it is
    buffered whole.
    """
    config = HypercornConfig()
    host = settings.bind_host  # HOST, or loopback for an API without its required key
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    config.bind = [f"{host}:{settings.port}"]
    config.graceful_timeout = min(HTTP_GRACEFUL_TIMEOUT, settings.shutdown_grace_seconds)
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = (
        logging.getLogger("hypercorn.access") if settings.log_level == "DEBUG" else None
    )
    config.logger_class = AccessLogger  # the API key's name in the line's user field
    config.access_log_format = ACCESS_LOG_FORMAT
    config.include_server_header = False
    config.keep_alive_timeout = settings.http_keep_alive_seconds
    config.h11_max_incomplete_size = head_buffer_bytes(settings.http_max_header_bytes)
    config.h2_max_header_list_size = head_buffer_bytes(settings.http_max_header_bytes)
    return config


def head_buffer_bytes(max_header_bytes: int) -> int:
    """Most bytes Hypercorn buffers of a request head still arriving: twice the largest head
    the app accepts (``HTTP_MAX_HEADER_BYTES``)."""
    return 2 * max_header_bytes


def _port_of(binds: Sequence[str]) -> int:
    """The port of the first address Hypercorn reports (``http://127.0.0.1:8008``)."""
    return int(binds[0].rsplit(":", 1)[1])


async def run_service(
    settings: Settings,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
    catalog: SagaCatalog | None = None,
    backend: StoreBackend | None = None,
    bus: EventBus | None = None,
) -> None:
    """Run the service until ``shutdown`` is set (or the task is cancelled).

    ``task_status.started(port)`` reports the port Hypercorn really listens on (``PORT=0``
    picks a free one) once it accepts connections. ``catalog`` defaults to
    :func:`build_catalog`; ``backend`` (tests) defaults to the one ``DATABASE_URL`` names;
    ``bus`` (tests; unopened, closed at the end) to the one ``USE_REDIS_EVENT_BUS`` names.

    Raises:
        ConfigError: ``SAGA_MODULES`` cannot be loaded.
        StoreError: the store cannot be opened.
        OSError: the address cannot be bound.
    """
    shutdown = shutdown if shutdown is not None else trio.Event()
    if catalog is None:
        catalog = build_catalog(settings)
    async with trio_asyncio.open_loop():
        if backend is None:
            from saga_orchestrator.store.open import make_backend

            backend = make_backend(
                settings.database_url,
                data_dir=settings.data_dir,
                pool_size=settings.database_pool_size,
                writers=settings.database_writers,
            )
            store_kind, store_text = settings.database_kind, describe_store(settings)
        else:
            store_kind = type(backend).__name__.removesuffix("Backend").lower() or "custom"
            store_text = store_kind
        try:
            store_ready = await _open_store(backend)
            if bus is None:
                bus = make_bus(
                    use_redis=settings.use_redis_event_bus,
                    redis_url=settings.redis_url,
                    redis_password=settings.redis_password,
                    max_length=settings.bus_max_stream_length,
                    block_ms=settings.bus_block_ms,
                )
            await bus.open()
            try:
                async with trio.open_nursery() as nursery:
                    if not store_ready:
                        nursery.start_soon(_keep_opening, backend)
                    await _run_open(
                        settings,
                        catalog,
                        backend,
                        bus,
                        (store_kind, store_text),
                        shutdown,
                        task_status,
                    )
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(BACKEND_CLOSE_TIMEOUT):
                    await bus.close()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(BACKEND_CLOSE_TIMEOUT) as scope:
                await backend.close()
            if scope.cancelled_caught:
                log.warning("closing the store took longer than %g s", BACKEND_CLOSE_TIMEOUT)
    log.info("saga orchestrator stopped")


async def _open_store(backend: StoreBackend) -> bool:
    """Open the store; False when the database cannot be reached yet. The service then starts
    anyway (not ready, sagas waiting) and :func:`_keep_opening` opens it when it answers."""
    try:
        await backend.open()
    except StoreUnavailable as exc:
        log.warning("the store cannot be reached at start-up: %s; starting without it", exc)
        return False
    return True


async def _keep_opening(backend: StoreBackend) -> None:
    """Try to open the store with backoff until it answers."""
    delay = 0.2
    while True:
        await trio.sleep(delay)
        try:
            await backend.open()
        except StoreUnavailable as exc:
            log.warning("the store still cannot be reached: %s", exc)
            delay = min(delay * 2, STORE_OPEN_RETRY_MAX)
        else:
            log.info("the store is reachable: opened")
            return


async def _run_open(
    settings: Settings,
    catalog: SagaCatalog,
    backend: StoreBackend,
    bus: EventBus,
    store: tuple[str, str],
    shutdown: trio.Event,
    task_status: trio.TaskStatus[int],
) -> None:
    async with (
        open_downstream_clients(DownstreamConfig.from_settings(settings)) as downstream_clients,
        open_actor_system(
            max_restarts=settings.supervisor_max_restarts,
            period=settings.supervisor_period_seconds,
            shutdown_grace=settings.shutdown_grace_seconds,
        ) as system,
    ):  # the clients' pool outlives the sagas that use it
        store_kind, store_text = store
        step_names: dict[Any, list[str]] = {  # by (type, version): versions differ in steps
            (d.name, d.version): [s.name for s in d.steps] for d in catalog
        }
        metrics = ServiceMetrics(step_names=step_names)
        board = make_dashboard(
            secret=settings.secret_key,
            keys=settings.named_api_keys,
            max_streams=settings.ui_live_connections,
            step_names=step_names,
        )
        waiters = SagaWaiters()
        store_handle = await start_store(
            system,
            backend,
            mailbox_size=settings.store_mailbox_size,
            max_batch=settings.store_max_batch,
        )
        coordinator_ref, coordinator = await start_coordinator(
            system,
            catalog,
            store_handle,
            options=EngineOptions.from_settings(settings),
            resources={DOWNSTREAM: downstream_clients},
            observer=FanOut(metrics, waiters, board.ring, board.hub),
        )
        export_engine(metrics, coordinator, store_handle)
        relay = await start_relay(
            system,
            store_handle,
            bus,
            batch_size=settings.relay_batch_size,
            poll_interval=settings.relay_poll_seconds,
            leader_retry=settings.relay_leader_retry_seconds,
        )
        decisions = TriggerDecisions()
        router = await start_router(
            system, bus, coordinator_ref, catalog, router_options(settings), decisions=decisions
        )
        watcher = await start_bus_watcher(
            system, bus, [settings.event_stream, settings.lifecycle_stream]
        )
        export_bus_figures(metrics, relay, router)
        export_bus_lag(metrics, watcher)
        await _log_bus(settings, bus)
        draining = Draining()
        app = create_app(
            ApiDeps(
                coordinator=coordinator_ref,
                store=store_handle,
                catalog=catalog,
                settings=settings,
                store_kind=store_kind,
                bus=bus,
                metrics=metrics,
                draining=draining,
                relay=relay,
                # the in-process bus's one reader is this router: a publish waits for it
                trigger_decisions=None if bus.durable else decisions,
                waiters=waiters,
                dashboard=board,
            )
        )
        log_auth_mode(settings)
        config = hypercorn_config(settings)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain_when_stopping, shutdown, draining, config.graceful_timeout)
            nursery.start_soon(_end_live_streams, shutdown, board)
            binds = await nursery.start(partial(serve, app, config, shutdown_trigger=shutdown.wait))
            port = _port_of(binds)
            log.info(
                "saga orchestrator listening on %s (store: %s; %d saga types; environment: %s)",
                binds[0],
                store_text,
                len(catalog.names()),
                settings.environment,
            )
            task_status.started(port)
        log.info("HTTP server stopped; stopping the actors")


async def _drain_when_stopping(
    shutdown: trio.Event, draining: Draining, graceful_timeout: float
) -> None:
    """When shutdown begins, bound the starts in flight so that each is answered before
    Hypercorn's graceful timeout cuts its connection."""
    await shutdown.wait()
    draining.begin(graceful_timeout * ANSWER_SHARE)


async def _end_live_streams(shutdown: trio.Event, board: Dashboard) -> None:
    """When shutdown begins, end the dashboard's live streams: Hypercorn's graceful shutdown
    then finds no response still streaming to a browser."""
    await shutdown.wait()
    board.hub.close()


async def _log_bus(settings: Settings, bus: EventBus) -> None:
    """Say which bus the service uses, and warn when it does not answer (the relay and the
    router keep retrying; readiness stays false until it answers)."""
    text = describe_bus(settings)
    try:
        with trio.fail_after(BUS_PING_TIMEOUT):
            await bus.ping()
    except Exception as exc:
        log.warning("event bus %s does not answer yet (%s): retrying in the background", text, exc)
    else:
        log.info("event bus: %s (stream %s)", text, settings.event_stream)
