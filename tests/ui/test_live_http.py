"""The dashboard over HTTP against the real service: sign-in, CSRF, read-only keys, the live
stream (order, bound, 503) and pages that need no browser."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.live import LiveServer, open_live_server
from tests.support.sagas import SAGAS
from tests.support.sse import open_event_stream

READER_KEY = "reader-0123456789abcdef"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with open_live_server(
        tmp_path, sagas=SAGAS, api_keys=f"reader:{READER_KEY}:read", ui_live_connections=2
    ) as live:
        yield live


def _token(html: str) -> str:
    """The CSRF token of the page's last form (the sign-in form, or the saga page's actions)."""
    found = re.findall(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found[-1]


@asynccontextmanager
async def signed_in(server: LiveServer, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client (without the API key header) holding a dashboard session for ``key``."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        form = await client.get("/ui/login")
        answer = await client.post(
            "/ui/login", data={"csrf_token": _token(form.text), "api_key": key, "next": "/ui/"}
        )
        assert 303 == answer.status_code, answer.text
        yield client


async def start(server: LiveServer, saga_type: str, data: dict[str, Any]) -> str:
    async with server.client() as client:
        answer = await client.post("/sagas/start", json={"saga_type": saga_type, "data": data})
        assert 202 == answer.status_code, answer.text
        return answer.json()["saga_id"]


async def test_sign_in_sets_a_strict_http_only_cookie_without_the_key(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert 303 == (await client.get("/ui/")).status_code
        form = await client.get("/ui/login")
        answer = await client.post(
            "/ui/login",
            data={"csrf_token": _token(form.text), "api_key": server.api_key, "next": "/ui/"},
        )
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
        assert server.api_key not in cookie
        assert "/ui/" == answer.headers.get("location"), (answer.status_code, answer.text[:300])
        page = await client.get("/ui/")
        assert 200 == page.status_code and "Signed in as <strong>default</strong>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_a_wrong_key_or_a_sign_in_without_its_token_is_refused(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        form = await client.get("/ui/login")
        wrong = await client.post(
            "/ui/login", data={"csrf_token": _token(form.text), "api_key": "not-a-key-at-all"}
        )
        assert 401 == wrong.status_code and "saga_ui=" not in wrong.headers.get("set-cookie", "")
        forged = await client.post("/ui/login", data={"api_key": server.api_key})
        assert 403 == forged.status_code


async def test_a_forged_session_cookie_or_next_leads_nowhere(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, cookies={"saga_ui": "x.y.z"}) as client:
        answer = await client.get("/ui/sagas/00000000-0000-0000-0000-000000000000")
        assert 303 == answer.status_code
        assert answer.headers["location"].startswith("/ui/login?next=/ui/sagas/")
    async with signed_in(server, server.api_key or "") as client:
        form = await client.get("/ui/login")
        answer = await client.post(
            "/ui/login",
            data={
                "csrf_token": _token(form.text),
                "api_key": server.api_key,
                "next": "//evil.example/ui/",
            },
        )
        assert "/ui/" == answer.headers.get("location"), (answer.status_code, answer.text[:300])


async def test_a_post_needs_the_session_token_and_a_key_that_may_write(server: LiveServer) -> None:
    saga_id = await start(server, "test_slow", {"seconds": 60})
    async with signed_in(server, READER_KEY) as reader:
        page = await reader.get(f"/ui/sagas/{saga_id}")
        assert "Cancel the saga" not in page.text and "read-only" in page.text
        form = {"reason": "r", "confirm": "yes", "csrf_token": _token(page.text)}
        answer = await reader.post(f"/ui/sagas/{saga_id}/cancel", data=form)
        assert 403 == answer.status_code and "forbidden" == answer.json()["error"]["code"]
        out = await reader.post("/ui/logout", data={"csrf_token": _token(page.text)})
        assert 303 == out.status_code  # signing out is not an action
        assert 303 == (await reader.get(f"/ui/sagas/{saga_id}")).status_code
    async with signed_in(server, server.api_key or "") as writer:
        page = await writer.get(f"/ui/sagas/{saga_id}")
        assert "Cancel the saga" in page.text
        forged = await writer.post(f"/ui/sagas/{saga_id}/cancel", data={"reason": "r"})
        assert 403 == forged.status_code and "csrf_rejected" == forged.json()["error"]["code"]
        other = {"reason": "r", "confirm": "yes", "csrf_token": "0" * 64}
        assert 403 == (await writer.post(f"/ui/sagas/{saga_id}/cancel", data=other)).status_code
        done = await writer.post(
            f"/ui/sagas/{saga_id}/cancel",
            data={"reason": "r", "confirm": "yes", "csrf_token": _token(page.text)},
        )
        assert 303 == done.status_code and "done=cancel" in done.headers["location"]


async def test_the_proxy_header_signs_in_without_a_cookie(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": READER_KEY}) as c:
        page = await c.get("/ui/")
        assert 200 == page.status_code and "reader" in page.text
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        assert 401 == (await anonymous.get("/ui/live")).status_code


def session_cookie(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Cookie": f"saga_ui={client.cookies['saga_ui']}"}


async def test_the_live_stream_delivers_a_saga_s_transitions_in_order(server: LiveServer) -> None:
    async with signed_in(server, server.api_key or "") as client:
        cookie = session_cookie(client)
    async with open_event_stream(server.url, "/ui/live", cookie) as live:
        assert 200 == live.status
        assert live.headers["content-type"].startswith("text/event-stream")
        saga_id = await start(server, "test_two_steps", {"name": "live"})
        with trio.fail_after(10):
            events = await live.transitions(6)
    assert {saga_id} == {e["saga_id"] for e in events}
    assert [
        ("SagaStarted", None),
        ("StepStarted", "reserve"),
        ("StepCompleted", "reserve"),
        ("StepStarted", "confirm"),
        ("StepCompleted", "confirm"),
        ("SagaCompleted", None),
    ] == [(e["transition"], e["step"]) for e in events]
    assert sorted(e["seq"] for e in events) == [e["seq"] for e in events]
    assert "completed" == events[-1]["status"]


async def test_streams_beyond_the_setting_get_503(server: LiveServer) -> None:
    async with signed_in(server, server.api_key or "") as client:
        cookie = session_cookie(client)
        async with (
            open_event_stream(server.url, "/ui/live", cookie) as first,
            open_event_stream(server.url, "/ui/live", cookie) as second,
        ):
            assert (200, 200) == (first.status, second.status)
            third = await client.get("/ui/live")
            assert 503 == third.status_code
            assert "too_many_streams" == third.json()["error"]["code"]
            assert int(third.headers["retry-after"]) >= 1
        with trio.fail_after(5):  # the two went away: a stream is served again
            while True:
                async with open_event_stream(server.url, "/ui/live", cookie) as again:
                    if again.status == 200:
                        break
                await trio.sleep(0.05)


async def test_the_pages_answer_and_escape_what_they_show(server: LiveServer) -> None:
    saga_id = await start(server, "test_two_steps", {"name": "<script>alert(1)</script>"})
    async with signed_in(server, server.api_key or "") as client:
        for path in ("/ui/", "/ui/events", "/ui/metrics", f"/ui/sagas/{saga_id}"):
            page = await client.get(path)
            assert 200 == page.status_code, path
            assert "<script>alert" not in page.text
        assert 404 == (await client.get("/ui/sagas/not-a-saga")).status_code
        assert 404 == (await client.get("/ui/static/../config.py")).status_code
        css = await client.get("/ui/static/app.css")
        assert css.headers["content-type"].startswith("text/css")
        by_id = await client.get(f"/ui/?q={saga_id}")
        assert f"/ui/sagas/{saga_id}" == by_id.headers["location"]
        page = await client.get("/ui/?q=" + saga_id[:8])
        assert saga_id in page.text
        async with server.client() as api:
            key = (await api.get(f"/sagas/{saga_id}")).json()["idempotency_key"]
        found = await client.get("/ui/sagas/by-key", params={"key": key})
        assert f"/ui/sagas/{saga_id}" == found.headers["location"]
        assert 404 == (await client.get("/ui/sagas/by-key", params={"key": "no"})).status_code


async def test_the_events_page_filters_and_links_an_event_to_its_saga(server: LiveServer) -> None:
    saga_id = await start(server, "test_slow", {"seconds": 60})
    async with server.client() as api:
        for stream, data in (("orders-1", {"saga_id": saga_id}), ("orders-2", {})):
            published = await api.post(
                "/events/publish",
                json={"event_type": "order.noted", "stream_id": stream, "data": data},
            )
            assert published.status_code in (200, 202), published.text
    async with signed_in(server, server.api_key or "") as client:
        page = (await client.get("/ui/events", params={"stream": "orders-1"})).text
        assert "orders-1" in page and "orders-2" not in page
        assert f'href="/ui/sagas/{saga_id}">delivered to {saga_id[:8]}' in page
        other = (await client.get("/ui/events", params={"type": "order.noted"})).text
        assert "orders-1" in other and "orders-2" in other
        assert "orders-" not in (await client.get("/ui/events?type=other")).text
