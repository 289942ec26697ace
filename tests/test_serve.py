"""The service as a whole: in-process through ``run_service``, and as a real process.

Real clock and real sockets; every wait is bounded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.errors import ConfigError
from saga_orchestrator.service import build_catalog, run_service

from .support.server import API_KEY, free_port, server_env, server_log, server_process

TERMINAL = ("completed", "compensated", "cancelled", "timed_out")


async def wait_until(
    client: httpx.AsyncClient, path: str = "/health/live", *, within: float = 20.0
) -> None:
    """Poll ``path`` until it answers 200."""
    with trio.fail_after(within):
        while True:
            try:
                response = await client.get(path)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return
            await trio.sleep(0.05)


async def run_a_saga(client: httpx.AsyncClient, *, within: float = 10.0) -> dict[str, Any]:
    response = await client.post(
        "/sagas/start", json={"saga_type": "test_two_steps", "data": {"name": "e2e"}}
    )
    assert 202 == response.status_code, response.text
    saga_id = response.json()["saga_id"]
    with trio.fail_after(within):
        while True:
            saga = (await client.get(f"/sagas/{saga_id}")).json()
            if saga["status"] in TERMINAL:
                return saga
            await trio.sleep(0.05)


# --- in-process -----------------------------------------------------------------------------


async def serve_briefly(settings: Settings) -> dict[str, Any]:
    """Run the service in-process on a free port: check it, run sagas, stop it (bounded).

    Returns ``/health`` as it was while serving.
    """
    stop, stopped = trio.Event(), trio.Event()

    async def serve(*, task_status: trio.TaskStatus[int]) -> None:
        await run_service(settings, shutdown=stop, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve)
        assert isinstance(port, int) and port > 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            await wait_until(client, "/health/ready")
            health = (await client.get("/health")).json()
            saga = await run_a_saga(client)
            assert "completed" == saga["status"]
            # A slow saga in flight does not hold up shutdown: it resumes on the next start.
            response = await client.post(
                "/sagas/start", json={"saga_type": "test_slow", "data": {"seconds": 60}}
            )
            assert 202 == response.status_code
        stop.set()
        with trio.fail_after(5):
            await stopped.wait()
    return health


def in_process_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        environment="test",
        saga_modules="tests.support.sagas",
        shutdown_grace_seconds=1.0,
        **overrides,
    )


async def test_run_service_reports_its_port_serves_and_stops_cleanly(tmp_path: Path) -> None:
    health = await serve_briefly(in_process_settings(tmp_path))
    assert "sqlite" == health["components"]["store"]["kind"]
    assert (tmp_path / "saga_orchestrator.db").exists()
    # The saga left running is resumed by the next start.
    health = await serve_briefly(in_process_settings(tmp_path))
    assert 1 == health["components"]["coordinator"]["recovered_sagas"]


@pytest.mark.integration
async def test_run_service_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    health = await serve_briefly(in_process_settings(tmp_path, database_url=pg_dsn))
    assert "postgresql" == health["components"]["store"]["kind"]


async def test_a_bad_saga_module_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SAGA_MODULES: cannot import 'no_such_module'"):
        build_catalog(Settings(saga_modules="no_such_module"))
    with pytest.raises(ConfigError, match="has no SAGAS"):
        build_catalog(Settings(saga_modules="tests.http"))
    with pytest.raises(ConfigError, match="registered twice"):
        build_catalog(Settings(saga_modules="tests.support.sagas,tests.support.sagas"))


# --- the real process -----------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_the_server_runs_a_saga_and_stops_cleanly_on_a_signal(
    tmp_path: Path, signum: signal.Signals
) -> None:
    port = free_port()
    async with server_process(tmp_path, PORT=str(port)) as process:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}, timeout=5
        ) as client:
            await wait_until(client)
            assert 401 == (await client.get("/sagas/", headers={"X-API-Key": "wrong"})).status_code
            saga = await run_a_saga(client)
            assert "completed" == saga["status"]
            assert ["completed", "completed"] == [step["status"] for step in saga["steps"]]
        process.send_signal(signum)
        with trio.fail_after(10):
            returncode = await process.wait()
    log = server_log(tmp_path)
    assert 0 == returncode, log
    assert f"listening on http://127.0.0.1:{port}" in log
    assert "4 saga types" in log  # the 2 built-in sagas and the 2 of tests.support.sagas
    assert "saga orchestrator stopped" in log
    assert API_KEY not in log
    assert "Traceback" not in log


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"PORT": "abc", "MAX_ACTIVE_SAGAS": "many"}, ["PORT='abc'", "MAX_ACTIVE_SAGAS='many'"]),
        ({"SAGA_MODULES": "no_such_module"}, ["SAGA_MODULES: cannot import 'no_such_module'"]),
        (  # server_env sets API_KEY (named default) too
            {"API_KEYS": "ops:ops-secret-0123456789,default:def-secret-0123456789,x:short-secret"},
            ["API_KEYS entry 3 of 3 is not valid", "API_KEYS names 'default' twice"],
        ),
    ],
)
async def test_bad_configuration_exits_2_with_one_line_per_problem(
    tmp_path: Path, env: dict[str, str], expected: list[str]
) -> None:
    async with server_process(tmp_path, **env) as process:
        with trio.fail_after(20):
            returncode = await process.wait()
    lines = server_log(tmp_path).splitlines()
    assert 2 == returncode, lines
    assert len(expected) == len(lines)
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start)
    assert "secret" not in "\n".join(lines)


# --- the command line -----------------------------------------------------------------------


def test_cli_config_prints_settings_with_secrets_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from saga_orchestrator.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_KEY", "hunter2-key")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:hunter2@db/sagas")
    monkeypatch.setenv("API_KEYS", "ops:hunter2-0123456789abc,audit:hunter2-0123456789abd:read")
    assert 0 == main(["config"])
    lines = capsys.readouterr().out.splitlines()
    assert "API_KEY=***" in lines
    assert "API_KEYS=ops:***,audit:***:read" in lines
    assert "DATABASE_URL=postgresql://app:***@db/sagas" in lines
    assert "SAGA_MODULES=" in lines
    assert "USE_REDIS_EVENT_BUS=false" in lines
    assert "hunter2" not in "\n".join(lines)


def test_serve_help_documents_host_port_and_the_settings_that_matter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from saga_orchestrator.cli import main

    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert 0 == info.value.code
    text = capsys.readouterr().out
    for said in ("--host", "--port", "docs/configuration.md", "API_KEY, API_KEYS", "DATABASE_URL"):
        assert said in text, said


async def test_serve_listens_where_host_and_port_options_say(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [
                sys.executable,
                "-m",
                "saga_orchestrator",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=server_env(tmp_path, HOST="10.255.255.1", PORT=str(free_port())),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                await wait_until(client, "/health/ready")
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                assert 0 == await process.wait(), log_path.read_text()


def test_cli_without_a_command_prints_help_and_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from saga_orchestrator.cli import main

    assert 2 == main([])
    assert "serve" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert 0 == info.value.code
    assert "0.1.0" in capsys.readouterr().out


def test_cli_migrate_applies_then_has_nothing_to_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from saga_orchestrator.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert 0 == main(["migrate"])
    assert "applied" in capsys.readouterr().out
    assert 0 == main(["migrate"])
    assert "nothing to apply" in capsys.readouterr().out
