"""The event endpoints: publish (202, idempotent repeat, 409, 422), reads, types, replay (never
a second saga), the bus in the health check, and end to end on Redis through a real server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from saga_orchestrator.bus import EventBus, InProcessBus, RedisStreamsBus, dead_letter_stream
from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.router import trigger_key
from saga_orchestrator.errors import BusUnavailable, StoreUnavailable
from saga_orchestrator.http.app import ApiDeps, create_app
from saga_orchestrator.service import run_service
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import SagaRecord
from saga_orchestrator.store.sqlite import SQLiteBackend
from tests.bus.harness import (
    EVENTS,
    GROUP,
    LIFECYCLE,
    ONBOARDING,
    SAGAS,
    EventPath,
    event_path,
)

KEY = "events-test-key"
REDIS = pytest.param("redis", marks=pytest.mark.integration, id="redis")
JSON = {"Content-Type": "application/json"}


@attrs.frozen
class EventsApi:
    client: Any
    path: EventPath


@asynccontextmanager
async def open_events_api(
    *,
    bus: EventBus | None = None,
    backend: StoreBackend | None = None,
    api_key: str | None = None,
    wait_for_router: bool | None = None,
) -> AsyncIterator[EventsApi]:
    bus = bus if bus is not None else InProcessBus()
    async with event_path(bus, SAGAS, backend=backend) as path:
        deps = ApiDeps(
            coordinator=path.coordinator_ref,
            store=path.store,
            catalog=path.catalog,
            settings=Settings(
                environment="test", event_stream=EVENTS, consumer_group=GROUP, api_key=api_key
            ),
            bus=bus,
            # as the service does: wait for this router when the bus is in-process
            trigger_decisions=path.decisions
            if (not bus.durable if wait_for_router is None else wait_for_router)
            else None,
        )
        yield EventsApi(create_app(deps).test_client(), path)


def registered(user_id: str = "u-1", **extra: Any) -> dict[str, Any]:
    return {
        "event_type": "user.registered",
        "stream_id": f"user-{user_id}",
        "data": {"user_id": user_id, "email": f"{user_id}@example.com"},
        **extra,
    }


async def publish(api: EventsApi, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    response = await api.client.post("/events/publish", json=body, headers=headers)
    return response.status_code, await response.get_json()


# -- publish and read back ----------------------------------------------------------------------


async def test_publish_appends_the_event_and_it_reads_back() -> None:
    async with open_events_api() as api:
        response = await api.client.post(
            "/events/publish",
            json=registered(metadata={"causation_id": "form-1"}),
            headers={"X-Correlation-ID": "req-42"},
        )
        assert 202 == response.status_code
        body = await response.get_json()
        assert {
            "stream_id": "user-u-1",
            "version": 1,
            "type": "user.registered",
            "data": {"user_id": "u-1", "email": "u-1@example.com"},
            "metadata": {"causation_id": "form-1", "correlation_id": "req-42"},
            "created": True,
        } == {k: body[k] for k in ("stream_id", "version", "type", "data", "metadata", "created")}
        location = response.headers["Location"]
        assert "/events/stream/user-u-1?from_version=1&limit=1" == location

        stream = await (await api.client.get(location)).get_json()
        assert [body["event_id"]] == [e["event_id"] for e in stream["items"]]
        assert 2 == stream["next_from_version"]  # a full page: there may be more

        everything = await (
            await api.client.get("/events/all?event_type=user.registered")
        ).get_json()
        assert [body["event_id"]] == [e["event_id"] for e in everything["items"]]
        assert body["position"] == everything["items"][0]["position"]


async def test_a_published_trigger_event_starts_its_saga_through_the_outbox() -> None:
    async with open_events_api() as api:
        status, body = await publish(api, registered("u-7"))
        assert 202 == status
        [saga] = await api.path.wait_for_sagas(ONBOARDING.name, 1)
        assert [saga.saga_id] == body["saga_ids"]  # in-process: decided before the answer
        assert body["event_id"] == saga.trigger_event_id
        assert trigger_key(body["event_id"], ONBOARDING.name) == saga.idempotency_key
        assert {"user_id": "u-7"} == saga.input
        await api.path.wait_status(saga.saga_id, ["completed"])


class KeysUnreadable(MemoryBackend):
    """A store that cannot look sagas up by key (its reads fail) while appends go through."""

    async def find_saga_by_key(self, idempotency_key: str) -> SagaRecord | None:
        raise StoreUnavailable("the read pool is reconnecting")


async def test_a_stored_event_is_answered_even_when_its_sagas_cannot_be_looked_up() -> None:
    async with open_events_api(backend=KeysUnreadable(), wait_for_router=False) as api:
        status, body = await publish(api, registered("u-8", event_id="evt-8"))
        assert (202, None) == (status, body["saga_ids"])  # not a 503: the event is durable
        assert "/sagas/?trigger_event_id=evt-8" == body["sagas_link"]
        assert 1 == len(await api.path.store.read_stream("user-u-8"))


async def test_expected_version_conflicts_are_409() -> None:
    async with open_events_api() as api:
        assert 202 == (await publish(api, registered(expected_version=0)))[0]
        status, body = await publish(api, registered(expected_version=0))
        assert 409 == status
        assert "concurrency_conflict" == body["error"]["code"]
        status, body = await publish(api, registered(expected_version=1))
        assert (202, 2) == (status, body["version"])


async def test_a_repeated_event_id_returns_the_stored_event() -> None:
    async with open_events_api() as api:
        first_status, first = await publish(api, registered(event_id="evt-a", expected_version=0))
        again_status, again = await publish(api, registered(event_id="evt-a", expected_version=0))
        assert (202, 200) == (first_status, again_status)
        assert {**first, "created": False} == again
        assert 1 == len(again["saga_ids"])  # the router decided before the first answer
        assert f"/sagas/?trigger_event_id={first['event_id']}" == again["sagas_link"]
        changed = registered(event_id="evt-a", expected_version=0, data={"user_id": "other"})
        status, body = await publish(api, changed)
        assert (409, "conflict") == (status, body["error"]["code"])
        assert 1 == len(await api.path.store.read_stream("user-u-1"))


async def test_a_repeated_event_id_without_expected_version_on_a_durable_store(
    tmp_path: Path,
) -> None:
    async with open_events_api(backend=SQLiteBackend(tmp_path / "store.db")) as api:
        assert 202 == (await publish(api, registered(event_id="evt-b")))[0]
        status, body = await publish(api, registered(event_id="evt-b"))
        assert (200, False, 1) == (status, body["created"], body["version"])
        assert 1 == len(await api.path.store.read_stream("user-u-1"))
        await api.path.wait_for_sagas(ONBOARDING.name, 1)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ([], ["body"]),
        ({}, ["event_type", "stream_id", "data"]),
        ({**registered(), "extra": 1}, ["extra"]),
        ({**registered(), "event_type": ""}, ["event_type"]),
        ({**registered(), "event_type": "has space"}, ["event_type"]),
        ({**registered(), "stream_id": 7}, ["stream_id"]),
        ({**registered(), "stream_id": "saga-123"}, ["stream_id"]),
        ({**registered(), "data": "text"}, ["data"]),
        ({**registered(), "metadata": [1]}, ["metadata"]),
        ({**registered(), "expected_version": -1}, ["expected_version"]),
        ({**registered(), "expected_version": True}, ["expected_version"]),
        ({**registered(), "event_id": "x" * 256}, ["event_id"]),
    ],
)
async def test_bad_publish_bodies_are_422_naming_each_field(body: Any, fields: list[str]) -> None:
    async with open_events_api() as api:
        status, answer = await publish(api, body)
    assert 422 == status
    assert "validation_error" == answer["error"]["code"]
    assert sorted(fields) == sorted(d["field"] for d in answer["error"]["details"])


async def test_a_body_that_is_not_json_is_400() -> None:
    async with open_events_api() as api:
        response = await api.client.post("/events/publish", data="{nope", headers=JSON)
        assert 400 == response.status_code
        assert "invalid_json" == (await response.get_json())["error"]["code"]


@pytest.mark.parametrize(
    "url",
    [
        "/events/all?after_position=-1",
        "/events/all?limit=0",
        "/events/all?limit=1001",
        "/events/all?unknown=1",
        "/events/stream/s-1?from_version=0",
        "/events/stream/s-1?limit=x",
    ],
)
async def test_bad_queries_are_400(url: str) -> None:
    async with open_events_api() as api:
        response = await api.client.get(url)
        assert 400 == response.status_code
        assert "invalid_query" == (await response.get_json())["error"]["code"]


async def test_reads_page_through_a_stream_and_the_whole_store() -> None:
    async with open_events_api() as api:
        for n in range(3):
            await publish(
                api, {"event_type": "thing.done", "stream_id": "things", "data": {"n": n}}
            )
        first = await (await api.client.get("/events/stream/things?limit=2")).get_json()
        assert ([1, 2], 3) == ([e["version"] for e in first["items"]], first["next_from_version"])
        rest = await (await api.client.get("/events/stream/things?from_version=3")).get_json()
        assert ([3], None) == ([e["version"] for e in rest["items"]], rest["next_from_version"])
        page = await (await api.client.get("/events/all?limit=2")).get_json()
        after = page["next_after_position"]
        tail = await (await api.client.get(f"/events/all?after_position={after}")).get_json()
        assert [0, 1, 2] == [e["data"]["n"] for e in page["items"] + tail["items"]]
        empty = await (await api.client.get("/events/stream/nothing-here")).get_json()
        assert [] == empty["items"]


async def test_event_types_lists_triggers_and_the_types_seen() -> None:
    async with open_events_api() as api:
        await publish(api, {"event_type": "thing.done", "stream_id": "things", "data": {}})
        await publish(api, registered())
        [saga] = await api.path.wait_for_sagas(ONBOARDING.name, 1)
        await api.path.wait_status(saga.saga_id, ["completed"])
        body = await (await api.client.get("/events/types")).get_json()
    assert [
        {"event_type": "airtable.base.connected", "saga_types": ["test_sync"]},
        {"event_type": "user.registered", "saga_types": ["test_onboarding"]},
    ] == body["triggers"]
    assert ["thing.done", "user.registered"] == body["seen"]  # saga transitions left out


# -- replay -------------------------------------------------------------------------------------


async def test_replaying_a_stream_starts_no_second_saga() -> None:
    async with open_events_api() as api:
        _, published = await publish(api, registered("u-3"))
        await api.path.wait_for_sagas(ONBOARDING.name, 1)
        response = await api.client.post("/events/replay/user-u-3")
        assert 202 == response.status_code
        body = await response.get_json()
        assert (1, [published["event_id"]]) == (body["replayed"], body["event_ids"])
        response = await api.client.post("/events/replay", json={"stream_id": "user-u-3"})
        assert 202 == response.status_code
        await api.path.wait_for(lambda: api.path.router.stats.repeated == 2)
        await api.path.settled()
        assert 1 == len(await api.path.sagas_of(ONBOARDING.name))
        [entry, *_] = await api.path.bus.entries(EVENTS)
        assert published["event_id"] == entry.message.event_id


async def test_replaying_a_position_range_skips_saga_streams() -> None:
    async with open_events_api() as api:
        await publish(api, registered("u-4"))
        await publish(api, {"event_type": "thing.done", "stream_id": "things", "data": {}})
        [saga] = await api.path.wait_for_sagas(ONBOARDING.name, 1)
        await api.path.wait_status(saga.saga_id, ["completed"])
        response = await api.client.post(
            "/events/replay", json={"after_position": 0, "event_type": "user.registered"}
        )
        body = await response.get_json()
        assert (202, 1, None) == (
            response.status_code,
            body["replayed"],
            body["next_after_position"],
        )
        response = await api.client.post("/events/replay", json={"after_position": 0, "limit": 1})
        body = await response.get_json()
        assert (1, 1) == (body["replayed"], body["next_after_position"])
        await api.path.wait_for(lambda: api.path.router.stats.repeated == 2)
        assert 1 == len(await api.path.sagas_of(ONBOARDING.name))


class FlakyBus(InProcessBus):
    """Refuses to publish while ``down``."""

    down = False

    async def publish(self, stream: str, messages: Any) -> list[str]:
        if self.down:
            raise BusUnavailable("Redis cannot be reached")
        return await super().publish(stream, messages)


async def test_a_replay_is_durable_while_the_bus_is_down_and_relayed_when_it_is_back() -> None:
    bus = FlakyBus()
    async with open_events_api(bus=bus) as api:
        _, published = await publish(api, registered("u-8"))
        await api.path.wait_for_sagas(ONBOARDING.name, 1)
        with trio.fail_after(10):
            while await api.path.store.outbox_pending():
                await trio.sleep(0.01)
        bus.down = True
        response = await api.client.post("/events/replay/user-u-8")
        assert (202, [published["event_id"]]) == (
            response.status_code,
            (await response.get_json())["event_ids"],
        )
        [waiting] = await api.path.store.outbox_pending()  # committed, not on the bus yet
        assert published["event_id"] == waiting.event.event_id
        bus.down = False
        await api.path.wait_for(lambda: api.path.router.stats.repeated == 1)
        _, replayed = [entry.message for entry in await bus.entries(EVENTS)]
        assert 1 == len(await api.path.sagas_of(ONBOARDING.name))
        stored = await api.path.store.find_event(published["event_id"])
    assert stored is not None and stored.event_id == replayed.event_id
    assert stored.recorded_at == replayed.occurred_at  # when it was recorded, not replayed
    assert {"stream_id": "user-u-8", "version": 1} == {
        k: replayed.metadata[k] for k in ("stream_id", "version")
    }


@pytest.mark.parametrize("bus_kind", ["in-process", REDIS])
async def test_replaying_an_invalid_trigger_event_dead_letters_it_once_and_logs_it_once(
    bus_kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bus: EventBus = InProcessBus()
    if bus_kind == "redis":
        url, prefix = (request.getfixturevalue(f) for f in ("redis_url", "redis_prefix"))
        bus = RedisStreamsBus(url, prefix=prefix, read_timeout=5.0)
    await bus.open()
    try:
        async with open_events_api(bus=bus) as api:
            invalid = {**registered("u-bad"), "data": {"user_id": 42}}  # fails the saga input
            status, published = await publish(api, invalid)
            consumer = api.path.router.consumer_stats
            await api.path.wait_for(lambda: consumer.dead_lettered == 1)
            replays = 25
            for _ in range(replays):
                response = await api.client.post("/events/replay/user-u-bad")
                assert 202 == response.status_code
            await api.path.wait_for(lambda: consumer.repeated_dead_letters == replays)
            await api.path.settled()
            dead = await bus.entries(dead_letter_stream(EVENTS))
            assert (1, 0) == (
                consumer.dead_lettered,
                len(await api.path.sagas_of("test_onboarding")),
            )
    finally:
        await bus.close()
    assert 202 == status
    assert [published["event_id"]] == [d.message.event_id for d in dead]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert 1 == len(errors) and "moved to the dead-letter stream" in errors[0]
    repeats = [r for r in caplog.records if "dead-lettered before" in r.getMessage()]
    assert 1 == len(repeats)  # the other repeats of this minute are counted, not logged


@pytest.mark.parametrize(
    ("url", "body", "fields"),
    [
        ("/events/replay", {}, ["body"]),
        ("/events/replay", {"stream_id": "a", "after_position": 0}, ["body", "after_position"]),
        ("/events/replay", {"stream_id": "saga-1"}, ["stream_id"]),
        ("/events/replay", {"after_position": 0, "from_version": 2}, ["from_version"]),
        ("/events/replay", {"after_position": 0, "limit": 0}, ["limit"]),
        ("/events/replay/things", {"from_version": 0}, ["from_version"]),
        ("/events/replay/saga-1", {}, ["stream_id"]),
    ],
)
async def test_bad_replay_requests_are_422(url: str, body: Any, fields: list[str]) -> None:
    async with open_events_api() as api:
        response = await api.client.post(url, json=body)
        assert 422 == response.status_code
        details = (await response.get_json())["error"]["details"]
        assert sorted(fields) == sorted(d["field"] for d in details)


# -- API key, health ----------------------------------------------------------------------------


async def test_event_endpoints_need_the_api_key() -> None:
    async with open_events_api(api_key=KEY) as api:
        for method, url in [
            ("POST", "/events/publish"),
            ("GET", "/events/all"),
            ("GET", "/events/types"),
            ("GET", "/events/stream/s"),
            ("POST", "/events/replay"),
        ]:
            response = await api.client.open(url, method=method, json={})
            assert 401 == response.status_code, url
        response = await api.client.get("/events/types", headers={"X-API-Key": KEY})
        assert 200 == response.status_code


async def test_health_shows_the_bus() -> None:
    async with open_events_api() as api:
        await publish(api, registered("u-5"))
        await api.path.wait_for_sagas(ONBOARDING.name, 1)
        await api.path.settled()
        body = await (await api.client.get("/health")).get_json()
        assert 200 == (await api.client.get("/health/ready")).status_code
    bus = body["components"]["bus"]
    assert ("ok", "in-process", EVENTS) == (bus["status"], bus["kind"], bus["stream"])
    assert (1, 0, 0, 0, 1) == (
        bus["length"],
        bus["pending"],
        bus["lag"],
        bus["dead_letters"],
        bus["consumers"],
    )
    assert bus["latency_ms"] >= 0


class DownBus(InProcessBus):
    async def ping(self) -> None:
        raise BusUnavailable("Redis cannot be reached: connection refused by 10.0.0.7")


async def test_readiness_needs_the_bus_when_one_is_configured() -> None:
    async with open_events_api(bus=DownBus()) as api:
        ready = await api.client.get("/health/ready")
        assert 503 == ready.status_code
        assert [{"component": "bus", "reason": "check failed (BusUnavailable)"}] == (
            await ready.get_json()
        )["not_ready"]
        overall = await api.client.get("/health")
        assert 503 == overall.status_code
        bus = (await overall.get_json())["components"]["bus"]
        assert ("error", "check failed (BusUnavailable)") == (bus["status"], bus["error"])
        assert "10.0.0.7" not in str(await overall.get_json())


# -- end to end on Redis ------------------------------------------------------------------------


@pytest.mark.integration
async def test_end_to_end_on_redis_publish_relay_route_start(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(
        environment="test",
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        use_redis_event_bus=True,
        redis_url=redis_url,
        event_stream=EVENTS,
        bus_block_ms=50,
        relay_poll_seconds=0.5,
    )
    bus = RedisStreamsBus(redis_url, prefix=redis_prefix, read_timeout=5.0)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: run_service(
                settings,
                shutdown=stop,
                catalog=SagaCatalog(SAGAS),
                backend=MemoryBackend(),
                bus=bus,
                task_status=task_status,
            )
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            health = (await client.get("/health")).json()
            assert ("ok", "redis") == (
                health["components"]["bus"]["status"],
                health["components"]["bus"]["kind"],
            )
            response = await client.post("/events/publish", json=registered("u-e2e"))
            assert 202 == response.status_code, response.text
            event_id = response.json()["event_id"]
            with trio.fail_after(15):
                while True:
                    sagas = (await client.get("/sagas/?saga_type=test_onboarding")).json()
                    if sagas["items"] and sagas["items"][0]["status"] == "completed":
                        break
                    await trio.sleep(0.05)
            [saga] = sagas["items"]
            assert trigger_key(event_id, ONBOARDING.name) == saga["idempotency_key"]
            # replayed through the API: routed again, no second saga
            assert 202 == (await client.post("/events/replay/user-u-e2e")).status_code
            with trio.fail_after(15):
                while (await bus.info(EVENTS, settings.consumer_group)).pending or len(
                    await bus.entries(EVENTS)
                ) < 2:
                    await trio.sleep(0.05)
            sagas = (await client.get("/sagas/?saga_type=test_onboarding")).json()
            assert 1 == len(sagas["items"])
            lifecycle = [d.message.event_type for d in await bus.entries(LIFECYCLE)]
            assert "saga.completed" in lifecycle
        stop.set()
