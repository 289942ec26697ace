"""Health routes: liveness, readiness, and the overall picture. No API key needed.

* ``GET /health/live``  — 200 when the run loop and the coordinator answer; else 503.
* ``GET /health/ready`` — 200 when the store answers a ping, the event bus (when configured)
  answers, and the coordinator has recovered the sagas in flight; else 503 naming what is not
  ready. A ready instance lists under ``degraded`` the sagas that wait for a definition version:
  no live instance drives them and this process has not loaded it (still 200).
* ``GET /health``       — status of each component; 200 when all are fine, else 503.

The bodies are status documents, not errors; they name components but carry no internal text.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio
from quart import Blueprint, Response

from saga_orchestrator import __version__
from saga_orchestrator.actors import ActorError
from saga_orchestrator.bus import StreamInfo
from saga_orchestrator.coordinator.messages import CoordinatorStatus, GetStatus

from .app import ApiDeps, deps
from .openapi import Reply, operation
from .serialize import json_response
from .views.health import (
    Alive,
    BusHealth,
    CoordinatorHealth,
    Degraded,
    Health,
    HealthComponents,
    InstancesHealth,
    InstanceView,
    NotAlive,
    NotReady,
    NotReadyComponent,
    Ready,
    StoreHealth,
)

__all__ = ["check_bus", "check_coordinator", "check_store", "health"]

log = logging.getLogger(__name__)

health = Blueprint("health", __name__)

TAG = "Health"


@attrs.frozen
class StoreCheck:
    ok: bool
    latency_ms: float
    error: str | None = None


async def check_store(svc: ApiDeps) -> StoreCheck:
    """Ping the store within ``svc.health_timeout``."""
    started = trio.current_time()
    error: str | None = None
    try:
        with trio.fail_after(svc.health_timeout):
            await svc.store.ping()
    except trio.TooSlowError:
        error = f"did not answer within {svc.health_timeout:g} s"
    except Exception as exc:  # any failure of the probe is "not healthy", never a 500
        log.warning("health: store ping failed: %s: %s", type(exc).__name__, exc)
        error = f"ping failed ({type(exc).__name__})"
    latency = round((trio.current_time() - started) * 1000, 3)
    return StoreCheck(ok=error is None, latency_ms=latency, error=error)


@attrs.frozen
class BusCheck:
    ok: bool
    latency_ms: float
    info: StreamInfo | None = None
    error: str | None = None


async def check_bus(svc: ApiDeps) -> BusCheck | None:
    """Ping the bus and read the event stream's figures within ``svc.health_timeout``;
    ``None`` when no bus is configured."""
    if svc.bus is None:
        return None
    started = trio.current_time()
    info: StreamInfo | None = None
    error: str | None = None
    try:
        with trio.fail_after(svc.health_timeout):
            await svc.bus.ping()
            latency = round((trio.current_time() - started) * 1000, 3)
            info = await svc.bus.info(svc.settings.event_stream, svc.settings.consumer_group)
    except trio.TooSlowError:
        error = f"did not answer within {svc.health_timeout:g} s"
    except Exception as exc:  # any failure of the probe is "not healthy", never a 500
        log.warning("health: bus check failed: %s: %s", type(exc).__name__, exc)
        error = f"check failed ({type(exc).__name__})"
    if error is not None:
        latency = round((trio.current_time() - started) * 1000, 3)
    return BusCheck(ok=error is None, latency_ms=latency, info=info, error=error)


def _bus_view(svc: ApiDeps, bus: BusCheck | None) -> BusHealth:
    if bus is None:
        return BusHealth(status="not configured")
    assert svc.bus is not None
    info = bus.info
    figures = (
        {}
        if info is None
        else {
            "stream": info.stream,
            "length": info.length,
            "pending": info.pending,
            "lag": info.lag,
            "dead_letters": info.dead_letters,
            "consumers": info.consumers,
        }
    )
    return BusHealth(
        status="ok" if bus.ok else "error",
        kind=svc.bus.kind,
        latency_ms=bus.latency_ms,
        relay_leader=None if svc.relay is None else svc.relay.is_leader,
        error=bus.error,
        **figures,
    )


async def check_coordinator(svc: ApiDeps) -> CoordinatorStatus | None:
    """The coordinator's status, or ``None`` when it does not answer in time."""
    try:
        return await svc.coordinator.ask(GetStatus(), timeout=svc.health_timeout)
    except ActorError as exc:
        log.warning("health: the coordinator did not answer: %s", exc)
        return None


async def _check_all(
    svc: ApiDeps,
) -> tuple[StoreCheck, CoordinatorStatus | None, BusCheck | None]:
    results: dict[str, Any] = {}

    async def store() -> None:
        results["store"] = await check_store(svc)

    async def coordinator() -> None:
        results["coordinator"] = await check_coordinator(svc)

    async def bus() -> None:
        results["bus"] = await check_bus(svc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store)
        nursery.start_soon(coordinator)
        nursery.start_soon(bus)
    return results["store"], results["coordinator"], results["bus"]


def _probe(summary: str, ok: tuple[str, Any], failing: tuple[str, Any]) -> Any:
    """The operation of a health route: open, 200 ``ok`` or 503 ``failing`` (description,
    body class)."""
    return operation(
        summary=summary,
        tag=TAG,
        public=True,
        replies=[
            Reply(status=200, description=ok[0], body=ok[1]),
            Reply(status=503, description=failing[0], body=failing[1]),
        ],
    )


@health.get("/health/live")
@_probe(
    "Liveness: the run loop and the coordinator answer",
    ("Alive.", Alive),
    ("The coordinator does not answer.", NotAlive),
)
async def live() -> Response:
    if await check_coordinator(deps()) is None:
        return json_response(
            NotAlive(status="unavailable", reason="the coordinator does not answer"), 503
        )
    return json_response(Alive(status="alive"))


@health.get("/health/ready")
@_probe(
    "Readiness: the store and the bus answer, and recovery is done",
    ("Ready.", Ready),
    ("Not ready, and why.", NotReady),
)
async def ready() -> Response:
    store, status, bus = await _check_all(deps())
    not_ready = []
    if not store.ok:
        not_ready.append(NotReadyComponent(component="store", reason=str(store.error)))
    if bus is not None and not bus.ok:
        not_ready.append(NotReadyComponent(component="bus", reason=str(bus.error)))
    if status is None:
        not_ready.append(NotReadyComponent(component="coordinator", reason="does not answer"))
    elif not status.recovered:
        not_ready.append(
            NotReadyComponent(
                component="coordinator", reason="recovery of the sagas in flight is not done"
            )
        )
    elif not status.lease_holds:
        not_ready.append(
            NotReadyComponent(
                component="coordinator",
                reason="this instance's leases do not hold (it cannot renew them in the store)",
            )
        )
    if not_ready:
        return json_response(NotReady(status="not_ready", not_ready=not_ready), 503)
    assert status is not None
    return json_response(Ready(status="ready", degraded=_degraded(status) or None))


def _degraded(status: CoordinatorStatus) -> list[Degraded]:
    """The sagas that wait for a definition version this process has not loaded."""
    return [
        Degraded(
            component="definitions",
            saga_type=saga_type,
            saga_version=version,
            count=count,
            reason=f"{count} active {saga_type} sagas on version {version} wait for their "
            "definition: no live instance drives them and this process has not loaded that "
            "version; deploy a process that loads it (SAGA_MODULES)",
        )
        for saga_type, version, count in status.waiting_for_definition
    ]


@health.get("/health")
@_probe("Every component's status", ("All healthy.", Health), ("Some component is not.", Health))
async def overall() -> Response:
    svc = deps()
    store, status, bus = await _check_all(svc)
    store_view = StoreHealth(
        status="ok" if store.ok else "error",
        kind=svc.store_kind,
        latency_ms=store.latency_ms,
        failed_batches=svc.store.stats.failed_batches,
        error=store.error,
    )
    if status is None:
        coordinator = CoordinatorHealth(status="error", error="does not answer")
    else:
        coordinator = CoordinatorHealth(
            status="ok" if status.recovered else "recovering",
            active_sagas=status.active_sagas,
            max_active_sagas=status.max_active_sagas,
            recovered=status.recovered,
            recovered_sagas=status.recovered_sagas,
            mailbox_depth=status.mailbox_depth,
            saga_types=len(status.saga_types),
            instance_id=status.instance_id or None,
            lease_holds=status.lease_holds,
        )
    healthy = store.ok and status is not None and status.recovered and (bus is None or bus.ok)
    body = Health(
        status="ok" if healthy else "unavailable",
        version=__version__,
        components=HealthComponents(
            store=store_view,
            coordinator=coordinator,
            bus=_bus_view(svc, bus),
            instances=_instances_view(status),
        ),
    )
    return json_response(body, 200 if healthy else 503)


def _instances_view(status: CoordinatorStatus | None) -> InstancesHealth:
    live = [] if status is None else list(status.live_instances)
    return InstancesHealth(
        count=len(live),
        live=[
            InstanceView(
                instance_id=i.instance_id,
                host=_text_or_none(i.info.get("host")),
                pid=i.info.get("pid") if isinstance(i.info.get("pid"), int) else None,
                version=_text_or_none(i.info.get("version")),
                started_at=i.started_at,
                heartbeat_at=i.heartbeat_at,
                expires_at=i.expires_at,
            )
            for i in live
        ],
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
