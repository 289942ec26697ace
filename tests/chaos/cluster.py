"""The processes of a chaos run, and the handles the fault injector strikes them through.

* PostgreSQL and Redis of the run's own (:mod:`tests.support.throwaway`): restartable, on fixed
  loopback ports, never the machine's shared servers;
* the downstream stand-in (``python -m saga_orchestrator devservices``): stalled with SIGSTOP;
* the orchestrator (``python -m saga_orchestrator.main``), one process or several on the one
  store (``ChaosConfig.instances``), each under a small supervisor
  (:class:`~tests.support.processes.ServerProcess`): killed with SIGKILL (or stopped with
  SIGTERM) and started again on the same port; an exit nobody asked for is recorded (with the
  tail of its log) and the process is started again, as a process supervisor would. Several
  are reached through a balancer (a loopback TCP proxy to each in turn), as a Kubernetes
  Service would: the stand-in announces its syncs' outcomes there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from saga_orchestrator.devservices._app import SERVICE_PATHS

from ..support.processes import START_WITHIN, Exit, Replicas, open_replicas, wait_answering
from ..support.server import API_KEY, server_env
from ..support.tcp_proxy import open_tcp_proxy
from ..support.throwaway import ThrowawayPostgres, ThrowawayRedis, stable_port
from .plan import ChaosConfig

__all__ = ["CONSUMER_GROUP", "EVENT_STREAM", "Cluster", "Exit", "open_cluster"]

EVENT_STREAM = "saga:events"
LIFECYCLE_STREAM = "saga.lifecycle"
CONSUMER_GROUP = "saga-orchestrator"


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
    orchestrators: Replicas
    api_url: str
    """Where clients reach the service: the one orchestrator, or the balancer over several."""

    @property
    def api_key(self) -> str:
        return API_KEY


SEVERAL = {
    "INSTANCE_HEARTBEAT_SECONDS": "0.5",
    "INSTANCE_EXPIRY_SECONDS": "3",
    "FAILOVER_SCAN_SECONDS": "0.5",
    "RELAY_LEADER_RETRY_SECONDS": "0.5",
}
"""Several orchestrators: a killed one's sagas are taken over within about 3.5 s (an expiry
that a busy test machine's slow renewals do not run out every few seconds)."""


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
        **(SEVERAL if config.instances > 1 else {}),
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
    """Start PostgreSQL, Redis, the stand-in and the orchestrator processes; stop them all at
    the end.

    ``source``: run the orchestrator and the stand-in from the ``saga_orchestrator`` package in
    this directory (an absolute path: an export of a commit) instead of the working tree.
    ``overrides``: orchestrator settings over :func:`orchestrator_settings`.
    """
    path = {"PYTHONPATH": str(source)} if source is not None else {}
    postgres = ThrowawayPostgres()
    redis = ThrowawayRedis(workdir / "redis")
    standin = StandIn(workdir, stable_port())
    try:
        await trio.to_thread.run_sync(postgres.create)
        await trio.to_thread.run_sync(postgres.start)
        await trio.to_thread.run_sync(redis.start)
        settings = {
            **orchestrator_settings(config, postgres, redis, standin),
            **(overrides or {}),
            **path,
        }
        ports = [stable_port() for _ in range(config.instances)]
        async with AsyncExitStack() as stack:
            api_url = f"http://127.0.0.1:{ports[0]}"
            if config.instances > 1:
                targets = [("127.0.0.1", port) for port in ports]
                balancer = await stack.enter_async_context(
                    open_tcp_proxy(*targets[0], *targets[1:])
                )
                api_url = f"http://127.0.0.1:{balancer.port}"
            await stack.enter_async_context(
                standin.running(
                    orchestrator_url=api_url,
                    sync_delay=config.sync_delay,
                    seed=config.seed,
                    env=path,
                )
            )
            orchestrators = await stack.enter_async_context(
                open_replicas(workdir, settings, config.instances, name="orchestrator", ports=ports)
            )
            yield Cluster(config, workdir, postgres, redis, standin, orchestrators, api_url)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(redis.close)
            await trio.to_thread.run_sync(postgres.close)
