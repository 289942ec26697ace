"""The outbox relay after a SIGKILL: every event the API accepted reaches the Redis stream.

A real server process (PostgreSQL, Redis) takes concurrent ``POST /events/publish`` calls and is
killed with SIGKILL in the middle of them, with requests in flight and, usually, outbox messages
not relayed yet. After a restart every event that got a 2xx answer is in the event store and on
the stream (XRANGE), at least once: a crash between publishing and marking sent publishes again,
so duplicates are allowed here. Every event the store committed (answered or not) reaches the
stream too, and nothing else does.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import httpx
import pytest
import redis
import trio

from saga_orchestrator.bus import BusMessage
from saga_orchestrator.http.serialize import iso_time

from ..support.server import API_KEY, free_port, server_log, server_process, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PUBLISHERS = 16
KILL_AFTER = 1000
"""Accepted events before the kill."""
START_WITHIN = 60.0
PUBLISH_WITHIN = 60.0
RELAY_WITHIN = 30.0


@attrs.define
class Publishing:
    killed: bool = False
    in_flight: int = 0
    """Requests sent and not answered yet."""
    accepted: dict[str, dict[str, Any]] = attrs.Factory(dict)
    """event id -> the 2xx answer."""
    unanswered: set[str] = attrs.Factory(set)
    """Sent when the server was killed: committed or not."""
    refused: list[str] = attrs.Factory(list)
    enough: trio.Event = attrs.Factory(trio.Event)


def correlation_of(event_id: str) -> str:
    return f"corr-{event_id}"


async def publisher(client: httpx.AsyncClient, n: int, publishing: Publishing) -> None:
    """Publish to stream ``crash-<n>`` until the server dies under it."""
    for i in range(100_000):
        event_id = f"crash-{n}-{i}"
        body = {"event_type": "crash.tested", "stream_id": f"crash-{n}", "data": {"n": n, "i": i}}
        publishing.in_flight += 1
        try:
            response = await client.post(
                "/events/publish",
                json={**body, "event_id": event_id},
                headers={"X-Correlation-ID": correlation_of(event_id)},
            )
        except httpx.TransportError:
            if not publishing.killed:
                raise
            publishing.unanswered.add(event_id)
            return
        finally:
            publishing.in_flight -= 1
        if response.is_success:
            publishing.accepted[event_id] = response.json()
            if len(publishing.accepted) >= KILL_AFTER:
                publishing.enough.set()
        else:
            publishing.refused.append(f"{response.status_code} {response.text[:200]}")


def _pg_value(dsn: str, query: str) -> Any:
    async def fetch() -> Any:
        conn = await asyncpg.connect(dsn, timeout=10, command_timeout=10)
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close(timeout=10)

    return asyncio.run(fetch())


async def unsent_outbox(dsn: str) -> int:
    query = "SELECT count(*) FROM outbox WHERE sent_at IS NULL"
    return int(await trio.to_thread.run_sync(_pg_value, dsn, query))


def _stream_entries(url: str, key: str) -> list[BusMessage]:
    with redis.Redis.from_url(url, decode_responses=True, socket_timeout=10) as client:
        return [BusMessage.from_fields(fields) for _, fields in client.xrange(key, "-", "+")]


async def on_stream(url: str, key: str) -> list[BusMessage]:
    return await trio.to_thread.run_sync(_stream_entries, url, key)


@asynccontextmanager
async def explained(tmp_path: Path, log_name: str, publishing: Publishing) -> AsyncIterator[None]:
    """A wait that times out fails with what the publishers saw and the server's log."""
    try:
        yield
    except trio.TooSlowError:
        pytest.fail(
            f"timed out with {len(publishing.accepted)} events accepted, "
            f"{len(publishing.refused)} refused {publishing.refused[-3:]}; {log_name}:\n"
            + server_log(tmp_path, log_name)[-3000:]
        )


async def stored_events(client: httpx.AsyncClient, stream_id: str) -> list[dict[str, Any]]:
    """Every event of ``stream_id``, through ``GET /events/stream``."""
    found: list[dict[str, Any]] = []
    version: int | None = 1
    while version is not None:
        response = await client.get(
            f"/events/stream/{stream_id}", params={"from_version": version, "limit": 1000}
        )
        assert 200 == response.status_code, response.text
        page = response.json()
        found.extend(page["items"])
        version = page["next_from_version"]
    return found


# A request cut off by the kill while sending its body leaves httpx's body iterator unfinished.
@pytest.mark.filterwarnings(
    r"ignore:Async generator 'httpx\._content\.ByteStream\.__aiter__' was garbage collected"
    ":ResourceWarning"
)
async def test_every_accepted_event_reaches_the_stream_after_a_sigkill(
    tmp_path: Path, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    port = free_port()
    events_key = f"{redis_prefix}events"
    env = {
        "PORT": str(port),
        "DATABASE_URL": pg_dsn,
        "USE_REDIS_EVENT_BUS": "true",
        "REDIS_URL": redis_url,
        "EVENT_STREAM": events_key,
        "LIFECYCLE_STREAM": f"{redis_prefix}lifecycle",
        "CONSUMER_GROUP": f"{redis_prefix}router",
    }
    client_options: dict[str, Any] = {
        "base_url": f"http://127.0.0.1:{port}",
        "headers": {"X-API-Key": API_KEY},
        "timeout": 10,
        "limits": httpx.Limits(max_connections=PUBLISHERS),
    }
    publishing = Publishing()
    async with (
        server_process(tmp_path, log_name="first.log", **env) as process,
        httpx.AsyncClient(**client_options) as client,
        explained(tmp_path, "first.log", publishing),
    ):
        await wait_ready(client, START_WITHIN)
        with trio.fail_after(PUBLISH_WITHIN):
            async with trio.open_nursery() as nursery:
                for n in range(PUBLISHERS):
                    nursery.start_soon(publisher, client, n, publishing)
                await publishing.enough.wait()
                publishing.killed = True
                in_flight_at_kill = publishing.in_flight
                process.kill()  # SIGKILL
                await process.wait()
    assert [] == publishing.refused, server_log(tmp_path, "first.log")[-3000:]
    accepted_at_kill = len(publishing.accepted)
    on_stream_at_kill = len(await on_stream(redis_url, events_key))
    unsent_at_kill = await unsent_outbox(pg_dsn)

    async with (
        server_process(tmp_path, log_name="second.log", **env),
        httpx.AsyncClient(**client_options) as client,
        explained(tmp_path, "second.log", publishing),
    ):
        await wait_ready(client, START_WITHIN)
        stored = {
            event["event_id"]: event
            for n in range(PUBLISHERS)
            for event in await stored_events(client, f"crash-{n}")
        }
        with trio.fail_after(RELAY_WITHIN):  # the relay publishes what the kill left unsent
            while True:
                messages = await on_stream(redis_url, events_key)
                if set(stored) <= {m.event_id for m in messages}:
                    break
                await trio.sleep(0.1)
        with trio.fail_after(RELAY_WITHIN):  # ... and marks it sent
            while await unsent_outbox(pg_dsn):
                await trio.sleep(0.1)
        messages = await on_stream(redis_url, events_key)

    times = collections.Counter(m.event_id for m in messages)
    duplicates = sum(count - 1 for count in times.values())
    committed_unanswered = publishing.unanswered & set(stored)
    print(
        f"accepted {accepted_at_kill}, in flight at the kill {in_flight_at_kill}, "
        f"unanswered {len(publishing.unanswered)} "
        f"({len(committed_unanswered)} of them committed), in the store {len(stored)}; "
        f"at the kill: {on_stream_at_kill} entries on the stream, {unsent_at_kill} outbox "
        f"messages unsent; after the restart: {len(messages)} entries, "
        f"{len(times)} distinct events, {duplicates} duplicates"
    )
    assert in_flight_at_kill > 0, "the kill came when no request was in flight"
    # every accepted event is in the event store, as it was answered
    assert set(publishing.accepted) <= set(stored)
    for event_id, answer in publishing.accepted.items():
        keys = ("stream_id", "version", "position", "recorded_at")
        assert {k: answer[k] for k in keys} == {k: stored[event_id][k] for k in keys}
    # every accepted event is on the stream; so is every committed one, and nothing else
    assert set(publishing.accepted) <= set(times)
    assert set(stored) == set(times)
    assert set(stored) <= set(publishing.accepted) | publishing.unanswered
    # each entry carries its envelope (duplicates are the same message again)
    for message in messages:
        event = stored[message.event_id]
        assert "crash.tested" == message.event_type
        assert event["data"] == message.data
        assert {
            "correlation_id": correlation_of(message.event_id),
            "stream_id": event["stream_id"],
        } == message.metadata
        assert event["recorded_at"] == iso_time(message.occurred_at)
