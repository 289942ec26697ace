"""A loopback TCP proxy that a test can cut (refuse and drop every connection) and restore; with
several targets, a balancer (each connection to the next target that accepts it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *more: tuple[str, int]) -> None:
        self.targets = [(target_host, target_port), *more]
        self._turn = 0
        self.port = 0
        self._up = True
        self._connections: set[trio.CancelScope] = set()

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`restore`."""
        self._up = False
        for scope in list(self._connections):
            scope.cancel()

    def restore(self) -> None:
        self._up = True

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self._up:
                return
            with trio.CancelScope() as scope:
                self._connections.add(scope)
                try:
                    upstream = await self._connect()
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)
                except (OSError, trio.BrokenResourceError):
                    pass
                finally:
                    self._connections.discard(scope)

    async def _connect(self) -> trio.SocketStream:
        """A connection to the next target that accepts one (the last error if none does)."""
        error: OSError | None = None
        for _ in self.targets:
            target = self.targets[self._turn % len(self.targets)]
            self._turn += 1
            try:
                return await trio.open_tcp_stream(*target)
            except OSError as exc:
                error = exc
        assert error is not None
        raise error


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    done.cancel()


@asynccontextmanager
async def open_tcp_proxy(
    target_host: str, target_port: int, *more: tuple[str, int]
) -> AsyncIterator[TcpProxy]:
    """A proxy to the target (to each of the targets in turn) on a free loopback port."""
    proxy = TcpProxy(target_host, target_port, *more)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()
