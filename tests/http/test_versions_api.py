"""Versions side by side through the API: start on a version, list by version, the versions of
each type with their active sagas, and sagas that wait for a definition no process has loaded."""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.store.memory import MemoryBackend
from tests.support import open_api, wait_for_status
from tests.support.records import stored
from tests.support.sagas import SLOW, TWO_STEPS

TWO_STEPS_V2 = attrs.evolve(TWO_STEPS, version=2, steps=TWO_STEPS.steps[:1])
"""``test_two_steps`` version 2: ``reserve`` only."""
ENDED = ("completed", "compensated", "cancelled", "timed_out", "failed", "compensation_failed")


def body(**extra: Any) -> dict[str, Any]:
    return {"saga_type": "test_two_steps", "data": {"name": "ada"}, **extra}


async def test_a_start_takes_the_newest_version_or_the_one_named() -> None:
    async with open_api(sagas=[TWO_STEPS, TWO_STEPS_V2, SLOW]) as api:
        newest = await api.client.post("/sagas/start", json=body())
        named = await api.client.post("/sagas/start", json=body(version=1))
        missing = await api.client.post("/sagas/start", json=body(version=7))
        not_a_number = await api.client.post("/sagas/start", json=body(version="2"))
        assert (202, 202) == (newest.status_code, named.status_code)
        first, second = await newest.get_json(), await named.get_json()
        assert (2, 1) == (first["saga_version"], second["saga_version"])
        v2 = await wait_for_status(api.client, first["saga_id"], ENDED)
        v1 = await wait_for_status(api.client, second["saga_id"], ENDED)
        assert (["reserve"], ["reserve", "confirm"]) == (
            [s["name"] for s in v2["steps"]],
            [s["name"] for s in v1["steps"]],
        )
        assert 422 == missing.status_code
        error = (await missing.get_json())["error"]
        assert "unknown_saga_version" == error["code"]
        assert "loaded versions: 1, 2" in error["message"]
        assert [{"field": "version", "message": "not loaded; loaded versions: 1, 2"}] == error[
            "details"
        ]
        assert 422 == not_a_number.status_code
        assert "validation_error" == (await not_a_number.get_json())["error"]["code"]


async def test_a_saga_whose_version_is_not_loaded_is_shown_waiting_for_it() -> None:
    backend = MemoryBackend()
    await stored(backend, "00000000-0000-4000-8000-000000000009", "test_two_steps", 9)
    await stored(backend, "00000000-0000-4000-8000-00000000000a", "retired_type", 3)
    async with open_api(backend=backend, sagas=[TWO_STEPS, TWO_STEPS_V2, SLOW]) as api:
        waiting_id = "00000000-0000-4000-8000-000000000009"
        ready = await api.client.get("/health/ready")
        assert 200 == ready.status_code
        health = await ready.get_json()
        assert "ready" == health["status"]
        assert [("test_two_steps", 9, 1), ("retired_type", 3, 1)] == sorted(
            ((d["saga_type"], d["saga_version"], d["count"]) for d in health["degraded"]),
            key=lambda d: d[0] != "test_two_steps",
        )
        assert all("deploy a process that loads it" in d["reason"] for d in health["degraded"])

        saga = await (await api.client.get(f"/sagas/{waiting_id}")).get_json()
        assert (True, "running") == (saga["waiting_for_definition"], saga["status"])
        cancel = await api.client.post(f"/sagas/{waiting_id}/cancel")
        assert 409 == cancel.status_code
        error = (await cancel.get_json())["error"]
        assert "definition_not_loaded" == error["code"]
        assert "test_two_steps version 9" in error["message"]

        started = await (await api.client.post("/sagas/start", json=body())).get_json()
        done = await wait_for_status(api.client, started["saga_id"], ENDED)
        assert False is done["waiting_for_definition"]

        types = await (await api.client.get("/sagas/types/available")).get_json()
        two = next(t for t in types["items"] if t["name"] == "test_two_steps")
        assert 2 == two["version"]  # the newest, as before
        assert [(1, True, 0), (2, True, 0), (9, False, 1)] == [
            (v["version"], v["loaded"], v["active"]) for v in two["versions"]
        ]
        assert two["versions"][-1]["steps"] is None
        assert [{"saga_type": "retired_type", "version": 3, "active": 1}] == types["not_loaded"]


async def test_the_list_filters_by_version_and_activity() -> None:
    backend = MemoryBackend()
    await stored(backend, "00000000-0000-4000-8000-000000000009", "test_two_steps", 9)
    async with open_api(backend=backend, sagas=[TWO_STEPS, TWO_STEPS_V2, SLOW]) as api:
        started = await (await api.client.post("/sagas/start", json=body(version=1))).get_json()
        await wait_for_status(api.client, started["saga_id"], ENDED)

        async def ids(query: str) -> list[str]:
            response = await api.client.get(f"/sagas/?{query}")
            assert 200 == response.status_code, await response.get_json()
            return [item["saga_id"] for item in (await response.get_json())["items"]]

        assert [started["saga_id"]] == await ids("saga_type=test_two_steps&saga_version=1")
        assert [] == await ids("saga_type=test_two_steps&saga_version=1&active=true")
        assert [started["saga_id"]] == await ids("saga_version=1&active=false")
        assert ["00000000-0000-4000-8000-000000000009"] == await ids("active=true")
        assert [] == await ids("saga_version=2")
        contradiction = await api.client.get("/sagas/?active=true&status=completed")
        assert 400 == contradiction.status_code
        bad = await api.client.get("/sagas/?active=yes&saga_version=0")
        assert 400 == bad.status_code
        fields = {d["field"] for d in (await bad.get_json())["error"]["details"]}
        assert {"active", "saga_version"} == fields
