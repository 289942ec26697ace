"""Every text a request carries is checked before it can reach the store: a NUL character (which
PostgreSQL refuses in text and in ``jsonb``) in a path, a query, a cursor or a body is a 400 in
the one error shape naming what is wrong, the same on SQLite and on PostgreSQL, never a 500."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import open_live_server
from tests.support.server import wait_ready


def cursor(created_at: float, saga_id: str) -> str:
    """A cursor as the service makes them, around any saga id."""
    raw = json.dumps([created_at, saga_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


SAGA = str(uuid.uuid4())
PATHS_AND_QUERIES: list[tuple[str, str, str, str]] = [
    # method, target, expected code, the parameter named
    ("GET", "/events/stream/a%00b", "invalid_path", "stream_id"),
    ("POST", "/events/replay/%00x", "invalid_path", "stream_id"),
    ("GET", f"/sagas/{SAGA}%00", "invalid_path", "saga_id"),
    ("POST", f"/sagas/{SAGA}%00/cancel", "invalid_path", "saga_id"),
    ("GET", "/sagas/?saga_type=%00", "invalid_query", "saga_type"),
    ("GET", "/sagas/?created_after=1%00", "invalid_query", "created_after"),
    ("GET", f"/sagas/?cursor={cursor(1.0, 'a' + chr(0) + 'b')}", "invalid_query", "cursor"),
    ("GET", "/events/all?event_type=user%00", "invalid_query", "event_type"),
    ("GET", "/events/stream/s?from_version=1&x%00=1", "invalid_query", "x\x00"),
]
NUL = "a\u0000b"
START = {"saga_type": "test_two_steps", "data": {"name": "n"}}
EVENT = {"event_type": "user.registered", "stream_id": "s-1", "data": {}}
BODIES: list[tuple[str, dict[str, Any]]] = [
    ("/sagas/start", {**START, "data": {"name": NUL}}),
    ("/sagas/start", {**START, "data": {NUL: "n"}}),
    ("/sagas/start", {**START, "idempotency_key": NUL}),
    ("/sagas/start", {**START, "correlation_id": NUL}),
    ("/events/publish", {**EVENT, "data": {"nested": [{"x": NUL}]}}),
    ("/events/publish", {**EVENT, "metadata": {NUL: 1}}),
    ("/events/publish", {**EVENT, "event_id": NUL}),
    ("/events/publish", {**EVENT, "stream_id": NUL}),
]


async def assert_refused_the_same_way(client: httpx.AsyncClient) -> None:
    """Each probe is a 400 naming its parameter (bodies: ``invalid_json``); every failure is
    listed at the end."""
    await wait_ready(client)  # recovery done: the readiness asked at the end is the probes'
    wrong = []
    for method, target, code, field in PATHS_AND_QUERIES:
        response = await client.request(method, target)
        got = (response.status_code, response.json().get("error", {}))
        expected = (400, code, [field])
        seen = (got[0], got[1].get("code"), [d["field"] for d in got[1].get("details", [])])
        if seen != expected:
            wrong.append(f"{method} {target}: {seen} != {expected}")
    for path, body in BODIES:
        response = await client.post(path, content=json.dumps(body).encode(), headers=JSON)
        error = response.json().get("error", {})
        if (response.status_code, error.get("code")) != (400, "invalid_json"):
            wrong.append(f"POST {path} {body}: {response.status_code} {response.text[:200]}")
        elif "NUL" not in error["message"]:
            wrong.append(f"POST {path}: the message does not say why: {error['message']}")
    assert [] == wrong, "\n".join(wrong)
    listed = await client.get("/sagas/")
    assert (200, []) == (listed.status_code, listed.json()["items"])
    ready = await client.get("/health/ready")
    assert 200 == ready.status_code, ready.text  # what was not ready, if it was not


JSON = {"Content-Type": "application/json"}


async def test_a_nul_anywhere_is_refused_on_sqlite(tmp_path: Path) -> None:
    async with open_live_server(tmp_path) as live, live.client() as client:
        await assert_refused_the_same_way(client)


@pytest.mark.integration
async def test_a_nul_anywhere_is_refused_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    async with open_live_server(tmp_path, database_url=pg_dsn) as live, live.client() as client:
        await assert_refused_the_same_way(client)
