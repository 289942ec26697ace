"""PostgreSQL goes away while sagas run: they pause (no compensation), readiness turns false,
and they finish once the database is back."""

from __future__ import annotations

import collections
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


@pytest.mark.e2e
@pytest.mark.integration
async def test_sagas_pause_while_postgresql_is_away_and_finish_after(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = urlsplit(pg_dsn)
    async with (
        open_tcp_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy,
        run_recorder(delay=0.3) as (recorder, recorder_url),
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
                ids = []
                for n in range(SAGAS):
                    body = {"saga_type": "recorded_three", "data": {"name": f"n{n}"}}
                    response = await client.post("/sagas/start", json=body)
                    assert 202 == response.status_code, response.text
                    ids.append(response.json()["saga_id"])
                await recorder.reached(SAGAS, within=10)  # every saga is in its steps

                proxy.cut()
                with trio.fail_after(10):
                    while await readiness(client) != 503:
                        await trio.sleep(0.1)
                # steps in flight at the cut may finish; no new step starts while the store
                # cannot record it, and nothing is compensated
                await trio.sleep(1)
                paused_at = len(recorder.applied)
                await trio.sleep(2)
                assert paused_at == len(recorder.applied)
                assert paused_at < 3 * SAGAS
                assert 503 == await readiness(client)

                proxy.restore()
                await wait_ready(client)
                final = await wait_terminal(client, ids, within=30)
            stop.set()

    assert ["completed"] * SAGAS == [final[i]["status"] for i in ids]
    effects = collections.Counter((e.saga_id, e.step, e.op) for e in recorder.applied)
    assert 3 * SAGAS == len(effects)  # every step once, no undo
    assert {1} == set(effects.values())
    assert all(op == "do" for _, _, op in effects)
