"""The minimal downstream service of the ``http-steps`` workload: HTTP/1.1 on trio sockets,
every request answered ``200`` with the same small JSON object, connections kept alive.

It does as little as an HTTP service can (a few tens of microseconds of CPU per request), so
that what the workload measures is the orchestrator's side of each call. The answer has the
fields of the auth service's ``GET /users/{id}`` (``docs/services.md``), the call the
workload's steps make. It counts the connections it accepted and the requests it answered.

    python -m saga_orchestrator.bench.stub_service [--port 0]

prints ``listening on 127.0.0.1:<port>`` once it accepts connections, and serves until SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys
from functools import partial

import attrs
import trio

__all__ = ["ANSWER", "StubService", "main", "serve_stub"]

HOST = "127.0.0.1"
MAX_HEAD = 64 * 1024
"""The most bytes of request line and headers accepted before the connection is closed."""
_BODY = b'{"user_id":"bench","status":"active"}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)
"""The bytes of every answer."""


@attrs.define
class StubService:
    """What the stub has served so far; ``batch`` > 0 holds each answer until that many
    requests are held, then answers them all (tests: so many calls are in flight at once)."""

    connections: int = 0
    requests: int = 0
    batch: int = 0
    _held: list[trio.Event] = attrs.field(factory=list)

    async def turn(self) -> None:
        """Return when this request may be answered."""
        if self.batch <= 0:
            return
        released = trio.Event()
        self._held.append(released)
        if len(self._held) >= self.batch:
            for event in self._held:
                event.set()
            self._held.clear()
        await released.wait()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


async def _serve_connection(stub: StubService, stream: trio.SocketStream) -> None:
    stub.connections += 1
    buffer = bytearray()
    async with stream:
        try:
            while True:
                while (end := buffer.find(b"\r\n\r\n")) < 0:
                    if len(buffer) > MAX_HEAD:
                        return
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                size = _content_length(bytes(buffer[:end]))
                while len(buffer) < end + 4 + size:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                del buffer[: end + 4 + size]
                stub.requests += 1
                await stub.turn()
                await stream.send_all(ANSWER)
        except (trio.BrokenResourceError, ValueError):
            return


async def serve_stub(
    stub: StubService,
    *,
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on loopback ``port`` (0: a free one) until cancelled; ``task_status.started(port)``
    once it accepts connections."""
    listeners = await trio.open_tcp_listeners(port, host=HOST)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_serve_connection, stub), listeners)


async def _main(port: int) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(partial(serve_stub, StubService(), port=port))
            print(f"listening on {HOST}:{bound}", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main(argv: list[str] | None = None) -> int:
    """``python -m saga_orchestrator.bench.stub_service``; 0 once stopped by a signal."""
    parser = argparse.ArgumentParser(prog="python -m saga_orchestrator.bench.stub_service")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    args = parser.parse_args(argv)
    trio.run(_main, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
