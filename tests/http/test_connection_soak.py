"""Soak: the real server process holds 1,000 idle keep-alive connections and a slow-header
client while it keeps answering other requests; then it closes every one of them after the
keep-alive timeout (bounded: about 15 s)."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.raw_http import Reader, connect, request
from tests.support.server import API_KEY, free_port, server_log, server_process, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

IDLE = 1000
"""Idle connections held open; half of them made one request first."""
KEEP_ALIVE = 8.0
"""``HTTP_KEEP_ALIVE_SECONDS`` of the server: longer than opening every connection takes
(about 3 s here), so that they are all open at once for a while."""
WITHIN = KEEP_ALIVE + 20
"""Generous bound for each outcome."""
START = json.dumps({"saga_type": "test_two_steps", "data": {"name": "soak"}})
JSON = {"Content-Type": "application/json"}


def allow_descriptors(needed: int) -> None:
    """Raise this process's soft descriptor limit (the server process inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.fail(f"this test needs {needed} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def test_idle_and_slow_connections_are_held_then_closed_while_requests_are_answered(
    tmp_path: Path,
) -> None:
    allow_descriptors(IDLE + 1024)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PORT": str(port), "HTTP_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE)}
    open_now = 0
    opened = closed = 0
    seen_open: list[int] = []  # connections open when each normal request was answered
    answered = 0
    slow_cut_off = trio.Event()

    async def idle_connection(index: int, limiter: trio.CapacityLimiter) -> None:
        nonlocal open_now, opened, closed
        async with limiter:
            stream = await connect(url)
        async with stream:
            open_now += 1
            opened += 1
            reader = Reader(stream)
            if index % 2:
                await stream.send_all(request("GET", "/health/live"))
                assert 200 == (await reader.answer()).status
            assert b"" == await reader.closed(within=WITHIN)
            open_now -= 1
            closed += 1

    async def slow_client() -> None:
        stream = await connect(url)
        async with stream:
            await stream.send_all(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

            async def trickle() -> None:
                try:
                    while True:
                        await trio.sleep(0.2)
                        await stream.send_all(b"x")
                except trio.BrokenResourceError:
                    pass

            async with trio.open_nursery() as nursery:
                nursery.start_soon(trickle)
                assert b"" == await Reader(stream).closed(within=WITHIN)
                nursery.cancel_scope.cancel()
        slow_cut_off.set()

    async def normal_requests(client: httpx.AsyncClient, stop: trio.Event) -> None:
        nonlocal answered
        while not stop.is_set():
            with trio.fail_after(10):  # each one is answered, however busy the server is
                assert 200 == (await client.get("/health/live")).status_code
                started = await client.post("/sagas/start", content=START, headers=JSON)
                assert 202 == started.status_code, started.text
            answered += 1
            seen_open.append(open_now)
            await trio.sleep(0.1)

    async with (
        server_process(tmp_path, **env),
        httpx.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY}, timeout=10) as client,
    ):
        await wait_ready(client)
        stop = trio.Event()
        with trio.fail_after(WITHIN + 30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(normal_requests, client, stop)
                async with trio.open_nursery() as connections:
                    connections.start_soon(slow_client)
                    limiter = trio.CapacityLimiter(50)  # Hypercorn's listen backlog is 100
                    for index in range(IDLE):
                        connections.start_soon(idle_connection, index, limiter)
                stop.set()
        assert 200 == (await client.get("/health/live")).status_code, server_log(tmp_path)

    assert (IDLE, IDLE) == (opened, closed)
    assert slow_cut_off.is_set()
    assert answered > 0
    # requests were answered while every idle connection was held open
    assert IDLE == max(seen_open), seen_open
