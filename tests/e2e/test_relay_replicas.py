"""Three server processes on one PostgreSQL database and one Redis: one outbox relay publishes.

Events are published through the API of all three and sagas started on each (their lifecycle
events go through the outbox too). Without faults every outbox message reaches its Redis
stream exactly once (counted by event id). With the relay leader killed by SIGKILL mid-run, a
standby takes over, every message still reaches the stream, and the only duplicates are what
the killed leader had published and not marked sent: at most one relay batch.
"""

from __future__ import annotations

import collections
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from saga_orchestrator.bus import BusMessage
from tests.support.pg import pg_fetch

from ..bus.test_relay_crash import on_stream
from ..support.processes import ServerProcess, SpreadClient, open_replicas

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPLICAS = 3
BATCH = 20
"""``RELAY_BATCH_SIZE``: small, so that the duplicate bound means something."""
EVENTS = 300
SAGAS = 30
SETTLE_WITHIN = 60.0
LIFECYCLE_PER_SAGA = 4
"""``test_two_steps``: saga.started, saga.step.completed twice, saga.completed."""


@attrs.define
class Replica:
    name: str
    server: ServerProcess
    client: httpx.AsyncClient

    async def health(self) -> dict[str, Any]:
        response = await self.client.get("/health")
        return response.json()

    async def leads(self) -> bool:
        return bool((await self.health())["components"]["bus"].get("relay_leader"))


@attrs.define
class Traffic:
    """What the API accepted."""

    events: set[str] = attrs.Factory(set)
    sagas: dict[str, str] = attrs.Factory(dict)
    """saga id -> the replica that started it."""
    unanswered: set[str] = attrs.Factory(set)
    """Publishes sent to the killed replica that got no answer (committed or not)."""


@asynccontextmanager
async def replicas(
    tmp_path: Path, pg_dsn: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[list[Replica], dict[str, str]]]:
    """Three servers on one database and one Redis (streams under ``redis_prefix``), ready;
    stopped at the end. Also yields the stream names by topic role."""
    streams = {"events": f"{redis_prefix}events", "lifecycle": f"{redis_prefix}lifecycle"}
    env = {
        "DATABASE_URL": pg_dsn,
        "USE_REDIS_EVENT_BUS": "true",
        "REDIS_URL": redis_url,
        "EVENT_STREAM": streams["events"],
        "LIFECYCLE_STREAM": streams["lifecycle"],
        "CONSUMER_GROUP": f"{redis_prefix}router",
        "RELAY_BATCH_SIZE": str(BATCH),
        "RELAY_POLL_SECONDS": "0.2",
        "RELAY_LEADER_RETRY_SECONDS": "0.5",
        # a killed replica's sagas are taken over soon (saga ownership)
        "INSTANCE_HEARTBEAT_SECONDS": "0.5",
        "INSTANCE_EXPIRY_SECONDS": "2",
        "FAILOVER_SCAN_SECONDS": "0.5",
    }
    async with (
        open_replicas(tmp_path, env, REPLICAS) as running,
        SpreadClient(running.urls, timeout=10) as spread,
    ):
        yield (
            [
                Replica(server.name, server, client)
                for server, client in zip(running.servers, spread.clients, strict=True)
            ],
            streams,
        )


async def publish(replica: Replica, traffic: Traffic, event_id: str, *, dying: bool) -> None:
    body = {
        "event_type": "replica.tested",
        "stream_id": f"replicated-{event_id.rsplit('-', 1)[0]}",
        "event_id": event_id,
        "data": {"id": event_id},
    }
    try:
        response = await replica.client.post("/events/publish", json=body)
    except httpx.TransportError:
        if not dying:
            raise
        traffic.unanswered.add(event_id)
        return
    assert 202 == response.status_code, response.text
    traffic.events.add(event_id)


async def start_saga(replica: Replica, traffic: Traffic, n: int) -> None:
    body = {"saga_type": "test_two_steps", "data": {"name": f"n{n}"}}
    response = await replica.client.post("/sagas/start", json=body)
    assert 202 == response.status_code, response.text
    traffic.sagas[response.json()["saga_id"]] = replica.name


async def send(
    targets: list[Replica], traffic: Traffic, label: str, count: int, *, dying: Replica | None
) -> None:
    """``count`` publishes and ``count // 10`` saga starts spread over ``targets``, 8 at a
    time; a request to ``dying`` may go unanswered."""
    limiter = trio.CapacityLimiter(8)

    async def one(n: int) -> None:
        replica = targets[n % len(targets)]
        async with limiter:
            await publish(replica, traffic, f"{label}-{n}", dying=replica is dying)
            if n % 10 == 0 and replica is not dying:
                await start_saga(replica, traffic, n)

    async with trio.open_nursery() as nursery:
        for n in range(count):
            nursery.start_soon(one, n)


async def settled(alive: Replica, traffic: Traffic, pg_dsn: str) -> list[Any]:
    """Wait until every saga has completed (a killed replica's too: another takes it over) and
    the outbox is all sent; the outbox rows (event id, topic, sent at)."""
    with trio.fail_after(SETTLE_WITHIN):
        for saga_id in traffic.sagas:
            while (await alive.client.get(f"/sagas/{saga_id}")).json()["status"] != "completed":
                await trio.sleep(0.1)
        while (await pg_fetch(pg_dsn, "SELECT count(*) FROM outbox WHERE sent_at IS NULL"))[0][0]:
            await trio.sleep(0.1)
    return await pg_fetch(pg_dsn, "SELECT event_id, topic, sent_at FROM outbox ORDER BY id")


async def stream_counts(redis_url: str, streams: dict[str, str]) -> dict[str, collections.Counter]:
    """How often each event id is on each stream, by stream name."""
    counts: dict[str, collections.Counter] = {}
    for key in streams.values():
        messages: list[BusMessage] = await on_stream(redis_url, key)
        counts[key] = collections.Counter(m.event_id for m in messages)
    return counts


async def test_three_replicas_publish_every_message_exactly_once(
    tmp_path: Path, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    traffic = Traffic()
    async with replicas(tmp_path, pg_dsn, redis_url, redis_prefix) as (running, streams):
        await send(running, traffic, "calm", EVENTS, dying=None)
        outbox = await settled(running[0], traffic, pg_dsn)
        counts = await stream_counts(redis_url, streams)
        leaders = [r.name for r in running if await r.leads()]

    assert EVENTS == len(traffic.events)
    assert SAGAS == len(traffic.sagas)
    assert EVENTS + LIFECYCLE_PER_SAGA * SAGAS == len(outbox)
    by_topic = collections.defaultdict(set)
    for event_id, topic, _ in outbox:
        by_topic[topic].add(event_id)
    assert traffic.events == by_topic[streams["events"]]
    for topic, ids in by_topic.items():  # every message exactly once, nothing else
        twice = {event_id: n for event_id, n in counts[topic].items() if n > 1}
        assert {} == twice, f"{len(twice)} of {len(ids)} messages of {topic} published again"
        assert ids == set(counts[topic]), topic
    assert 1 == len(leaders), leaders


# A request cut off by the kill while sending its body leaves httpx's body iterator unfinished.
@pytest.mark.filterwarnings(
    r"ignore:Async generator 'httpx\._content\.ByteStream\.__aiter__' was garbage collected"
    ":ResourceWarning"
)
async def test_a_standby_takes_over_from_a_killed_leader_and_nothing_is_lost(
    tmp_path: Path, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    traffic = Traffic()
    async with replicas(tmp_path, pg_dsn, redis_url, redis_prefix) as (running, streams):
        await send(running, traffic, "before", EVENTS // 2, dying=None)
        [leader] = [r for r in running if await r.leads()]
        survivors = [r for r in running if r is not leader]
        async with trio.open_nursery() as nursery:  # the kill comes while all three publish
            nursery.start_soon(lambda: send(running, traffic, "during", EVENTS // 2, dying=leader))
            await trio.sleep(0.3)
            killed_at = time.time()
            await leader.server.kill_for_good()  # SIGKILL
        await send(survivors, traffic, "after", EVENTS // 2, dying=None)
        outbox = await settled(survivors[0], traffic, pg_dsn)
        counts = await stream_counts(redis_url, streams)
        new_leaders = [r for r in survivors if await r.leads()]
        metrics = (await new_leaders[0].client.get("/metrics")).text if new_leaders else ""

    assert 1 == len(new_leaders), [r.name for r in survivors]
    assert 'outbox_relay_leader{name="relay"} 1.0' in metrics
    assert 'outbox_relay_leader_changes_total{change="acquired"} 1.0' in metrics
    by_topic = collections.defaultdict(set)
    for event_id, topic, _ in outbox:
        by_topic[topic].add(event_id)
    # every accepted event, and every committed message, is on its stream; nothing else is
    assert traffic.events <= by_topic[streams["events"]]
    assert by_topic[streams["events"]] <= traffic.events | traffic.unanswered
    for topic, ids in by_topic.items():
        assert ids == set(counts[topic]), topic
    # duplicates: only the batch the killed leader had published and not marked sent
    duplicates = {
        event_id: times
        for count in counts.values()
        for event_id, times in count.items()
        if times > 1
    }
    print(
        f"{len(traffic.events)} events accepted, {len(traffic.unanswered)} unanswered, "
        f"{len(outbox)} outbox messages, {len(duplicates)} published twice"
    )
    assert all(2 == times for times in duplicates.values()), duplicates
    assert len(duplicates) <= BATCH, duplicates
    sent_at = {event_id: at for event_id, _, at in outbox}
    assert all(sent_at[event_id] > killed_at for event_id in duplicates)  # the killed leader
    # had published them and not marked them sent: the new leader did
