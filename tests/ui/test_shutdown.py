"""SIGTERM with browsers watching: the live streams end at once, and the process exits 0 within
its grace period (the streams do not hold Hypercorn's graceful shutdown)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.server import API_KEY, free_port, server_log, server_process, wait_ready
from tests.support.sse import open_event_stream

GRACE = 2.0
"""``SHUTDOWN_GRACE_SECONDS`` of the server (Hypercorn's graceful timeout too)."""


@pytest.mark.e2e
async def test_sigterm_ends_the_live_streams_and_exits_0_within_the_grace(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": API_KEY}
    async with server_process(
        tmp_path, PORT=str(port), SHUTDOWN_GRACE_SECONDS=str(GRACE)
    ) as process:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=5) as client:
            await wait_ready(client)
            start = await client.post(
                "/sagas/start", json={"saga_type": "test_slow", "data": {"seconds": 60}}
            )
            assert 202 == start.status_code
        async with (
            open_event_stream(url, "/ui/live", headers) as first,
            open_event_stream(url, "/ui/live", headers) as second,
        ):
            assert (200, 200) == (first.status, second.status)
            process.send_signal(signal.SIGTERM)
            began = trio.current_time()
            with trio.fail_after(GRACE):  # before Hypercorn would cut them
                while await first.next_event() is not None:
                    pass
                while await second.next_event() is not None:
                    pass
            ended = trio.current_time() - began
        with trio.fail_after(GRACE + 8):
            returncode = await process.wait()
    log = server_log(tmp_path)
    assert 0 == returncode, log
    assert ended < GRACE
    assert "Traceback" not in log
