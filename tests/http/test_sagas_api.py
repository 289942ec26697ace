"""Saga routes over an in-process actor system and the in-memory store."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest

from saga_orchestrator.config import Settings
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.errors import StoreError
from saga_orchestrator.http.errors import ERROR_TABLE, rule_for
from saga_orchestrator.store.memory import MemoryBackend
from saga_orchestrator.store.records import SagaRecord
from tests.support import open_api, wait_for_status

TERMINAL = ("completed", "compensated", "cancelled", "timed_out")


def two_steps(name: str = "ada", **extra: Any) -> dict[str, Any]:
    return {"saga_type": "test_two_steps", "data": {"name": name}, **extra}


async def start(client: Any, body: dict[str, Any], **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/sagas/start", json=body, **kwargs)
    return response.status_code, await response.get_json()


def assert_error_shape(body: dict[str, Any], code: str) -> dict[str, Any]:
    assert {"error"} == set(body)
    error = body["error"]
    assert code == error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return error


# --- start, read --------------------------------------------------------------------------


async def test_start_then_read_the_saga_its_steps_and_its_events() -> None:
    async with open_api() as api:
        response = await api.client.post("/sagas/start", json=two_steps(correlation_id="c-1"))
        assert 202 == response.status_code
        body = await response.get_json()
        saga_id = body["saga_id"]
        assert str(uuid.UUID(saga_id)) == saga_id
        assert f"/sagas/{saga_id}" == response.headers["Location"]
        assert body["created"] is True
        assert "test_two_steps" == body["saga_type"]
        assert {"name": "ada", "count": 1} == body["input"]
        assert "c-1" == body["correlation_id"]
        assert body["created_at"].endswith("Z")
        dt.datetime.fromisoformat(body["created_at"])

        saga = await wait_for_status(api.client, saga_id, TERMINAL)
        assert "completed" == saga["status"]
        assert {"reserve", "confirm"} == set(saga["result"])

        response = await api.client.get(f"/sagas/{saga_id}/steps")
        assert 200 == response.status_code
        steps = (await response.get_json())["items"]
        assert ["reserve", "confirm"] == [step["name"] for step in steps]
        assert ["completed", "completed"] == [step["status"] for step in steps]
        assert {"confirmed": 1} == steps[1]["result"]
        assert steps[0]["started_at"].endswith("Z")

        response = await api.client.get(f"/sagas/{saga_id}/events")
        assert 200 == response.status_code
        events = (await response.get_json())["items"]
        assert "SagaStarted" == events[0]["type"]
        assert "SagaCompleted" == events[-1]["type"]
        assert list(range(1, len(events) + 1)) == [event["version"] for event in events]

        response = await api.client.get(f"/sagas/{saga_id}/events?from_version=2&limit=2")
        page = await response.get_json()
        assert [2, 3] == [event["version"] for event in page["items"]]
        assert 4 == page["next_from_version"]


async def test_a_repeated_idempotency_key_returns_the_existing_saga_with_200() -> None:
    async with open_api() as api:
        status, first = await start(api.client, two_steps(idempotency_key="order-7"))
        assert 202 == status
        status, second = await start(api.client, two_steps(idempotency_key="order-7"))
        assert 200 == status
        assert first["saga_id"] == second["saga_id"]
        assert second["created"] is False
        assert "order-7" == second["idempotency_key"]


async def test_saga_types_with_their_input_schema() -> None:
    async with open_api() as api:
        response = await api.client.get("/sagas/types/available")
        assert 200 == response.status_code
        items = {item["name"]: item for item in (await response.get_json())["items"]}
        assert {"test_two_steps", "test_slow"} == set(items)
        two = items["test_two_steps"]
        assert 1 == two["version"]
        assert two["description"]
        assert ["reserve", "confirm"] == [step["name"] for step in two["steps"]]
        assert [True, False] == [step["has_compensation"] for step in two["steps"]]
        assert [] == two["triggers"]
        assert {
            "type": "object",
            "title": "TwoStepsInput",
            "properties": {"name": {"type": "string"}, "count": {"type": "integer", "default": 1}},
            "required": ["name"],
            "additionalProperties": False,
        } == two["input_schema"]


# --- list -----------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_a_cursor() -> None:
    async with open_api() as api:
        started = []
        for index in range(5):
            _, body = await start(api.client, two_steps(f"n{index}"))
            started.append(body["saga_id"])
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            response = await api.client.get("/sagas/" + query)
            assert 200 == response.status_code
            page = await response.get_json()
            assert len(page["items"]) <= 2
            assert all("steps" not in item for item in page["items"])
            seen += [item["saga_id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert 3 == pages
        assert sorted(started) == sorted(seen)
        created = [api.backend.sagas[saga_id].created_at for saga_id in seen]
        assert sorted(created, reverse=True) == created


async def test_list_filters() -> None:
    async with open_api() as api:
        _, done = await start(api.client, two_steps())
        await wait_for_status(api.client, done["saga_id"], TERMINAL)
        _, slow = await start(api.client, {"saga_type": "test_slow", "data": {"seconds": 60}})

        async def ids(query: str) -> list[str]:
            response = await api.client.get("/sagas" + query)
            assert 200 == response.status_code, await response.get_data()
            return [item["saga_id"] for item in (await response.get_json())["items"]]

        assert [slow["saga_id"]] == await ids("?saga_type=test_slow")
        assert [done["saga_id"]] == await ids("?status=completed")
        hour_ago = time.time() - 3600
        iso_hour_ago = dt.datetime.fromtimestamp(hour_ago, dt.UTC).isoformat()
        assert 2 == len(await ids(f"?created_after={hour_ago}"))
        assert 2 == len(await ids(f"?created_after={iso_hour_ago.replace('+00:00', 'Z')}"))
        assert [] == await ids(f"?created_before={int(hour_ago)}")
        assert [] == await ids("?created_after=2999-01-01T00:00:00")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("status=sleeping", "status"),
        ("created_after=yesterday", "created_after"),
        ("created_before=nan", "created_before"),
        ("cursor=not-a-cursor", "cursor"),
        ("colour=blue", "colour"),
        ("limit=1&limit=2", "limit"),
    ],
)
async def test_list_refuses_bad_parameters_with_400(query: str, field: str) -> None:
    async with open_api() as api:
        response = await api.client.get("/sagas/?" + query)
        assert 400 == response.status_code
        error = assert_error_shape(await response.get_json(), "invalid_query")
        assert [field] == [detail["field"] for detail in error["details"]]


# --- not found ------------------------------------------------------------------------------


@pytest.mark.parametrize("saga_id", [str(uuid.uuid4()), "not-a-uuid", "1234"])
async def test_an_unknown_saga_is_404_everywhere(saga_id: str) -> None:
    async with open_api() as api:
        for method, path in [
            ("GET", f"/sagas/{saga_id}"),
            ("GET", f"/sagas/{saga_id}/steps"),
            ("GET", f"/sagas/{saga_id}/events"),
            ("POST", f"/sagas/{saga_id}/cancel"),
            ("POST", f"/sagas/{saga_id}/retry"),
        ]:
            response = await api.client.open(path, method=method)
            assert 404 == response.status_code, (method, path)
            assert_error_shape(await response.get_json(), "saga_not_found")


async def test_unknown_routes_and_methods_answer_in_the_error_shape() -> None:
    async with open_api() as api:
        response = await api.client.get("/nowhere")
        assert 404 == response.status_code
        assert_error_shape(await response.get_json(), "not_found")
        response = await api.client.delete("/sagas/start")
        assert 405 == response.status_code
        assert "POST" in response.headers["Allow"]
        assert_error_shape(await response.get_json(), "method_not_allowed")


# --- cancel and retry -----------------------------------------------------------------------


async def test_cancel_a_running_saga_then_cancel_again_is_409() -> None:
    async with open_api() as api:
        _, body = await start(api.client, {"saga_type": "test_slow", "data": {"seconds": 60}})
        saga_id = body["saga_id"]
        await wait_for_status(api.client, saga_id, ("running",))
        response = await api.client.post(f"/sagas/{saga_id}/cancel", json={"reason": "test"})
        assert 202 == response.status_code
        assert {"saga_id": saga_id, "status": "compensating"} == await response.get_json()
        saga = await wait_for_status(api.client, saga_id, TERMINAL)
        assert "cancelled" == saga["status"]
        assert "completed" == saga["steps"][0]["compensation_status"]

        response = await api.client.post(f"/sagas/{saga_id}/cancel")
        assert 409 == response.status_code
        assert_error_shape(await response.get_json(), "saga_state_conflict")


async def test_cancel_refuses_a_bad_body() -> None:
    async with open_api() as api:
        _, body = await start(api.client, {"saga_type": "test_slow", "data": {}})
        response = await api.client.post(f"/sagas/{body['saga_id']}/cancel", json={"why": 1})
        assert 422 == response.status_code
        error = assert_error_shape(await response.get_json(), "validation_error")
        assert ["why"] == [detail["field"] for detail in error["details"]]


async def test_retry_of_a_saga_that_is_not_parked_is_409() -> None:
    async with open_api() as api:
        _, body = await start(api.client, two_steps())
        await wait_for_status(api.client, body["saga_id"], TERMINAL)
        response = await api.client.post(f"/sagas/{body['saga_id']}/retry")
        assert 409 == response.status_code
        assert_error_shape(await response.get_json(), "saga_state_conflict")


# --- validation -----------------------------------------------------------------------------


async def test_a_bad_start_body_names_every_bad_field() -> None:
    async with open_api() as api:
        status, body = await start(
            api.client, {"data": [], "idempotency_key": 5, "correlation_id": "", "extra": True}
        )
        assert 422 == status
        error = assert_error_shape(body, "validation_error")
        fields = sorted(detail["field"] for detail in error["details"])
        assert ["correlation_id", "data", "extra", "idempotency_key", "saga_type"] == fields


async def test_bad_saga_input_names_the_fields_of_data() -> None:
    async with open_api() as api:
        status, body = await start(
            api.client, {"saga_type": "test_two_steps", "data": {"name": 3, "count": "x"}}
        )
        assert 422 == status
        error = assert_error_shape(body, "validation_error")
        assert {"data.name", "data.count"} == {detail["field"] for detail in error["details"]}


async def test_an_unknown_saga_type_is_422_listing_the_types() -> None:
    async with open_api() as api:
        status, body = await start(api.client, {"saga_type": "nope", "data": {}})
        assert 422 == status
        error = assert_error_shape(body, "unknown_saga_type")
        assert ["test_slow", "test_two_steps"] == error["available_types"]
        assert [{"field": "saga_type", "message": "unknown saga type 'nope'"}] == error["details"]
        assert "test_two_steps" in error["message"]


async def test_bad_json_wrong_content_type_and_too_large_bodies() -> None:
    async with open_api() as api:
        json_headers = {"Content-Type": "application/json"}
        response = await api.client.post("/sagas/start", data="{nope", headers=json_headers)
        assert 400 == response.status_code
        assert_error_shape(await response.get_json(), "invalid_json")

        response = await api.client.post("/sagas/start", data="NaN", headers=json_headers)
        assert 400 == response.status_code

        response = await api.client.post(
            "/sagas/start", data="saga_type=x", headers={"Content-Type": "text/plain"}
        )
        assert 415 == response.status_code
        assert_error_shape(await response.get_json(), "unsupported_media_type")

        big = '{"saga_type": "test_two_steps", "data": {"name": "' + "x" * 1_100_000 + '"}}'
        response = await api.client.post("/sagas/start", data=big, headers=json_headers)
        assert 413 == response.status_code
        assert_error_shape(await response.get_json(), "request_entity_too_large")


# --- auth -----------------------------------------------------------------------------------


async def test_the_api_key_is_required_when_configured() -> None:
    async with open_api(settings=Settings(api_key="s3cret")) as api:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
            response = await api.client.get("/sagas/", headers=headers)
            assert 401 == response.status_code
            assert "WWW-Authenticate" not in response.headers
            body = await response.get_json()
            assert_error_shape(body, "unauthorized")
            assert "s3cret" not in str(body)
            response = await api.client.post("/sagas/start", json=two_steps(), headers=headers)
            assert 401 == response.status_code
        assert 0 == len(api.backend.sagas)

        good = {"X-API-Key": "s3cret"}
        assert 200 == (await api.client.get("/sagas/", headers=good)).status_code
        response = await api.client.post("/sagas/start", json=two_steps(), headers=good)
        assert 202 == response.status_code


# --- overload and failures ------------------------------------------------------------------


async def test_503_with_retry_after_at_the_admission_limit() -> None:
    async with open_api(options=EngineOptions(max_active_sagas=1)) as api:
        status, _ = await start(api.client, {"saga_type": "test_slow", "data": {"seconds": 60}})
        assert 202 == status
        response = await api.client.post("/sagas/start", json=two_steps())
        assert 503 == response.status_code
        assert int(response.headers["Retry-After"]) >= 1
        assert_error_shape(await response.get_json(), "overloaded")


class BrokenBackend(MemoryBackend):
    """Reads fail with internals in their messages."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def get_saga(self, saga_id: str) -> SagaRecord | None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (RuntimeError("secret internal detail"), 500, "internal_error"),
        (StoreError("secret internal detail at db.internal"), 500, "store_error"),
    ],
)
async def test_server_errors_show_no_internals(error: Exception, status: int, code: str) -> None:
    async with open_api(backend=BrokenBackend(error)) as api:
        response = await api.client.get(f"/sagas/{uuid.uuid4()}")
        assert status == response.status_code
        text = (await response.get_data()).decode()
        assert "secret" not in text
        assert "Traceback" not in text
        assert_error_shape(await response.get_json(), code)


def test_the_error_table_maps_the_hierarchy() -> None:
    from saga_orchestrator.actors import AskTimeout
    from saga_orchestrator.errors import (
        ConcurrencyError,
        DuplicateIdempotencyKey,
        OverloadedError,
        SagaNotFound,
        SagaOwnedElsewhere,
        SagaStateConflict,
        StoreRejected,
        StoreUnavailable,
        UnknownSagaType,
        ValidationError,
    )

    cases = [
        (ValidationError("x"), 422),
        (UnknownSagaType("x", []), 422),
        (SagaNotFound("x"), 404),
        (ConcurrencyError("s", 1, 2), 409),
        (SagaStateConflict("x", "completed", "cancel"), 409),
        (DuplicateIdempotencyKey("k", "x"), 409),
        (OverloadedError("busy"), 503),
        (StoreUnavailable("down"), 503),
        (StoreRejected("a NUL"), 422),
        (SagaOwnedElsewhere("x", "other-instance"), 503),
        (StoreError("broken"), 500),
        (AskTimeout("coordinator", object(), 1.0), 503),
        (KeyError("x"), 500),
    ]
    assert [status for _, status in cases] == [rule_for(error).status for error, _ in cases]
    assert all(
        rule.message
        for rule in ERROR_TABLE.values()
        if rule.status >= 500 and rule.code != "overloaded"
    )
