"""The built-in sagas in the real server process, against the stand-in over HTTP: started
through the API and by their trigger event; the data sync's outcome comes back through
``POST /events/publish``; a SIGKILL mid-step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from saga_orchestrator.devservices import DevState, Fault, HttpAnnouncer, serve_devservices
from saga_orchestrator.devservices._app import SERVICE_PATHS

from ..support.server import (
    API_KEY,
    free_port,
    server_log,
    server_process,
    wait_ready,
    wait_terminal,
)
from .conftest import TOKEN

pytestmark = pytest.mark.e2e

USER = {"user_id": "u-e2e", "email": "grace@example.com", "name": "Grace"}
ONBOARDING = [
    "user.create_profile",
    "user.create_workspace",
    "notification.send",
    "airtable.create_integration",
]


async def wait_ended(client: httpx.AsyncClient, saga_id: str) -> dict[str, Any]:
    return (await wait_terminal(client, [saga_id], within=20))[saga_id]


async def newest_saga(client: httpx.AsyncClient) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            items = (await client.get("/sagas/")).json()["items"]
            if items:
                return items[0]
            await trio.sleep(0.05)


def server_env(port: int, stand_in_url: str) -> dict[str, str]:
    """The server's settings: its port, the stand-in's services, short timeouts."""
    env = {name: stand_in_url + path for name, path in SERVICE_PATHS.items()}
    env.update(
        PORT=str(port),
        SERVICE_AUTH_TOKEN=TOKEN,
        SAGA_STEP_TIMEOUT_SECONDS="5",
        SAGA_RETRY_BACKOFF_SECONDS="0.05",
        SAGA_RETRY_BACKOFF_MAX_SECONDS="0.2",
    )
    return env


@asynccontextmanager
async def orchestrator(
    tmp_path: Path, env: dict[str, str], log_name: str = "server.log"
) -> AsyncIterator[httpx.AsyncClient]:
    """The real server process (SIGKILLed at the end) and a client of its API."""
    url = f"http://127.0.0.1:{env['PORT']}"
    async with (
        server_process(tmp_path, log_name=log_name, **env),
        httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY}, timeout=5) as client,
    ):
        await wait_ready(client)
        yield client
    assert TOKEN not in server_log(tmp_path, log_name)


@pytest.fixture
async def stand_in(nursery: trio.Nursery) -> tuple[DevState, dict[str, str]]:
    """The stand-in in this process, publishing to the port the server will listen on; and
    the server's settings."""
    port = free_port()
    state = DevState(token=TOKEN, sync_delay=0.1)
    state.announcer = HttpAnnouncer(orchestrator_url=f"http://127.0.0.1:{port}", api_key=API_KEY)
    stand_in_port = await nursery.start(partial(serve_devservices, state, port=0))
    return state, server_env(port, f"http://127.0.0.1:{stand_in_port}")


@pytest.fixture
async def running(
    tmp_path: Path, stand_in: tuple[DevState, dict[str, str]]
) -> AsyncIterator[tuple[DevState, httpx.AsyncClient]]:
    state, env = stand_in
    async with orchestrator(tmp_path, env) as client:
        yield state, client


async def start(client: httpx.AsyncClient, saga_type: str, data: dict[str, Any]) -> str:
    response = await client.post("/sagas/start", json={"saga_type": saga_type, "data": data})
    assert 202 == response.status_code, response.text
    return response.json()["saga_id"]


async def test_onboarding_started_through_the_api_retries_a_503_and_completes(running):
    state, client = running
    state.faults.add(Fault(operation="notification.send", status=503, retry_after=0))
    final = await wait_ended(client, await start(client, "user_onboarding", USER))
    assert "completed" == final["status"], final
    assert ONBOARDING == state.operations()
    assert [503, 202] == [c.status for c in state.calls if c.operation == "notification.send"]


async def test_onboarding_is_started_by_a_user_registered_event(running):
    state, client = running
    data = {**USER, "registered_at": "2025-01-01T00:00:00Z"}  # more than the saga takes
    event = {"event_type": "user.registered", "stream_id": "user-u-e2e", "data": data}
    assert 202 == (await client.post("/events/publish", json=event)).status_code
    saga = await newest_saga(client)
    assert "user_onboarding" == saga["saga_type"]
    assert "completed" == (await wait_ended(client, saga["saga_id"]))["status"]
    assert ONBOARDING == state.operations()


async def test_airtable_integration_completes_when_the_connector_publishes_the_reply(running):
    state, client = running
    data = {"user_id": "u-e2e", "workspace_id": "ws-1", "base_id": "appE2E"}
    final = await wait_ended(client, await start(client, "airtable_integration", data))
    assert "completed" == final["status"], final
    [announced] = state.announcements
    assert "airtable.sync.completed" == announced.event_type
    assert 100 == final["steps"][3]["result"]["reply"]["records"]


async def test_onboarding_finishes_after_a_sigkill_mid_step_with_each_effect_once(
    tmp_path: Path, stand_in: tuple[DevState, dict[str, str]]
):
    state, env = stand_in
    # the workspace is created, then its answer is held back while the server is killed
    state.faults.add(Fault(operation="user.create_workspace", status=None, delay=60, when="after"))
    async with orchestrator(tmp_path, env, "first.log") as client:
        saga_id = await start(client, "user_onboarding", USER)
        with trio.fail_after(20):
            while "user.create_workspace" not in state.operations():
                await trio.sleep(0.02)
    # leaving the block killed the server with SIGKILL; a new one resumes the saga
    async with orchestrator(tmp_path, env, "second.log") as client:
        final = await wait_ended(client, saga_id)
    assert "completed" == final["status"], final
    assert ONBOARDING == state.operations()
    # the step ran again after the restart with the same key and got the first answer; the
    # first call, held back, was never answered: its caller died
    calls = [c for c in state.calls if c.operation == "user.create_workspace"]
    assert [(None, False), (201, True)] == sorted(
        ((c.status, c.replayed) for c in calls), key=lambda call: call[1]
    )


async def test_a_cancel_while_the_workspace_is_created_ends_cancelled_with_nothing_left(
    tmp_path: Path, stand_in: tuple[DevState, dict[str, str]]
):
    # the reported case: `devservices` with a 30 s delay on user.create_workspace, start an
    # onboarding, cancel it through the API while that call is in flight
    _, env = stand_in
    services = env["USER_SERVICE_URL"].removesuffix("/user")
    delay = {"operation": "user.create_workspace", "status": None, "delay": 30, "times": None}
    async with (
        orchestrator(tmp_path, env) as client,
        httpx.AsyncClient(base_url=services, timeout=5) as control,
    ):
        assert 201 == (await control.post("/_control/faults", json=delay)).status_code
        saga_id = await start(client, "user_onboarding", USER)
        with trio.fail_after(20):
            while (await client.get(f"/sagas/{saga_id}")).json()["steps"][1]["status"] != (
                "running"
            ):
                await trio.sleep(0.05)
        cancel = await client.post(f"/sagas/{saga_id}/cancel", json={"reason": "changed mind"})
        assert 202 == cancel.status_code, cancel.text
        final = await wait_ended(client, saga_id)
        assert "cancelled" == final["status"], final
        held = (await control.get("/_control/state")).json()
        effects = (await control.get("/_control/effects")).json()["effects"]
    profile, workspace = final["steps"][:2]
    assert ("completed", "unknown") == (profile["status"], workspace["status"])
    assert [("completed", 1, None)] * 2 == [
        (s["compensation_status"], s["compensation_attempts"], s["compensation_error"])
        for s in (profile, workspace)
    ]
    assert ([], [], {}) == (held["profiles"], held["workspaces"], held["leftovers"])
    assert [
        ("user.create_profile", f"{saga_id}:create_profile"),
        ("user.delete_workspace_by_key", f"{saga_id}:create_workspace:undo"),
        ("user.delete_profile", f"{saga_id}:create_profile:undo"),
    ] == [(e["operation"], e["idempotency_key"]) for e in effects]
    assert "TypeError" not in server_log(tmp_path)
