"""Named API keys (``API_KEYS``) through the real app: each key works, a wrong one (even one
sharing all but its last character with a real key) is 401, a read-only key reads and gets 403
on every write; handlers see the key's name; the server's log names the key, never shows one."""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from quart import Response
from quart_trio import QuartTrio

from saga_orchestrator.api_keys import ApiKey
from saga_orchestrator.http.auth import api_key_name, install_auth
from saga_orchestrator.http.errors import install_error_handlers
from tests.support.live import LiveServer, open_live_server
from tests.support.server import API_KEY, free_port, server_log, server_process, wait_ready

OPS_KEY = "ops-0123456789abcdefghijklmnop"
AUDIT_KEY = "audit-0123456789abcdefghijklmn"
API_KEYS = f"ops:{OPS_KEY},auditor:{AUDIT_KEY}:read"
SAGA = "00000000-0000-0000-0000-000000000000"

READS = [
    ("GET", "/sagas/"),
    ("GET", "/sagas/types/available"),
    ("GET", "/events/all"),
    ("GET", "/events/types"),
    ("GET", "/events/stream/user-1"),
    ("HEAD", "/sagas/"),
    ("OPTIONS", "/sagas/start"),
]
WRITES = [
    ("POST", "/sagas/start"),
    ("POST", f"/sagas/{SAGA}/cancel"),
    ("POST", f"/sagas/{SAGA}/retry"),
    ("POST", "/events/publish"),
    ("POST", "/events/replay"),
    ("POST", "/events/replay/user-1"),
    ("DELETE", f"/sagas/{SAGA}"),  # no such route: still refused as a write
    ("PUT", "/sagas/"),
    ("PATCH", "/nowhere"),
]


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with open_live_server(tmp_path, api_keys=API_KEYS) as server:
        yield server


def near_misses(key: str) -> list[str]:
    """Keys a timing or prefix bug could let through: all but the last character, one more."""
    last = "x" if key[-1] != "x" else "y"
    return [key[:-1] + last, key[:-1], key + "0", key.upper(), "z" + key]


async def test_each_key_reads_and_a_wrong_or_near_key_is_401(live: LiveServer) -> None:
    async with live.client(key=False) as client:
        for key in (API_KEY, OPS_KEY, AUDIT_KEY):
            for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
                response = await client.get("/sagas/", headers=headers)
                assert 200 == response.status_code, (key, response.text)
        for key in (API_KEY, OPS_KEY, AUDIT_KEY):
            for wrong in near_misses(key):
                response = await client.get("/sagas/", headers={"X-API-Key": wrong})
                assert 401 == response.status_code, wrong
                assert "unauthorized" == response.json()["error"]["code"]


async def test_full_keys_write(live: LiveServer) -> None:
    body = {"saga_type": "test_two_steps", "data": {"name": "named"}}
    async with live.client(key=False) as client:
        for key in (API_KEY, OPS_KEY):
            response = await client.post("/sagas/start", json=body, headers={"X-API-Key": key})
            assert 202 == response.status_code, response.text


async def test_a_read_only_key_reads_and_gets_403_on_every_write(live: LiveServer) -> None:
    async with live.client(key=False, headers={"X-API-Key": AUDIT_KEY}) as client:
        for method, path in READS:
            response = await client.request(method, path)
            assert response.status_code in (200, 204), (method, path, response.text)
        for method, path in WRITES:
            response = await client.request(method, path, json={"saga_type": "test_two_steps"})
            assert 403 == response.status_code, (method, path, response.text)
            error = response.json()["error"]
            assert ("forbidden", []) == (error["code"], error["details"])
            assert "read-only" in error["message"]
            assert AUDIT_KEY not in response.text
        listed = (await client.get("/sagas/", params={"saga_type": "test_two_steps"})).json()
    assert [] == listed["items"]  # nothing was started by the refused start


async def test_public_routes_stay_open_and_unknown_methods_there_stay_405(
    live: LiveServer,
) -> None:
    async with live.client(key=False, headers={"X-API-Key": AUDIT_KEY}) as client:
        assert 200 == (await client.get("/openapi.json")).status_code
        assert 405 == (await client.post("/health/live")).status_code


async def test_the_openapi_document_says_writes_can_be_forbidden(live: LiveServer) -> None:
    async with live.client() as client:
        document = (await client.get("/openapi.json")).json()
    start = document["paths"]["/sagas/start"]["post"]["responses"]
    listing = document["paths"]["/sagas/"]["get"]["responses"]
    assert "403" in start and "403" not in listing


async def test_handlers_see_the_name_of_the_key() -> None:
    app = QuartTrio(__name__)
    install_error_handlers(app)
    install_auth(
        app,
        [ApiKey(name="ops", key=OPS_KEY), ApiKey(name="auditor", key=AUDIT_KEY, read_only=True)],
    )

    @app.route("/who", methods=["GET", "POST"])
    async def who() -> Response:
        return Response(json.dumps({"name": api_key_name()}), mimetype="application/json")

    client = app.test_client()
    for key, name in ((OPS_KEY, "ops"), (AUDIT_KEY, "auditor")):
        response = await client.get("/who", headers={"X-API-Key": key})
        assert {"name": name} == await response.get_json()
    assert 403 == (await client.post("/who", headers={"X-API-Key": AUDIT_KEY})).status_code
    assert 401 == (await client.get("/who", headers={"X-API-Key": OPS_KEY[:-1]})).status_code


# --- the real server's log ------------------------------------------------------------------


@pytest.mark.e2e
async def test_the_log_names_the_key_and_shows_none(tmp_path: Path) -> None:
    port = free_port()
    wrong = "wrong-0123456789abcdefghijklm"  # not configured: nothing would mask it
    async with (
        server_process(tmp_path, PORT=str(port), LOG_LEVEL="DEBUG", API_KEYS=API_KEYS) as process,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client,
    ):
        await wait_ready(client)
        for key in (API_KEY, OPS_KEY, AUDIT_KEY):
            assert 200 == (await client.get("/sagas/", headers={"X-API-Key": key})).status_code
        refused = await client.post("/sagas/start", json={}, headers={"X-API-Key": AUDIT_KEY})
        assert 403 == refused.status_code
        for given in (wrong, *near_misses(OPS_KEY)):
            response = await client.get("/sagas/", headers={"Authorization": f"Bearer {given}"})
            assert 401 == response.status_code
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert 0 == await process.wait()
    lines = server_log(tmp_path).splitlines()
    for secret in (API_KEY, OPS_KEY, AUDIT_KEY, wrong, *near_misses(OPS_KEY)):
        assert [] == [line for line in lines if secret in line], secret
    access = [line for line in lines if "hypercorn.access" in line and "/sagas/" in line]
    assert any(" - default [" in line and '"GET /sagas/ 1.1" 200' in line for line in access)
    assert any(" - ops [" in line and '"GET /sagas/ 1.1" 200' in line for line in access)
    assert any(" - auditor [" in line and '"POST /sagas/start 1.1" 403' in line for line in access)
    assert any(" - - [" in line and '"GET /sagas/ 1.1" 401' in line for line in access)
    start_up = [line for line in lines if "API key authentication is on" in line]
    assert start_up and "default, ops, auditor (read-only)" in start_up[0]
