"""Every endpoint through a real Hypercorn server over HTTP (httpx): its happy path and each
error status it documents. The server (``live``, in conftest) runs ``run_service`` on SQLite and
the in-process bus, with an API key. Last, a saga cancelled while a step's downstream call is
in flight."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from saga_orchestrator.coordinator.definition import SagaDefinition, Step, StepContext
from tests.support.live import LiveServer, open_live_server, post_in_thread
from tests.support.recorder import run_recorder

TERMINAL = ("completed", "compensated", "cancelled", "timed_out", "compensation_failed")
JSON = {"Content-Type": "application/json"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """``response`` is ``status`` with the standard error body of ``code``; the error."""
    assert status == response.status_code, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Correlation-ID"]
    body = response.json()
    assert {"error"} == set(body)
    assert code == body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    return body["error"]


def fields(error: dict[str, Any]) -> list[str]:
    return sorted(detail["field"] for detail in error["details"])


async def wait_for(
    client: httpx.AsyncClient, saga_id: str, statuses: tuple[str, ...] = TERMINAL
) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            saga = (await client.get(f"/sagas/{saga_id}")).json()
            if saga["status"] in statuses:
                return saga
            await trio.sleep(0.02)


async def start(
    client: httpx.AsyncClient, saga_type: str, data: dict[str, Any], **extra: Any
) -> Any:
    response = await client.post(
        "/sagas/start", json={"saga_type": saga_type, "data": data, **extra}
    )
    assert response.status_code in (200, 202), response.text
    return response.json()


# --- health, metrics, documentation: open -------------------------------------------------


async def test_health_metrics_and_documentation_need_no_key(live: LiveServer) -> None:
    async with live.client(key=False) as client:
        for path, body in [
            ("/health/live", {"status": "alive"}),
            ("/health/ready", {"status": "ready"}),
        ]:
            response = await client.get(path)
            assert (200, body) == (response.status_code, response.json())
        health = (await client.get("/health")).json()
        assert "ok" == health["status"]
        assert {"store", "coordinator", "bus", "instances"} == set(health["components"])
        assert "sqlite" == health["components"]["store"]["kind"]
        assert "in-process" == health["components"]["bus"]["kind"]
        metrics = await client.get("/metrics")
        assert 200 == metrics.status_code
        assert metrics.headers["Content-Type"].startswith("text/plain")
        assert "http_requests_total" in metrics.text
        document = await client.get("/openapi.json")
        assert (200, "3.1.0") == (document.status_code, document.json()["openapi"])
        page = await client.get("/docs")
        assert 200 == page.status_code
        assert page.headers["Content-Type"].startswith("text/html")
        assert "/sagas/start" in page.text


# --- sagas ----------------------------------------------------------------------------------


async def test_start_read_list_and_page_a_saga(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post(
            "/sagas/start",
            json={"saga_type": "test_two_steps", "data": {"name": "http"}},
            headers={"X-Correlation-ID": "live-start-1"},
        )
        assert 202 == response.status_code, response.text
        assert "live-start-1" == response.headers["X-Correlation-ID"]
        saga = response.json()
        assert saga["created"] is True
        assert "live-start-1" == saga["correlation_id"]
        assert f"/sagas/{saga['saga_id']}" == response.headers["Location"]

        done = await wait_for(client, saga["saga_id"])
        assert "completed" == done["status"]
        steps = (await client.get(f"/sagas/{saga['saga_id']}/steps")).json()
        assert ["completed", "completed"] == [step["status"] for step in steps["items"]]
        events = (await client.get(f"/sagas/{saga['saga_id']}/events?limit=2")).json()
        assert [1, 2] == [event["version"] for event in events["items"]]
        assert 3 == events["next_from_version"]

        listed = (await client.get("/sagas/?saga_type=test_two_steps&limit=1")).json()
        assert 1 == len(listed["items"])
        assert "steps" not in listed["items"][0]
        types = (await client.get("/sagas/types/available")).json()
        assert {"test_two_steps", "test_slow", "test_parks"} == {t["name"] for t in types["items"]}


async def test_a_repeated_key_is_200_and_a_key_of_another_type_is_409(live: LiveServer) -> None:
    key = f"live-{uuid.uuid4()}"
    async with live.client() as client:
        first = await client.post(
            "/sagas/start",
            json={"saga_type": "test_two_steps", "data": {"name": "k"}, "idempotency_key": key},
        )
        assert 202 == first.status_code
        again = await client.post(
            "/sagas/start",
            json={"saga_type": "test_two_steps", "data": {"name": "k"}, "idempotency_key": key},
        )
        assert 200 == again.status_code
        assert first.json()["saga_id"] == again.json()["saga_id"]
        assert again.json()["created"] is False
        assert again.headers["Location"] == first.headers["Location"]
        other = await client.post(
            "/sagas/start",
            json={"saga_type": "test_slow", "data": {"seconds": 0}, "idempotency_key": key},
        )
        assert_error(other, 409, "duplicate_idempotency_key")


async def test_start_refuses_bad_requests(live: LiveServer) -> None:
    async with live.client() as client:
        error = assert_error(
            await client.post("/sagas/start", json={"data": [], "extra": 1}),
            422,
            "validation_error",
        )
        assert ["data", "extra", "saga_type"] == fields(error)
        error = assert_error(
            await client.post("/sagas/start", json={"saga_type": "nope", "data": {}}),
            422,
            "unknown_saga_type",
        )
        assert {"test_two_steps", "test_slow", "test_parks"} == set(error["available_types"])
        error = assert_error(
            await client.post(
                "/sagas/start", json={"saga_type": "test_two_steps", "data": {"name": 1}}
            ),
            422,
            "validation_error",
        )
        assert ["data.name"] == fields(error)
        assert_error(
            await client.post("/sagas/start", content=b"{nope", headers=JSON), 400, "invalid_json"
        )
        assert_error(
            await client.post(
                "/sagas/start", content=b"saga_type=x", headers={"Content-Type": "text/plain"}
            ),
            415,
            "unsupported_media_type",
        )
        big = b'{"saga_type": "test_two_steps", "data": {"name": "' + b"x" * (1 << 20) + b'"}}'
        assert_error(
            await post_in_thread(live, "/sagas/start", big, JSON), 413, "request_entity_too_large"
        )


async def test_reads_refuse_bad_queries_and_unknown_sagas(live: LiveServer) -> None:
    unknown = str(uuid.uuid4())
    async with live.client() as client:
        error = assert_error(await client.get("/sagas/?limit=0&colour=red"), 400, "invalid_query")
        assert ["colour", "limit"] == fields(error)
        for path in (f"/sagas/{unknown}", f"/sagas/{unknown}/steps", f"/sagas/{unknown}/events"):
            assert_error(await client.get(path), 404, "saga_not_found")
        assert_error(await client.get("/sagas/not-a-uuid"), 404, "saga_not_found")
        saga = await start(client, "test_two_steps", {"name": "q"})
        error = assert_error(
            await client.get(f"/sagas/{saga['saga_id']}/events?from_version=0"),
            400,
            "invalid_query",
        )
        assert ["from_version"] == fields(error)


async def test_cancel_then_cancel_again_is_409(live: LiveServer) -> None:
    async with live.client() as client:
        saga = await start(client, "test_slow", {"seconds": 60})
        await wait_for(client, saga["saga_id"], ("running",))
        path = f"/sagas/{saga['saga_id']}/cancel"
        error = assert_error(await client.post(path, json={"why": "x"}), 422, "validation_error")
        assert ["why"] == fields(error)
        assert_error(await client.post(path, content=b"[", headers=JSON), 400, "invalid_json")
        assert_error(
            await client.post(path, content=b"x", headers={"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        )
        response = await client.post(path, json={"reason": "over HTTP"})
        assert 202 == response.status_code, response.text
        assert {"saga_id": saga["saga_id"], "status": "compensating"} == response.json()
        assert "cancelled" == (await wait_for(client, saga["saga_id"]))["status"]
        assert_error(await client.post(path), 409, "saga_state_conflict")
        assert_error(await client.post(f"/sagas/{uuid.uuid4()}/cancel"), 404, "saga_not_found")


async def test_retry_a_parked_saga(live: LiveServer) -> None:
    async with live.client() as client:
        saga = await start(client, "test_parks", {})
        parked = await wait_for(client, saga["saga_id"])
        assert "compensation_failed" == parked["status"]
        response = await client.post(f"/sagas/{saga['saga_id']}/retry")
        assert 202 == response.status_code, response.text
        assert (
            "compensated" == (await wait_for(client, saga["saga_id"], ("compensated",)))["status"]
        )
        assert_error(
            await client.post(f"/sagas/{saga['saga_id']}/retry"), 409, "saga_state_conflict"
        )
        assert_error(await client.post(f"/sagas/{uuid.uuid4()}/retry"), 404, "saga_not_found")


async def test_503_with_retry_after_at_the_admission_limit(tmp_path: Path) -> None:
    async with (
        open_live_server(tmp_path, max_active_sagas=1) as server,
        server.client() as client,
    ):
        await start(client, "test_slow", {"seconds": 60})
        response = await client.post(
            "/sagas/start", json={"saga_type": "test_two_steps", "data": {"name": "late"}}
        )
        assert_error(response, 503, "overloaded")
        assert int(response.headers["Retry-After"]) >= 1


# --- events ---------------------------------------------------------------------------------


def event(stream_id: str, **extra: Any) -> dict[str, Any]:
    return {"event_type": "thing.happened", "stream_id": stream_id, "data": {"n": 1}, **extra}


async def test_publish_read_and_replay_events(live: LiveServer) -> None:
    stream = f"things-{uuid.uuid4().hex[:8]}"
    event_id = f"ev-{uuid.uuid4()}"
    async with live.client() as client:
        response = await client.post("/events/publish", json=event(stream, event_id=event_id))
        assert 202 == response.status_code, response.text
        published = response.json()
        assert (stream, 1, True) == (
            published["stream_id"],
            published["version"],
            published["created"],
        )
        again = await client.post("/events/publish", json=event(stream, event_id=event_id))
        assert (200, False) == (again.status_code, again.json()["created"])

        page = (await client.get(response.headers["Location"])).json()
        assert [event_id] == [item["event_id"] for item in page["items"]]
        everything = (
            await client.get(
                "/events/all",
                params={"after_position": published["position"] - 1, "limit": 1},
            )
        ).json()
        assert [event_id] == [item["event_id"] for item in everything["items"]]
        types = (await client.get("/events/types")).json()
        assert "thing.happened" in types["seen"]

        replayed = await client.post(f"/events/replay/{stream}", json={"from_version": 1})
        assert 202 == replayed.status_code, replayed.text
        assert [event_id] == replayed.json()["event_ids"]
        ranged = await client.post(
            "/events/replay",
            json={
                "after_position": published["position"] - 1,
                "to_position": published["position"],
            },
        )
        assert 202 == ranged.status_code, ranged.text
        assert [event_id] == ranged.json()["event_ids"]
        by_stream = await client.post("/events/replay", json={"stream_id": stream})
        assert (202, stream) == (by_stream.status_code, by_stream.json()["stream_id"])


async def test_publish_conflicts_are_409(live: LiveServer) -> None:
    stream = f"conflicts-{uuid.uuid4().hex[:8]}"
    event_id = f"ev-{uuid.uuid4()}"
    async with live.client() as client:
        assert 202 == (await client.post("/events/publish", json=event(stream))).status_code
        assert_error(
            await client.post("/events/publish", json=event(stream, expected_version=0)),
            409,
            "concurrency_conflict",
        )
        first = await client.post("/events/publish", json=event(stream, event_id=event_id))
        assert 202 == first.status_code
        changed = event(stream, event_id=event_id, data={"n": 2})
        assert_error(await client.post("/events/publish", json=changed), 409, "conflict")
        # An event id is unique across streams (schemathesis found this one as a 500).
        elsewhere = event(f"{stream}-other", event_id=event_id)
        assert_error(await client.post("/events/publish", json=elsewhere), 409, "conflict")


async def test_event_endpoints_refuse_bad_requests(live: LiveServer) -> None:
    async with live.client() as client:
        error = assert_error(
            await client.post("/events/publish", json={"stream_id": "saga-x", "data": 1}),
            422,
            "validation_error",
        )
        assert ["data", "event_type", "stream_id"] == fields(error)
        assert_error(
            await client.post("/events/publish", content=b"{", headers=JSON), 400, "invalid_json"
        )
        assert_error(
            await client.post("/events/publish", content=b"a", headers={"Content-Type": "text/x"}),
            415,
            "unsupported_media_type",
        )
        big = b'{"data": "' + b"x" * (1 << 20) + b'"}'
        assert_error(
            await post_in_thread(live, "/events/publish", big, JSON),
            413,
            "request_entity_too_large",
        )
        for path in ("/events/stream/s?limit=1001", "/events/all?after_position=-1"):
            assert_error(await client.get(path), 400, "invalid_query")
        error = assert_error(await client.post("/events/replay", json={}), 422, "validation_error")
        assert ["body"] == fields(error)
        error = assert_error(
            await client.post("/events/replay/saga-x", json={"limit": 0}), 422, "validation_error"
        )
        assert ["limit", "stream_id"] == fields(error)


# --- cancel during a long-running step ------------------------------------------------------


def downstream_saga(url: str) -> SagaDefinition:
    """Two steps calling the recording service at ``url``; the second asks it to take 30 s."""

    async def call(ctx: StepContext, op: str, delay: float = 0.0) -> dict[str, Any]:
        body = {"saga_id": ctx.saga_id, "step": ctx.step, "delay": delay}
        headers = {"Idempotency-Key": ctx.idempotency_key}
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            response = await client.post(f"/effects/{op}", json=body, headers=headers)
        response.raise_for_status()
        return response.json()

    async def reserve(ctx: StepContext) -> dict[str, Any]:
        return await call(ctx, "do")

    async def charge(ctx: StepContext) -> dict[str, Any]:
        return await call(ctx, "do", delay=30.0)

    async def undo(ctx: StepContext) -> None:
        await call(ctx, "undo")

    return SagaDefinition(
        name="test_downstream",
        version=1,
        input_type=DownstreamInput,
        steps=[
            Step(name="reserve", action=reserve, compensation=undo),
            # Safe to undo when its outcome is unknown: the stand-in undoes by idempotency key.
            Step(
                name="charge", action=charge, compensation=undo, compensation_safe_if_unknown=True
            ),
        ],
    )


@attrs.frozen
class DownstreamInput:
    order: str = "o-1"


async def test_cancel_abandons_the_downstream_call_and_compensates(tmp_path: Path) -> None:
    async with (
        run_recorder() as (recorder, url),
        open_live_server(tmp_path, sagas=[downstream_saga(url)]) as server,
        server.client() as client,
    ):
        saga = await start(client, "test_downstream", {})
        await recorder.reached(2, within=10)  # the charge is applied; its answer takes 30 s
        assert ["reserve", "charge"] == [effect.step for effect in recorder.applied]
        running = (await client.get(f"/sagas/{saga['saga_id']}")).json()
        assert ("running", "charge") == (running["status"], running["current_step"])

        with trio.fail_after(10):  # far less than the 30 s the downstream call would take
            response = await client.post(f"/sagas/{saga['saga_id']}/cancel")
            assert 202 == response.status_code, response.text
            done = await wait_for(client, saga["saga_id"])
        assert "cancelled" == done["status"]
        reserve, charge = done["steps"]
        assert ("completed", "completed") == (
            reserve["status"],
            reserve["compensation_status"],
        )
        assert "completed" == charge["compensation_status"]
        assert charge["status"] != "completed"  # its call was abandoned mid-flight
        # Compensated in reverse order, each once.
        assert [("do", "reserve"), ("do", "charge"), ("undo", "charge"), ("undo", "reserve")] == [
            (effect.op, effect.step) for effect in recorder.applied
        ]
