"""Response shapes of the health routes (:mod:`..routes_health`)."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from ..schema import api_field


@attrs.frozen(kw_only=True)
class Alive:
    """The run loop and the coordinator answer."""

    status: Literal["alive"]


@attrs.frozen(kw_only=True)
class NotAlive:
    """The coordinator does not answer."""

    status: Literal["unavailable"]
    reason: str


def _omitted(doc: str | None = None) -> Any:
    return api_field(default=None, omit_if_none=True, doc=doc)


@attrs.frozen(kw_only=True)
class Degraded:
    """Something the instance cannot do although it is ready: active sagas wait for a
    definition version no running process has loaded."""

    component: Literal["definitions"]
    saga_type: str
    saga_version: int
    count: int = api_field(doc="Active sagas on this type and version that no instance drives.")
    reason: str = api_field(doc="What is wrong and what to do.")


@attrs.frozen(kw_only=True)
class Ready:
    """The store and the bus answer, and recovery is done."""

    status: Literal["ready"]
    degraded: list[Degraded] | None = _omitted(
        "Left out when nothing is degraded. The instance is ready all the same (200)."
    )


@attrs.frozen(kw_only=True)
class NotReadyComponent:
    """A component that is not ready, and why."""

    component: Literal["store", "bus", "coordinator"]
    reason: str


@attrs.frozen(kw_only=True)
class NotReady:
    """What is not ready."""

    status: Literal["not_ready"]
    not_ready: list[NotReadyComponent]


@attrs.frozen(kw_only=True)
class StoreHealth:
    """The event store."""

    status: Literal["ok", "error"]
    kind: str = api_field(doc="`sqlite`, `postgresql` or `memory`.")
    latency_ms: float = api_field(doc="How long its ping took.")
    failed_batches: int = api_field(
        doc="Store transactions (batches of appends) that failed since the process started; "
        "each of their appends was answered with the error."
    )
    error: str | None = _omitted("Why it is not ok.")


@attrs.frozen(kw_only=True)
class CoordinatorHealth:
    """The coordinator; its figures are left out when it does not answer."""

    status: Literal["ok", "recovering", "error"]
    active_sagas: int | None = _omitted()
    max_active_sagas: int | None = _omitted()
    recovered: bool | None = _omitted("Recovery of the sagas in flight is done.")
    recovered_sagas: int | None = _omitted()
    mailbox_depth: int | None = _omitted()
    saga_types: int | None = _omitted("How many saga types it runs.")
    instance_id: str | None = _omitted("This instance's id among those sharing the store.")
    lease_holds: bool | None = _omitted(
        "Whether this instance's leases hold (it may start and drive sagas)."
    )
    error: str | None = _omitted("Why it is not ok.")


@attrs.frozen(kw_only=True)
class InstanceView:
    """A live instance sharing the store."""

    instance_id: str
    host: str | None = _omitted()
    pid: int | None = _omitted()
    version: str | None = _omitted()
    started_at: float = api_field(doc="Database time it registered (epoch seconds).")
    heartbeat_at: float = api_field(doc="Database time of its last heartbeat.")
    expires_at: float = api_field(doc="Database time its leases end unless it renews them.")


@attrs.frozen(kw_only=True)
class InstancesHealth:
    """The instances sharing the store (read at this instance's last heartbeat)."""

    count: int
    live: list[InstanceView]


@attrs.frozen(kw_only=True)
class BusHealth:
    """The event bus; its figures are left out when it is not configured or does not answer."""

    status: Literal["ok", "error", "not configured"]
    kind: str | None = _omitted("`redis` or `in-process`.")
    latency_ms: float | None = _omitted("How long its ping took.")
    stream: str | None = _omitted()
    length: int | None = _omitted()
    pending: int | None = _omitted("Delivered, not acknowledged.")
    lag: int | None = _omitted("Not delivered yet (left out when the bus cannot tell).")
    dead_letters: int | None = _omitted()
    consumers: int | None = _omitted()
    relay_leader: bool | None = _omitted(
        "Whether this instance's outbox relay leads, i.e. publishes the store's outbox (one "
        "instance per database does; always true on SQLite)."
    )
    error: str | None = _omitted("Why it is not ok.")


@attrs.frozen(kw_only=True)
class HealthComponents:
    store: StoreHealth
    coordinator: CoordinatorHealth
    bus: BusHealth
    instances: InstancesHealth


@attrs.frozen(kw_only=True)
class Health:
    """Every component's status."""

    status: Literal["ok", "unavailable"]
    version: str
    components: HealthComponents
