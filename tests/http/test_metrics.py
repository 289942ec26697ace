"""``GET /metrics`` on the real service: saga, store and HTTP figures in Prometheus format."""

from __future__ import annotations

import random
import string
from functools import partial
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from saga_orchestrator.config import Settings
from saga_orchestrator.http.metrics import METHODS, OTHER_METHOD, UNMATCHED_ROUTE
from saga_orchestrator.service import run_service

from ..support import open_api
from ..support.live import LiveServer
from ..support.raw_http import Reader, connect, request
from ..support.server import wait_ready, wait_terminal


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


async def test_metrics_count_sagas_store_batches_and_requests_by_route(tmp_path: Path) -> None:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        environment="test",
        saga_modules="tests.support.sagas",
        api_key="metrics-key",
        shutdown_grace_seconds=1.0,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(run_service, settings, shutdown=stop))
        headers = {"X-API-Key": "metrics-key"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10
        ) as client:
            await wait_ready(client)
            body = {"saga_type": "test_two_steps", "data": {"name": "m"}}
            saga_id = (await client.post("/sagas/start", json=body)).json()["saga_id"]
            await wait_terminal(client, [saga_id])
            assert 404 == (await client.get(f"/sagas/{saga_id[:-1]}0")).status_code
            published = ("outbox_relayed_total", frozenset({("outcome", "published")}))
            with trio.fail_after(10):  # the relay publishes the lifecycle events soon after
                while True:
                    # open without a key, like the health probes
                    response = await client.get("/metrics", headers={"X-API-Key": ""})
                    if samples(response.text).get(published, 0) >= 3:
                        break
                    await trio.sleep(0.05)
        stop.set()

    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert 1 == found[("saga_started_total", frozenset({("saga_type", "test_two_steps")}))]
    finished = (
        "saga_finished_total",
        frozenset({("saga_type", "test_two_steps"), ("status", "completed")}),
    )
    assert 1 == found[finished]
    assert found[("store_batch_size_count", frozenset())] >= 1
    assert 0 == found[("saga_active", frozenset({("name", "all")}))]
    started = (
        "http_requests_total",
        frozenset({("method", "POST"), ("route", "/sagas/start"), ("status", "202")}),
    )
    assert 1 == found[started]
    # a path with an id is counted under its route template, not the raw path
    routes = {dict(labels).get("route") for name, labels in found if name == "http_requests_total"}
    assert not any(saga_id[:8] in (route or "") for route in routes)
    assert any("<" in (route or "") for route in routes)
    # the bus side: the saga's lifecycle events went through the outbox to the bus
    # (saga.started, saga.step.completed twice, saga.completed)
    assert found[published] >= 3
    assert ("router_events_total", frozenset({("outcome", "started")})) in found


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
