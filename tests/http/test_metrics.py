"""``GET /metrics`` on the real service: each figure says what the service did (so many sagas,
events, batches, pending entries), read in the Prometheus text format."""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import saga_orchestrator.bus.watcher as bus_watcher
from saga_orchestrator.bus import EventBus, InProcessBus, RedisStreamsBus, StreamFigures
from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.errors import StoreUnavailable
from saga_orchestrator.http.metrics import METHODS, OTHER_METHOD, UNMATCHED_ROUTE
from saga_orchestrator.service import run_service
from saga_orchestrator.store.backend import StoreBackend
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import AppendRequest, AppendResult

from ..bus.harness import ONBOARDING
from ..support import open_api
from ..support.live import LiveServer
from ..support.raw_http import Reader, connect, request
from ..support.records import stored
from ..support.sagas import SAGAS
from ..support.server import wait_ready, wait_terminal

KEY = "metrics-key"
EVENTS = "saga:events"
LIFECYCLE = "saga.lifecycle"
LIFECYCLE_EVENTS = 4
"""Lifecycle events of one ``test_two_steps`` saga: started, 2 steps completed, completed."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def sample(metric: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return metric, frozenset(labels.items())


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers={"X-API-Key": ""})  # open, like the probes
    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def wait_for(
    client: httpx.AsyncClient, condition: Callable[[Samples], bool], within: float = 15.0
) -> Samples:
    """Scrape until ``condition`` holds; the samples that made it hold."""
    found: Samples = {}
    with trio.move_on_after(within):
        while True:
            found = await scrape(client)
            if condition(found):
                return found
            await trio.sleep(0.05)
    raise AssertionError(f"the metrics never met the condition: {found}")


@asynccontextmanager
async def serving(
    tmp_path: Path,
    *,
    sagas: Any = SAGAS,
    backend: StoreBackend | None = None,
    bus: EventBus | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """``run_service`` in this trio run (SQLite unless ``backend``, the in-process bus unless
    ``bus``), and a client with the API key."""
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        environment="test",
        api_key=KEY,
        shutdown_grace_seconds=1.0,
        event_stream=EVENTS,
        lifecycle_stream=LIFECYCLE,
    )
    stop = trio.Event()
    run = partial(
        run_service,
        settings,
        shutdown=stop,
        catalog=SagaCatalog(sagas),
        backend=backend,
        bus=bus,
    )
    async with trio.open_nursery() as nursery:
        port = await nursery.start(run)
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=10
            ) as client:
                await wait_ready(client)
                yield client
        finally:
            stop.set()


@pytest.fixture
def quick_bus_figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The service reads the bus figures every 0.05 s instead of every 5 s."""
    monkeypatch.setattr(bus_watcher, "BUS_FIGURES_INTERVAL", 0.05)
    yield


async def test_sagas_store_batches_and_requests_are_counted_as_they_happened(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as client:
        body = {"saga_type": "test_two_steps", "data": {"name": "m"}}
        ids = [(await client.post("/sagas/start", json=body)).json()["saga_id"] for _ in range(3)]
        await wait_terminal(client, ids)
        assert 404 == (await client.get(f"/sagas/{uuid.uuid4()}")).status_code
        relayed = sample("outbox_relayed_total", outcome="published")
        # the relay publishes the lifecycle events soon after they are committed
        found = await wait_for(client, lambda f: f.get(relayed) == 3 * LIFECYCLE_EVENTS)

    assert 3 == found[sample("saga_started_total", saga_type="test_two_steps")]
    assert 3 == found[sample("saga_finished_total", saga_type="test_two_steps", status="completed")]
    assert 0 == found[sample("saga_active", name="all")]
    assert 3 * LIFECYCLE_EVENTS == found[sample("store_outbox_messages_total", outcome="committed")]
    assert 0 == found[sample("store_batches_total", outcome="failed")]
    # SQLite serves this process alone: its relay leads from the start, and only it
    assert 1 == found[sample("outbox_relay_leader", name="relay")]
    assert {"acquired": 1, "lost": 0, "released": 0} == {
        change: found[sample("outbox_relay_leader_changes_total", change=change)]
        for change in ("acquired", "lost", "released")
    }
    committed = found[sample("store_batches_total", outcome="committed")]
    assert 1 <= committed == found[sample("store_batch_size_count")]  # one per transaction
    assert (
        3 == found[sample("http_requests_total", method="POST", route="/sagas/start", status="202")]
    )
    # a path with an id is counted under its route template, not the raw path
    routes = {dict(labels).get("route") for name, labels in found if name == "http_requests_total"}
    assert not any(ids[0][:8] in (route or "") for route in routes)
    assert (
        1
        == found[
            sample("http_requests_total", method="GET", route="/sagas/<saga_id>", status="404")
        ]
    )


class FailsFirstCommit(MemoryBackend):
    """A store whose first transaction fails: the database went away for a moment."""

    failures = 1

    async def commit(self, batch: list[AppendRequest]) -> list[AppendResult | Exception]:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("the database went away (test)")
        return await super().commit(batch)


async def test_a_failed_store_transaction_is_counted_and_shown_by_health(tmp_path: Path) -> None:
    async with serving(tmp_path, backend=FailsFirstCommit()) as client:
        body = {"saga_type": "test_two_steps", "data": {"name": "m"}}
        assert 503 == (await client.post("/sagas/start", json=body)).status_code  # no saga
        saga_id = (await client.post("/sagas/start", json=body)).json()["saga_id"]
        await wait_terminal(client, [saga_id])
        found = await scrape(client)
        store = (await client.get("/health")).json()["components"]["store"]

    assert ("ok", 1) == (store["status"], store["failed_batches"])  # it answers again

    assert 1 == found[sample("store_batches_total", outcome="failed")]
    assert 1 == found[sample("saga_started_total", saga_type="test_two_steps")]
    assert LIFECYCLE_EVENTS == found[sample("store_outbox_messages_total", outcome="committed")]


async def test_the_router_counts_what_it_did_with_each_event(tmp_path: Path) -> None:
    async with serving(tmp_path, sagas=[*SAGAS, ONBOARDING]) as client:
        for user in ("u-1", "u-2", "u-3"):  # each starts a saga
            event = {"event_type": "user.registered", "stream_id": f"user-{user}"}
            response = await client.post(
                "/events/publish", json={**event, "data": {"user_id": user}}
            )
            assert 202 == response.status_code
        assert 202 == (await client.post("/events/replay/user-u-1")).status_code  # a repeat
        to_nobody = {
            "event_type": "test.reply",
            "stream_id": "replies",
            "data": {},
            "metadata": {"saga_id": "00000000-0000-4000-8000-00000000dead"},
        }
        assert 202 == (await client.post("/events/publish", json=to_nobody)).status_code
        handled = sample("bus_consumer_events_total", outcome="handled")
        found = await wait_for(client, lambda f: f.get(handled) == 5)

    assert {"started": 3, "repeated": 1, "delivered": 0, "dropped": 1} == {
        outcome: found[sample("router_events_total", outcome=outcome)]
        for outcome in ("started", "repeated", "delivered", "dropped")
    }
    assert 3 == found[sample("saga_started_total", saga_type=ONBOARDING.name)]
    assert 0 == found[sample("bus_consumer_events_total", outcome="dead_lettered")]


@asynccontextmanager
async def bus_pair(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, Any]]:
    """A bus for the service (unopened) and an opened one of the test's over the same streams
    (the in-process bus: the same object)."""
    if kind == "in-process":
        bus = InProcessBus()
        yield bus, bus
        return
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    probe = RedisStreamsBus(url, prefix=prefix, command_timeout=2.0)
    await probe.open()
    try:
        yield RedisStreamsBus(url, prefix=prefix, read_timeout=6.0), probe
    finally:
        await probe.close()


@pytest.mark.parametrize(
    "kind", ["in-process", pytest.param("redis", marks=pytest.mark.integration)]
)
async def test_bus_lag_is_exported_per_consumer_group(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest, quick_bus_figures: None
) -> None:
    async with bus_pair(kind, request) as (bus, probe):
        await probe.ensure_group(EVENTS, "audit")  # another consumer of the service's events
        async with serving(tmp_path, bus=bus) as client:
            for n in range(3):  # events no saga waits for: the router acknowledges them
                event = {"event_type": "metrics.tested", "stream_id": f"s-{n}", "data": {}}
                assert 202 == (await client.post("/events/publish", json=event)).status_code
            with trio.fail_after(10):
                while (await probe.figures(EVENTS)).length < 3:
                    await trio.sleep(0.02)
            assert 2 == len(await probe.read(EVENTS, "audit", "auditor", count=2, block_ms=10))
            audit = {"stream": EVENTS, "group": "audit"}
            pending = sample("bus_group_pending", **audit)
            age = sample("bus_group_oldest_pending_age_seconds", **audit)
            router_pending = sample("bus_group_pending", stream=EVENTS, group="saga-orchestrator")
            found = await wait_for(
                client,
                lambda f: (
                    f.get(pending) == 2 and f.get(age, 0) >= 0.3 and f.get(router_pending) == 0
                ),
            )
            figures: StreamFigures = await probe.figures(EVENTS)

    assert 3 == found[sample("bus_stream_length", stream=EVENTS)]
    assert 0 == found[sample("bus_dead_letters", stream=EVENTS)]
    assert 0 == found[sample("bus_stream_length", stream=LIFECYCLE)]  # no saga ran
    assert 1 == found[sample("bus_group_consumers", **audit)]
    router = {"stream": EVENTS, "group": "saga-orchestrator"}
    assert 1 == found[sample("bus_group_consumers", **router)]
    assert 0 == found[sample("bus_group_oldest_pending_age_seconds", **router)]
    if figures.groups[0].lag is None:  # Redis before 7 does not tell: no sample
        assert sample("bus_group_lag", **audit) not in found
    else:
        assert (1, 0) == (
            found[sample("bus_group_lag", **audit)],
            found[sample("bus_group_lag", **router)],
        )
    assert sample("bus_figures_age_seconds", bus=kind) in found


class StallingBus(InProcessBus):
    """A bus whose figures stop coming (a Redis that accepts and never answers) once
    ``stalled``."""

    stalled = False

    async def figures(self, stream: str) -> StreamFigures:
        if self.stalled:
            await trio.sleep_forever()
        return await super().figures(stream)


async def test_a_scrape_does_not_wait_for_a_bus_that_stopped_answering(
    tmp_path: Path, quick_bus_figures: None
) -> None:
    bus = StallingBus()
    async with serving(tmp_path, bus=bus) as client:
        event = {"event_type": "metrics.tested", "stream_id": "s-1", "data": {}}
        assert 202 == (await client.post("/events/publish", json=event)).status_code
        length = sample("bus_stream_length", stream=EVENTS)
        await wait_for(client, lambda f: f.get(length) == 1)
        bus.stalled = True
        assert (
            202
            == (await client.post("/events/publish", json=event | {"stream_id": "s-2"})).status_code
        )
        figures_age = sample("bus_figures_age_seconds", bus="in-process")
        with trio.fail_after(5):  # a scrape answers at once, whatever the bus does
            found = await wait_for(client, lambda f: f.get(figures_age, 0) > 0.5)

    assert 1 == found[length]  # the last figures read, older and older


async def test_request_labels_come_from_fixed_sets_whatever_the_client_sends(
    live: LiveServer,
) -> None:
    """Made-up methods and paths, without a key: they are counted, under fixed labels, and
    /metrics stays small."""
    async with live.client(key=False) as client:
        before = len((await client.get("/metrics")).content)
    rng = random.Random(13)
    stream = await connect(live.url)
    async with stream:
        reader = Reader(stream)
        for i in range(300):
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(500, 3000)))
            path = "/" + "".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 2000)))
            if i % 3 == 0:
                path = "/health/live"  # a route that exists: 405
            await stream.send_all(request(method, path))
            assert (await reader.answer()).status in (401, 404, 405)
    async with live.client(key=False) as client:
        text = (await client.get("/metrics")).text
    assert len(text) - before < 20_000, len(text) - before
    async with open_api() as api:
        routes = {rule.rule for rule in api.app.url_map.iter_rules()} | {UNMATCHED_ROUTE}
    labelled = [
        labels
        for (name, labels) in samples(text)
        if name.startswith(("http_requests_total", "http_request_duration_seconds"))
    ]
    assert {(("method", OTHER_METHOD),)} <= {
        tuple(item for item in labels if item[0] == "method") for labels in labelled
    }
    for labels in map(dict, labelled):
        assert labels["method"] in METHODS | {OTHER_METHOD}, labels
        assert labels["route"] in routes, labels


async def test_metrics_is_404_when_the_app_has_no_metrics() -> None:
    async with open_api() as api:
        response = await api.client.get("/metrics")
        assert 404 == response.status_code
        body = await response.get_json()
    assert "not_found" == body["error"]["code"]
    assert body["error"]["message"]


async def test_this_instance_is_live_and_counts_its_heartbeats_and_the_sagas_it_drives(
    tmp_path: Path,
) -> None:
    renewed = sample("instance_lease_renewals_total", outcome="renewed")
    async with serving(tmp_path) as client:
        body = {"saga_type": "test_two_steps", "data": {"name": "m"}}
        ids = [(await client.post("/sagas/start", json=body)).json()["saga_id"] for _ in range(2)]
        await wait_terminal(client, ids)
        found = await wait_for(client, lambda f: f.get(renewed, 0) >= 1)
    assert 1 == found[sample("instances_live", name="all")]
    assert 0 == found[sample("saga_owned", name="this_instance")]  # both have ended
    assert 0 == found[sample("instance_lease_renewals_total", outcome="lost")]
    assert 0 == found[sample("saga_commands_forwarded_total", outcome="sent")]


async def test_sagas_waiting_for_a_definition_not_loaded_are_a_gauge_by_type_and_version(
    tmp_path: Path,
) -> None:
    backend = MemoryBackend()
    await stored(backend, "00000000-0000-4000-8000-000000000009", "test_two_steps", 9)
    async with serving(tmp_path, backend=backend) as client:
        found = await scrape(client)
    waiting = sample("saga_waiting_for_definition", saga_type="test_two_steps", saga_version="9")
    assert 1 == found[waiting]
    assert 1 == sum(v for (name, _), v in found.items() if name == "saga_waiting_for_definition")
