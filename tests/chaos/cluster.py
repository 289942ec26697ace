"""The processes of a chaos run, and the handles the fault injector strikes them through.

* PostgreSQL and Redis of the run's own (:mod:`tests.support.throwaway`): restartable, on fixed
  loopback ports, never the machine's shared servers;
* the downstream stand-in (``python -m saga_orchestrator devservices``): stalled with SIGSTOP;
* the orchestrator (``python -m saga_orchestrator.main``) under a small supervisor: killed with
  SIGKILL and started again on the same port; an exit nobody asked for is recorded (with the
  tail of its log) and the process is started again, as a process supervisor would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from saga_orchestrator.devservices._app import SERVICE_PATHS

from ..support.server import API_KEY, server_env, server_process
from ..support.throwaway import ThrowawayPostgres, ThrowawayRedis, stable_port
from .plan import ChaosConfig

EVENT_STREAM = "saga:events"
LIFECYCLE_STREAM = "saga.lifecycle"
CONSUMER_GROUP = "saga-orchestrator"
START_WITHIN = 60.0
"""Most seconds a process may take to answer after it is started."""


async def wait_answering(url: str, *, within: float, ok: tuple[int, ...] = (200,)) -> None:
    """Poll ``url`` until it answers one of ``ok``."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        with trio.fail_after(within):
            while True:
                try:
                    if (await client.get(url)).status_code in ok:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.1)


def log_tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@attrs.define
class Exit:
    incarnation: int
    code: int | None
    expected: bool
    log: str
    """The tail of the incarnation's log when the exit was not expected."""
    at: float = 0.0
    """Wall-clock time (``time.time()``) when it was seen to have ended: after everything the
    incarnation did, before anything the next one does."""


class Orchestrator:
    """``python -m saga_orchestrator.main`` on a fixed port, restarted whenever it exits."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int) -> None:
        self.workdir = workdir
        self.env = {**env, "PORT": str(port)}
        self.port = port
        self.incarnation = 0
        self.exits: list[Exit] = []
        self.process: trio.Process | None = None
        self._killing = False
        self._downtime = 0.0
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_path(self, incarnation: int) -> Path:
        return self.workdir / f"orchestrator-{incarnation}.log"

    async def supervise(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the orchestrator until :meth:`stop`; started once it is ready."""
        first = True
        while not self._stopping:
            self.incarnation += 1
            name = self.log_path(self.incarnation).name
            async with server_process(self.workdir, log_name=name, **self.env) as process:
                self.process = process
                if first:
                    await wait_answering(f"{self.url}/health/ready", within=START_WITHIN)
                    task_status.started()
                    first = False
                code = await process.wait()
            ended = time.time()
            expected = self._killing or self._stopping
            tail = "" if expected else log_tail(self.log_path(self.incarnation))
            self.exits.append(Exit(self.incarnation, code, expected, tail, ended))
            pause = self._downtime if self._killing else 1.0
            self._killing = False
            if not self._stopping:
                await trio.sleep(pause)

    async def kill(self, downtime: float) -> None:
        """SIGKILL; started again after ``downtime`` s; returns once it answers again."""
        process, incarnation = self.process, self.incarnation
        assert process is not None
        if process.returncode is None:  # else it exited by itself and is being started again
            self._killing, self._downtime = True, downtime
            process.kill()
        while self.incarnation == incarnation:
            await trio.sleep(0.01)
        await wait_answering(f"{self.url}/health/live", within=START_WITHIN)

    async def stop(self) -> None:
        """SIGTERM (an orderly stop), SIGKILL if it takes too long."""
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()


class StandIn:
    """The downstream stand-in (``saga-orchestrator devservices``) in a process of its own."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.process: trio.Process | None = None
        self.stalled = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, str]:
        """The orchestrator's settings that point it at the stand-in."""
        return {name: self.url + path for name, path in SERVICE_PATHS.items()}

    @asynccontextmanager
    async def running(
        self, *, orchestrator_url: str, sync_delay: float, seed: int, env: dict[str, str]
    ) -> AsyncIterator[StandIn]:
        command = [
            sys.executable, "-m", "saga_orchestrator", "devservices",
            "--port", str(self.port), "--orchestrator-url", orchestrator_url,
            "--sync-delay", str(sync_delay), "--seed", str(seed),
        ]  # fmt: skip
        with (self.workdir / "standin.log").open("wb") as log:
            process = await trio.lowlevel.open_process(
                command,
                cwd=self.workdir,
                env=server_env(self.workdir, **env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.process = process
            try:
                await wait_answering(f"{self.url}/", within=START_WITHIN)
                yield self
            finally:
                self.resume()
                process.kill()
                with trio.move_on_after(5, shield=True):
                    await process.wait()

    def stall(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is answered."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.stalled = True

    def resume(self) -> None:
        if self.stalled and self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGCONT)
        self.stalled = False

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=60.0) as client:
            response = await client.request(method, f"/_control/{path}", json=body)
            response.raise_for_status()
            return response.json() if response.content else None

    async def remove_fault(self, fault: dict[str, Any]) -> None:
        """Take one fault away (the control API clears them all: the others are added again)."""
        faults = (await self.control("GET", "faults"))["faults"]
        await self.control("DELETE", "faults")
        removed = False
        for other in faults:
            if not removed and {k: other.get(k) for k in fault} == fault:
                removed = True
                continue
            await self.control("POST", "faults", other)


@attrs.define
class Cluster:
    config: ChaosConfig
    workdir: Path
    postgres: ThrowawayPostgres
    redis: ThrowawayRedis
    standin: StandIn
    orchestrator: Orchestrator

    @property
    def api_key(self) -> str:
        return API_KEY


def orchestrator_settings(
    config: ChaosConfig, postgres: ThrowawayPostgres, redis: ThrowawayRedis, standin: StandIn
) -> dict[str, str]:
    """The orchestrator's environment for a run."""
    return {
        "DATABASE_URL": postgres.url,
        "USE_REDIS_EVENT_BUS": "true",
        "REDIS_URL": redis.url,
        "EVENT_STREAM": EVENT_STREAM,
        "LIFECYCLE_STREAM": LIFECYCLE_STREAM,
        "CONSUMER_GROUP": CONSUMER_GROUP,
        "SAGA_MODULES": "",
        "SAGA_TIMEOUT_SECONDS": f"{config.saga_timeout:g}",
        "SAGA_STEP_TIMEOUT_SECONDS": f"{config.step_timeout:g}",
        "SAGA_RETRY_BACKOFF_SECONDS": "0.3",
        "SAGA_RETRY_BACKOFF_MAX_SECONDS": "2",
        # compensations outlast any stall of the run: none parks for want of attempts
        "COMPENSATION_RETRY_ATTEMPTS": "30",
        "BUS_MAX_STREAM_LENGTH": "10000000",  # nothing is trimmed during a run
        "BUS_CLAIM_IDLE_SECONDS": "3",
        "RELAY_POLL_SECONDS": "0.5",
        **standin.settings(),
    }


@asynccontextmanager
async def open_cluster(
    config: ChaosConfig,
    workdir: Path,
    source: Path | None = None,
    *,
    overrides: dict[str, str] | None = None,
) -> AsyncIterator[Cluster]:
    """Start PostgreSQL, Redis, the stand-in and the orchestrator; stop them all at the end.

    ``source``: run the orchestrator and the stand-in from the ``saga_orchestrator`` package in
    this directory (an absolute path: an export of a commit) instead of the working tree.
    ``overrides``: orchestrator settings over :func:`orchestrator_settings`.
    """
    path = {"PYTHONPATH": str(source)} if source is not None else {}
    postgres = ThrowawayPostgres()
    redis = ThrowawayRedis(workdir / "redis")
    standin = StandIn(workdir, stable_port())
    port = stable_port()
    try:
        await trio.to_thread.run_sync(postgres.create)
        await trio.to_thread.run_sync(postgres.start)
        await trio.to_thread.run_sync(redis.start)
        settings = {**orchestrator_settings(config, postgres, redis, standin), **(overrides or {})}
        orchestrator = Orchestrator(workdir, {**settings, **path}, port)
        async with (
            standin.running(
                orchestrator_url=orchestrator.url,
                sync_delay=config.sync_delay,
                seed=config.seed,
                env=path,
            ),
            trio.open_nursery() as nursery,
        ):
            await nursery.start(orchestrator.supervise)
            try:
                yield Cluster(config, workdir, postgres, redis, standin, orchestrator)
            finally:
                with trio.CancelScope(shield=True):
                    await orchestrator.stop()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(redis.close)
            await trio.to_thread.run_sync(postgres.close)
