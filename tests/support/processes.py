"""Server processes a test starts, kills and starts again: one (the chaos run's orchestrator) or
several on one store (replicas), and a client that spreads requests over them.

* :class:`ServerProcess`: ``python -m saga_orchestrator.main`` on a fixed port under a small
  supervisor: :meth:`~ServerProcess.kill` (SIGKILL) and :meth:`~ServerProcess.terminate`
  (SIGTERM, an orderly stop) start it again on the same port after a pause; an exit nobody
  asked for is recorded (with the tail of its log) and the process started again, as a process
  supervisor would.
* :func:`open_replicas`: N of them with one environment (one PostgreSQL database, one Redis),
  all ready; a :class:`Replicas` to strike them and a :class:`SpreadClient` over them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import httpx
import pytest
import trio

from .server import API_KEY, server_process
from .throwaway import stable_port

T = TypeVar("T")

START_WITHIN = 60.0
"""Most seconds a process may take to answer after it is started."""
STOP_WITHIN = 10.0
"""Most seconds an orderly stop may take before the process is killed."""


def cut_off_bodies(test: T) -> T:
    """Marks a test whose requests a kill or a stop may cut off while their body is sent: httpx
    leaves the body's iterator unfinished, and it is collected later (a warning, not a fault)."""
    unraisable = pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object ByteStream\.__aiter__"
        ":pytest.PytestUnraisableExceptionWarning"
    )
    collected = pytest.mark.filterwarnings(
        r"ignore:Async generator 'httpx\._content\.ByteStream\.__aiter__' was garbage collected"
        ":ResourceWarning"
    )
    return unraisable(collected(test))  # type: ignore[no-any-return]


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
    how: str = ""
    """``kill``, ``term`` or ``stop`` when asked for; empty when not."""
    name: str = ""
    """The process's name (several replicas)."""
    signalled: float = 0.0
    """Wall-clock time the SIGKILL or SIGTERM asked for was sent (0: none): a stopping
    instance hands its sagas over before it has ended, so another may act from here on."""


class ServerProcess:
    """``python -m saga_orchestrator.main`` on a fixed port, started again whenever it exits
    (until :meth:`stop`). Its logs are ``<name>-<incarnation>.log`` in ``workdir``."""

    def __init__(
        self, workdir: Path, env: dict[str, str], port: int, *, name: str = "orchestrator"
    ) -> None:
        self.workdir = workdir
        self.env = {**env, "PORT": str(port)}
        self.port = port
        self.name = name
        self.incarnation = 0
        self.exits: list[Exit] = []
        self.process: trio.Process | None = None
        self._asked = ""
        self._signalled = 0.0
        self._downtime = 0.0
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_path(self, incarnation: int) -> Path:
        return self.workdir / f"{self.name}-{incarnation}.log"

    async def supervise(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the server until :meth:`stop`; started once it is ready."""
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
            asked = self._asked or ("stop" if self._stopping else "")
            tail = "" if asked else log_tail(self.log_path(self.incarnation))
            self.exits.append(
                Exit(
                    self.incarnation,
                    code,
                    bool(asked),
                    tail,
                    ended,
                    asked,
                    self.name,
                    self._signalled,
                )
            )
            pause = self._downtime if self._asked else 1.0
            self._asked, self._signalled = "", 0.0
            if not self._stopping:
                await trio.sleep(pause)

    async def kill(self, downtime: float) -> None:
        """SIGKILL; started again after ``downtime`` s; returns once it answers again."""
        await self._strike("kill", downtime)

    async def terminate(self, downtime: float) -> None:
        """SIGTERM (the orderly stop of a rolling update); started again ``downtime`` s after
        it has exited; returns once it answers again."""
        await self._strike("term", downtime)

    async def _strike(self, how: str, downtime: float) -> None:
        process, incarnation = self.process, self.incarnation
        assert process is not None
        if process.returncode is None:  # else it exited by itself and is being started again
            self._asked, self._downtime = how, downtime
            self._signalled = time.time()
            if how == "kill":
                process.kill()
            else:
                process.terminate()
                with trio.move_on_after(STOP_WITHIN):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
        while self.incarnation == incarnation:
            await trio.sleep(0.01)
        await wait_answering(f"{self.url}/health/live", within=START_WITHIN)

    async def kill_for_good(self) -> None:
        """SIGKILL, not started again (a node that is gone); returns once it has exited."""
        self._stopping, self._asked = True, "kill"
        process = self.process
        if process is not None and process.returncode is None:
            self._signalled = time.time()
            process.kill()
            await process.wait()

    async def stop(self) -> None:
        """SIGTERM (an orderly stop), SIGKILL if it takes too long; not started again."""
        self._stopping = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        with trio.move_on_after(STOP_WITHIN):
            await process.wait()
        if process.returncode is None:
            process.kill()


@attrs.define
class Replicas:
    """Server processes on one store; ``servers[i]`` is replica ``i``."""

    servers: list[ServerProcess]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def exits(self) -> list[Exit]:
        """Every replica's exits, in the order they were seen."""
        return sorted((e for s in self.servers for e in s.exits), key=lambda e: e.at)


@asynccontextmanager
async def open_replicas(
    workdir: Path,
    env: dict[str, str],
    count: int,
    *,
    name: str = "replica",
    ports: Sequence[int] = (),
) -> AsyncIterator[Replicas]:
    """``count`` servers with ``env`` (one store), each on a port of its own (``ports``, else
    free ones), all ready; stopped (SIGTERM, then SIGKILL) at the end. Their logs are
    ``<name><i>-<incarnation>.log`` (``<name>-<incarnation>.log`` when there is one)."""
    ports = list(ports) or [stable_port() for _ in range(count)]
    names = [name] if count == 1 else [f"{name}{i}" for i in range(count)]
    servers = [
        ServerProcess(workdir, env, port, name=n) for port, n in zip(ports, names, strict=True)
    ]
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as starting:  # all at once: they start in parallel
            for server in servers:
                starting.start_soon(nursery.start, server.supervise)
        try:
            yield Replicas(servers)
        finally:
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as stopping:
                    for server in servers:
                        stopping.start_soon(server.stop)


class SpreadClient:
    """HTTP clients of several replicas: each request goes to the next one in turn (or to the
    one asked for); a request that cannot connect goes to the next, as a load balancer would
    send it. Use as an async context manager."""

    def __init__(self, urls: Sequence[str], *, api_key: str = API_KEY, **options: Any) -> None:
        self.urls = list(urls)
        options.setdefault("timeout", 15.0)
        self.clients = [
            httpx.AsyncClient(base_url=url, headers={"X-API-Key": api_key}, **options)
            for url in self.urls
        ]
        """One per replica, in order (to talk to a chosen one)."""
        self._turn = itertools.count()
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> SpreadClient:
        for client in self.clients:
            await self._stack.enter_async_context(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def next_index(self, *, avoid: int | None = None) -> int:
        """The replica the next request goes to (never ``avoid`` when there are others)."""
        index = next(self._turn) % len(self.clients)
        if index == avoid and len(self.clients) > 1:
            index = next(self._turn) % len(self.clients)
        return index

    async def request(
        self, method: str, path: str, *, via: int | None = None, avoid: int | None = None, **kw: Any
    ) -> tuple[httpx.Response, int]:
        """The answer and the index of the replica that gave it. ``via``: that replica first;
        ``avoid``: any other first. Connection errors move on to the next replica (raised
        when none connects)."""
        first = via if via is not None else self.next_index(avoid=avoid)
        error: httpx.TransportError | None = None
        for step in range(len(self.clients)):
            index = (first + step) % len(self.clients)
            try:
                response = await self.clients[index].request(method, path, **kw)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                error = exc
                continue
            return response, index
        assert error is not None
        raise error
