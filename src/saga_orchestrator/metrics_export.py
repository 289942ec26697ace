"""The figures the service's actors keep, exported as Prometheus metrics read at scrape time:
the engine's (active sagas, mailboxes, store batches), this instance's among those sharing the
store (ownership, leases, forwarded commands), and the bus's (relay, router, consumer, lag)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from saga_orchestrator.bus import GroupFigures, OutboxRelay, StreamFigures
from saga_orchestrator.bus.watcher import BusWatcher
from saga_orchestrator.coordinator.coordinator import Coordinator
from saga_orchestrator.coordinator.router import EventRouter
from saga_orchestrator.metrics import ServiceMetrics
from saga_orchestrator.store.actor import Store

__all__ = ["export_bus_figures", "export_bus_lag", "export_engine", "export_ownership"]


def export_engine(metrics: ServiceMetrics, coordinator: Coordinator, store: Store) -> None:
    """Scrape-time gauges, and the store's per-batch figures."""
    store.stats.on_batch = metrics.store_batch
    metrics.gauge(
        "saga_active", "Sagas starting or running.", lambda: {"all": coordinator.active_sagas}
    )
    metrics.gauge(
        "actor_mailbox_depth",
        "Messages waiting in an actor's mailbox.",
        lambda: {"coordinator": coordinator.mailbox_depth, "store": store.ref.depth},
    )
    export_ownership(metrics, coordinator)
    stats = store.stats
    metrics.counter(
        "store_batches",
        "Store transactions (batches of appends), by outcome.",
        lambda: {"committed": stats.batches, "failed": stats.failed_batches},
    )
    metrics.counter(
        "store_outbox_messages",
        "Outbox messages committed (published events and saga lifecycle events).",
        lambda: {"committed": stats.outbox_messages},
    )


def export_ownership(metrics: ServiceMetrics, coordinator: Coordinator) -> None:
    """This instance among those sharing the store: what it owns, claims, forwards."""
    metrics.gauge(
        "instances_live",
        "Instances sharing the store whose leases hold (as read at the last heartbeat).",
        lambda: {"all": len(coordinator.lease.live) if coordinator.lease is not None else 0},
    )
    metrics.gauge(
        "saga_owned",
        "Sagas this instance drives (an actor runs for each).",
        lambda: {"this_instance": len(coordinator.sagas.actors) if coordinator.sagas else 0},
    )
    metrics.gauge(
        "saga_waiting_for_definition",
        "Active sagas no live instance drives whose definition version this process has not "
        "loaded (deploy a process that loads it), as of the last look.",
        lambda: (
            {
                (saga_type, str(version)): count
                for (saga_type, version), count in coordinator.ownership.waiting.items()
            }
            if coordinator.ownership
            else {}
        ),
        label=("saga_type", "saga_version"),
    )
    metrics.counter(
        "saga_claims",
        "Sagas this instance claimed, by cause: recovery (start-up, a lost lease), failover "
        "(a dead instance's), hand-over (released by an instance that shut down), command.",
        lambda: dict(coordinator.ownership.claims) if coordinator.ownership else {},
        label="cause",
    )
    metrics.counter(
        "instance_lease_renewals",
        "Heartbeats of this instance: renewed, failed (retried), lost (its sagas stopped).",
        lambda: {} if coordinator.lease is None else {
            "renewed": coordinator.lease.stats.renewals,
            "failed": coordinator.lease.stats.failed_renewals,
            "lost": coordinator.lease.stats.lost,
        },
    )  # fmt: skip
    metrics.counter(
        "saga_commands_forwarded",
        "Commands for sagas another instance drives: sent from here, applied here for "
        "another, unanswered in time (they stay pending).",
        lambda: {} if coordinator.forwarding is None else {
            "sent": coordinator.forwarding.stats.sent,
            "applied": coordinator.forwarding.stats.applied,
            "unanswered": coordinator.forwarding.stats.unanswered,
        },
    )  # fmt: skip


def export_bus_figures(metrics: ServiceMetrics, relay: OutboxRelay, router: EventRouter) -> None:
    """The relay's, router's and bus consumer's counts, read at scrape time."""
    metrics.counter(
        "outbox_relayed",
        "Outbox events published to the bus, and marked sent.",
        lambda: {"published": relay.stats.published, "marked_sent": relay.stats.marked_sent},
    )
    metrics.gauge(
        "outbox_in_flight",
        "Outbox events published, not yet marked sent.",
        lambda: {"relay": relay.stats.in_flight},
    )
    metrics.gauge(
        "outbox_relay_leader",
        "1 while this process's outbox relay leads (publishes the database's outbox), else 0.",
        lambda: {"relay": 1.0 if relay.is_leader else 0.0},
    )
    metrics.counter(
        "outbox_relay_leader_changes",
        "Times this process's outbox relay became the leader, lost the leadership, or released "
        "it (stopping).",
        lambda: relay.stats.leader_changes,
        label="change",
    )
    metrics.counter(
        "router_events",
        "Events the router handled, by what it did with them.",
        lambda: {
            "started": router.stats.started,
            "repeated": router.stats.repeated,
            "delivered": router.stats.delivered,
            "dropped": router.stats.dropped,
        },
    )
    consumer = router.consumer_stats
    metrics.counter(
        "bus_consumer_events",
        "Bus entries the router's consumer read, by outcome.",
        lambda: {
            "handled": consumer.handled,
            "failed": consumer.failed,
            "rejected": consumer.rejected,
            "dead_lettered": consumer.dead_lettered,
            "dead_lettered_before": consumer.repeated_dead_letters,
            "claimed": consumer.claimed,
        },
    )
    metrics.gauge(
        "bus_consumer_paused",
        "1 while the router waits for room (admission limit), else 0.",
        lambda: {"router": 1.0 if consumer.paused else 0.0},
    )


_STREAM_GAUGES: tuple[tuple[str, str, Callable[[StreamFigures], float]], ...] = (
    ("bus_stream_length", "Entries in a bus stream.", lambda s: s.length),
    ("bus_dead_letters", "Entries in a stream's dead-letter stream.", lambda s: s.dead_letters),
)
_GROUP_GAUGES: tuple[tuple[str, str, Callable[[GroupFigures], float | None]], ...] = (
    (
        "bus_group_pending",
        "Entries delivered to a consumer group and not acknowledged yet.",
        lambda g: g.pending,
    ),
    (
        "bus_group_oldest_pending_age_seconds",
        "Seconds since the oldest entry pending in a consumer group was added (0: none).",
        lambda g: g.oldest_pending_age or 0.0,
    ),
    (
        "bus_group_lag",
        "Entries a consumer group has not been given yet (absent when the bus cannot tell).",
        lambda g: g.lag,
    ),
    ("bus_group_consumers", "Consumers of a consumer group.", lambda g: g.consumers),
)


def export_bus_lag(metrics: ServiceMetrics, watcher: BusWatcher) -> None:
    """The bus figures of every stream the service writes and of each of its consumer groups
    (the router's and any other), as the watcher last read them (see ``bus/watcher.py``: a
    scrape never waits on the bus)."""

    def by_stream(read: Callable[[StreamFigures], float]) -> Callable[[], dict[Any, float]]:
        return lambda: {s.stream: read(s) for s in watcher.figures.values()}

    def by_group(read: Callable[[GroupFigures], float | None]) -> Callable[[], dict[Any, float]]:
        return lambda: {
            (s.stream, g.group): value
            for s in watcher.figures.values()
            for g in s.groups
            if (value := read(g)) is not None
        }

    for name, help_text, stream_value in _STREAM_GAUGES:
        metrics.gauge(name, help_text, by_stream(stream_value), label="stream")
    for name, help_text, group_value in _GROUP_GAUGES:
        metrics.gauge(name, help_text, by_group(group_value), label=("stream", "group"))
    metrics.gauge(
        "bus_figures_age_seconds",
        "Seconds since the bus figures were read (grows while the bus does not answer).",
        lambda: {} if (age := watcher.age()) is None else {watcher.bus.kind: age},
        label="bus",
    )
