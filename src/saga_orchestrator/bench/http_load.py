"""A small HTTP/1.1 load generator on trio sockets, for loopback benchmarks.

C connections (keep-alive) each send one request at a time, without pipelining, and read the
whole answer (status line, headers, then a ``Content-Length`` or chunked body) before sending
the next; together they send ``n`` requests. It does only what the ``http`` workload needs,
and costs a few tens of microseconds of CPU per request (reported as ``client_cpu_s``).

A connection the server closes (``Connection: close``, or a reset) is opened again; the
request that was cut off counts as a failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import attrs
import trio

from .common import Progress

__all__ = [
    "Connection",
    "LoadResult",
    "ProtocolError",
    "build_request",
    "connect",
    "fetch",
    "run_load",
]

CONNECT_TIMEOUT = 10.0
"""Seconds to open one connection."""
REQUEST_TIMEOUT = 60.0
"""Seconds one request may take before the run is abandoned."""
MAX_HEAD = 64 * 1024
"""The most bytes of status line and headers accepted."""


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 as this client understands it."""


def build_request(
    method: str,
    path: str,
    host: str,
    port: int,
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """The bytes of one HTTP/1.1 request (``Content-Length`` added when there is a body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@attrs.frozen(kw_only=True)
class LoadResult:
    """What ``n`` requests got."""

    requests: int
    elapsed_s: float
    latencies: list[float]
    """Seconds from writing each answered request to reading its last byte, ascending."""
    statuses: dict[int, int]
    """How many answers had each status code."""
    failures: int
    """Requests that got no answer (the connection broke)."""
    client_cpu_s: float
    """CPU time this process used over the run (the load generator, and anything else
    running in it)."""

    @property
    def errors(self) -> int:
        """Requests without a 2xx answer."""
        return self.failures + sum(c for s, c in self.statuses.items() if not 200 <= s < 300)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Connection:
    """One keep-alive connection and the bytes read past the last answer."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.body = b""
        """The body of the last answer (``Content-Length`` bodies; chunked ones are skipped)."""

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self.buffer += data

    async def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            await self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self._fill()
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``, read its answer; (status, whether the connection stays open)."""
        await self.stream.send_all(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise ProtocolError("the answer's head is too long")
            await self._fill()
        head = bytes(self.buffer[:end]).split(b"\r\n")
        del self.buffer[: end + 4]
        version, _, rest = head[0].partition(b" ")
        try:
            status = int(rest[:3])
        except ValueError:
            raise ProtocolError(f"bad status line {head[0][:80]!r}") from None
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        self.body = b""
        if headers.get(b"transfer-encoding", b"").endswith(b"chunked"):
            await self._chunked()
        elif b"content-length" in headers:
            self.body = await self._exactly(int(headers[b"content-length"]))
        keep = version == b"HTTP/1.1" and headers.get(b"connection") != b"close"
        return status, keep

    async def _chunked(self) -> None:
        while True:
            size = int((await self._line()).split(b";")[0], 16)
            if size == 0:
                while await self._line():  # trailers, up to the empty line
                    pass
                return
            await self._exactly(size + 2)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def connect(host: str, port: int) -> Connection:
    with trio.fail_after(CONNECT_TIMEOUT):
        return Connection(await trio.open_tcp_stream(host, port))


async def fetch(host: str, port: int, request: bytes) -> int:
    """One request on a connection of its own; its status. Raises ``OSError`` when the
    server cannot be reached."""
    connection = await connect(host, port)
    try:
        with trio.fail_after(REQUEST_TIMEOUT):
            status, _ = await connection.exchange(request)
        return status
    except (trio.BrokenResourceError, ProtocolError) as exc:
        raise ConnectionResetError(str(exc)) from exc
    finally:
        await connection.aclose()


async def run_load(
    host: str,
    port: int,
    request: bytes,
    *,
    n: int,
    concurrency: int,
    progress: Progress | None = None,
) -> LoadResult:
    """Send ``request`` ``n`` times over ``concurrency`` keep-alive connections.

    Raises ``OSError`` when a connection cannot be opened (the server is gone).
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    slots: Iterator[int] = iter(range(n))

    async def client(connection: Connection) -> None:
        nonlocal failures
        try:
            for _ in slots:  # shared by the connections: each takes the next request
                started = time.perf_counter()
                try:
                    with trio.fail_after(REQUEST_TIMEOUT):
                        status, keep = await connection.exchange(request)
                except (OSError, trio.BrokenResourceError, ProtocolError):
                    failures += 1
                    keep = False
                else:
                    latencies.append(time.perf_counter() - started)
                    statuses[status] = statuses.get(status, 0) + 1
                if progress is not None:
                    progress.done += 1
                if not keep:
                    await connection.aclose()
                    connection = await connect(host, port)
        finally:
            await connection.aclose()

    if progress is not None:
        progress.done = 0
    connections: list[Connection] = []
    try:
        for _ in range(min(concurrency, n)):
            connections.append(await connect(host, port))
    except BaseException:
        for connection in connections:
            await trio.aclose_forcefully(connection.stream)
        raise
    cpu = time.process_time()
    began = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for connection in connections:
            nursery.start_soon(client, connection)
    elapsed = time.perf_counter() - began
    return LoadResult(
        requests=n,
        elapsed_s=elapsed,
        latencies=sorted(latencies),
        statuses=statuses,
        failures=failures,
        client_cpu_s=time.process_time() - cpu,
    )
