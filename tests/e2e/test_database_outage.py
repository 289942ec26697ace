"""PostgreSQL goes away while sagas run: they pause (no next step, no compensation, no step run
again), readiness turns false, and they finish once the database is back."""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.service import run_service

from ..support.recorder import run_recorder
from ..support.server import wait_ready, wait_terminal
from ..support.tcp_proxy import open_tcp_proxy

SAGAS = 6


def through_proxy(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


async def readiness(client: httpx.AsyncClient) -> int:
    return (await client.get("/health/ready")).status_code


async def failed_batches(client: httpx.AsyncClient) -> int:
    """The store transactions that failed, as ``GET /health`` shows them."""
    return int((await client.get("/health")).json()["components"]["store"]["failed_batches"])


async def until(
    read: Callable[[], Awaitable[int]], wanted: int | Callable[[int], bool], within: float = 10.0
) -> None:
    """Poll ``read()`` until it is ``wanted`` (or ``wanted(value)`` holds)."""
    holds = wanted if callable(wanted) else wanted.__eq__
    with trio.fail_after(within):
        while not holds(await read()):
            await trio.sleep(0.05)


@pytest.mark.e2e
@pytest.mark.integration
async def test_sagas_pause_while_postgresql_is_away_and_finish_after(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = urlsplit(pg_dsn)
    async with (
        open_tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
        run_recorder() as (recorder, recorder_url),
    ):
        monkeypatch.setenv("RECORDER_URL", recorder_url)
        settings = Settings(
            host="127.0.0.1",
            port=0,
            data_dir=tmp_path,
            environment="test",
            database_url=through_proxy(pg_dsn, proxy.port),
            saga_modules="tests.support.recording_sagas",
            shutdown_grace_seconds=1.0,
        )
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(run_service, settings, shutdown=stop))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                await wait_ready(client)
                recorder.hold()  # the first steps' calls wait at the service
                ids = []
                for n in range(SAGAS):
                    body = {"saga_type": "recorded_three", "data": {"name": f"n{n}"}}
                    response = await client.post("/sagas/start", json=body)
                    assert 202 == response.status_code, response.text
                    ids.append(response.json()["saga_id"])
                await recorder.called(SAGAS, within=10)  # every saga is in its first step

                proxy.cut()
                await until(lambda: readiness(client), 503)
                recorder.release()  # the steps in flight at the cut finish at the service
                await recorder.reached(SAGAS, within=10)
                # None can record that its step completed: each retries its append (the store
                # fails round after round), and none starts its next step or compensates.
                await until(lambda: failed_batches(client), lambda n: n >= 3, within=30)
                assert (SAGAS, SAGAS) == (recorder.calls, len(recorder.applied))
                assert 503 == await readiness(client)

                proxy.restore()
                await wait_ready(client)
                final = await wait_terminal(client, ids, within=30)
            stop.set()

    assert ["completed"] * SAGAS == [final[i]["status"] for i in ids]
    effects = collections.Counter((e.saga_id, e.step, e.op) for e in recorder.applied)
    expected = {(saga_id, step, "do") for saga_id in ids for step in ("one", "two", "three")}
    assert expected == set(effects)  # every step, no undo
    assert {1} == set(effects.values())  # each once
    assert 3 * SAGAS == recorder.calls  # and called once: no step ran again after the outage
