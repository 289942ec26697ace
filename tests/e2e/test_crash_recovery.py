"""Kill the real server with SIGKILL while sagas are in flight, start it again, and check that
nothing was lost and no effect was applied twice."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ..support.recorder import Recorder, run_recorder
from ..support.server import (
    API_KEY,
    free_port,
    server_log,
    server_process,
    wait_ready,
    wait_terminal,
)

SAGAS = 40
FAILING = range(0, SAGAS, 4)  # every 4th saga is refused at step "three" and compensates
ALL_EFFECTS = 3 * (SAGAS - len(FAILING)) + 4 * len(FAILING)  # do 1-3, or do 1-2 + undo 2-1


async def start_one(client: httpx.AsyncClient, n: int, ids: list[str]) -> None:
    data = {"name": f"n{n}", "fail_at": "three" if n in FAILING else ""}
    body = {"saga_type": "recorded_three", "data": data, "idempotency_key": f"crash-{n}"}
    response = await client.post("/sagas/start", json=body)
    assert response.status_code == 202, response.text
    ids[n] = response.json()["saga_id"]


async def crash_and_recover(tmp_path: Path, database_url: str) -> None:
    async with run_recorder(delay=0.2) as (recorder, recorder_url):
        port = free_port()
        env = {
            "PORT": str(port),
            "DATABASE_URL": database_url,
            "SAGA_MODULES": "tests.support.recording_sagas",
            "RECORDER_URL": recorder_url,
        }
        base = f"http://127.0.0.1:{port}"
        headers = {"X-API-Key": API_KEY}
        ids: list[str] = [""] * SAGAS
        async with server_process(tmp_path, log_name="first.log", **env) as process:
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
                await wait_ready(client)
                async with trio.open_nursery() as nursery:
                    for n in range(SAGAS):
                        nursery.start_soon(start_one, client, n, ids)
                # kill in the middle: some effects applied, far from all
                await recorder.reached(ALL_EFFECTS // 3, within=30)
            process.kill()
            await process.wait()
        applied_at_kill = len(recorder.applied)

        async with (
            server_process(tmp_path, log_name="second.log", **env),
            httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client,
        ):
            await wait_ready(client)
            final = await wait_terminal(client, ids)
            health = (await client.get("/health")).json()

    log = server_log(tmp_path, "second.log")
    print(
        f"effects applied at the kill: {applied_at_kill} of {ALL_EFFECTS}; "
        f"resumed after restart: {health['components']['coordinator']}"
    )
    assert applied_at_kill < ALL_EFFECTS, "the kill came after every saga had finished"
    assert ALL_EFFECTS == len(recorder.applied)
    # steps interrupted by the kill were sent again after the restart, with the same keys
    assert recorder.calls > ALL_EFFECTS
    assert health["components"]["coordinator"]["recovered"] is True, log
    check_invariants(recorder, ids, final)


def check_invariants(recorder: Recorder, ids: list[str], final: dict[str, dict[str, Any]]) -> None:
    # no effect applied twice for the same saga, step and operation
    seen = collections.Counter((e.saga_id, e.step, e.op) for e in recorder.applied)
    assert [] == [k for k, count in seen.items() if count > 1]
    # every call for a step carried the same key: <saga_id>:<step>
    assert all(e.key == f"{e.saga_id}:{e.step}" for e in recorder.applied)
    for n, saga_id in enumerate(ids):
        saga = final[saga_id]
        done = [e.step for e in recorder.applied if e.saga_id == saga_id and e.op == "do"]
        undone = [e.step for e in recorder.applied if e.saga_id == saga_id and e.op == "undo"]
        if n in FAILING:
            assert "compensated" == saga["status"], saga
            assert ["one", "two"] == done
            assert ["two", "one"] == undone  # exactly the completed steps, in reverse order
        else:
            assert "completed" == saga["status"], saga
            assert ["one", "two", "three"] == done
            assert [] == undone


@pytest.mark.e2e
async def test_sigkill_mid_flight_on_sqlite_loses_nothing(tmp_path: Path) -> None:
    await crash_and_recover(tmp_path, f"sqlite:///{tmp_path / 'sagas.db'}")


@pytest.mark.e2e
@pytest.mark.integration
async def test_sigkill_mid_flight_on_postgresql_loses_nothing(tmp_path: Path, pg_dsn: str) -> None:
    await crash_and_recover(tmp_path, pg_dsn)
