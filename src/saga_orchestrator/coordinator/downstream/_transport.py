"""A lean httpx transport for plain-HTTP services: HTTP/1.1 on trio sockets, connections kept
alive in a stack per origin.

httpcore's pool costs the orchestrator more CPU per downstream call than the rest of a saga
step: its request queue and its scan of every connection on each request and each answer
(quadratic under load in 1.0.x), h11's event machinery, and anyio's layers. This transport
does what a call to a service needs and no more: one request at a time per connection, no
pipelining, a ``Content-Length``, chunked or read-to-close body. ``https://`` (and any other
scheme) goes to httpx's own transport, made by ``fallback`` when first needed.

Connections: an answered call puts its connection back on its origin's stack unless the
service said ``Connection: close`` or answered ``HTTP/1.0``; the next call takes the most
recently used one, after checking that the service has not closed it meanwhile (a connection
with something to read while idle is dropped), and opens a new one when there is none. The
number of connections is bounded by the callers (:class:`~._http.ServiceClient` lets
``max_connections`` calls in flight per service).

Errors are httpx's, so that :class:`~._http.ServiceClient` maps them as for any transport:
``ConnectError``/``ConnectTimeout`` (nothing was sent), ``WriteError``,
``ReadError``/``ReadTimeout``, ``RemoteProtocolError`` (sent, the answer lost or unreadable).
"""

from __future__ import annotations

import select
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import trio

__all__ = ["LeanTransport"]

MAX_HEAD = 64 * 1024
"""The most bytes of status line and headers read before the answer is refused."""
KEEPALIVE_EXPIRY = 5.0
"""Seconds an idle connection is kept (httpx's default); older ones are closed."""
_CHUNK = 65536
_Origin = tuple[str, int]


@contextmanager
def _deadline(seconds: float | None, error: Callable[[str], Exception]) -> Iterator[None]:
    """A trio deadline of ``seconds`` (``None``: none) that raises ``error`` when it passes."""
    if seconds is None:
        yield
        return
    with trio.move_on_after(seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise error(f"no progress within {seconds:g} s")


class _Connection:
    """One keep-alive connection and the bytes read past the last answer."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.idle_since = 0.0

    def closed_by_peer(self) -> bool:
        """Whether the service closed it (or sent something unasked) while it was idle."""
        if self.buffer:
            return True
        poller = select.poll()
        poller.register(self.stream.socket.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        """Close it now (no checkpoint)."""
        self.stream.socket.close()

    async def fill(self) -> None:
        try:
            data = await self.stream.receive_some(_CHUNK)
        except (trio.BrokenResourceError, OSError) as exc:
            raise httpx.ReadError(f"the connection broke: {exc}") from None
        if not data:
            raise httpx.RemoteProtocolError("the service closed the connection before answering")
        self.buffer += data

    async def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise httpx.RemoteProtocolError("a line of the answer is too long")
            await self.fill()
        taken = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return taken

    async def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            await self.fill()
        taken = bytes(self.buffer[:size])
        del self.buffer[:size]
        return taken

    async def rest(self) -> bytes:
        """Everything until the service closes the connection."""
        while True:
            try:
                data = await self.stream.receive_some(_CHUNK)
            except (trio.BrokenResourceError, OSError) as exc:
                raise httpx.ReadError(f"the connection broke: {exc}") from None
            if not data:
                taken = bytes(self.buffer)
                self.buffer.clear()
                return taken
            self.buffer += data

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


def _head(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path or b"/"
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    has_host = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered in (b"connection", b"transfer-encoding", b"content-length"):
            continue
        has_host = has_host or lowered == b"host"
        lines.append(name + b": " + value)
    if not has_host:
        lines.insert(1, b"Host: " + request.url.netloc)
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None, float | None]:
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("connect"), timeout.get("write"), timeout.get("read")


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to plain-HTTP services over kept-alive trio sockets; other schemes to the
    transport ``fallback()`` makes (default: ``httpx.AsyncHTTPTransport()``)."""

    def __init__(
        self, fallback: Callable[[], httpx.AsyncBaseTransport] = httpx.AsyncHTTPTransport
    ) -> None:
        self._make_fallback = fallback
        self._fallback: httpx.AsyncBaseTransport | None = None
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self.opened = 0
        """Connections opened so far."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            if self._fallback is None:  # made when first needed: it loads TLS certificates
                self._fallback = self._make_fallback()
            return await self._fallback.handle_async_request(request)
        origin = (request.url.host, request.url.port or 80)
        connect_s, write_s, read_s = _timeouts(request)
        body = await request.aread()
        connection = self._reuse(origin) or await self._connect(origin, connect_s)
        try:
            # one deadline for sending and answering (the request's read timeout, else its
            # write timeout): a deadline costs a cancel scope, and either way the request may
            # have been applied
            with _deadline(read_s if read_s is not None else write_s, httpx.ReadTimeout):
                try:
                    await connection.stream.send_all(_head(request, body) + body)
                except (trio.BrokenResourceError, OSError) as exc:
                    raise httpx.WriteError(f"the connection broke: {exc}") from None
                head, headers, content, keep = await self._answer(connection, request.method)
        except BaseException:
            await connection.aclose()
            raise
        if keep:
            self._put(origin, connection)
        else:
            connection.close()
        status, version, reason = head
        extensions = {"http_version": version, "reason_phrase": reason}  # as the service said
        return httpx.Response(
            status, headers=headers, content=content, request=request, extensions=extensions
        )

    def _put(self, origin: _Origin, connection: _Connection) -> None:
        """Back on its origin's stack; the oldest idle ones past their expiry closed."""
        now = time.monotonic()
        connection.idle_since = now
        idle = self._idle.setdefault(origin, deque())
        while idle and now - idle[0].idle_since > KEEPALIVE_EXPIRY:
            idle.popleft().close()
        idle.append(connection)

    def _reuse(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since <= KEEPALIVE_EXPIRY and not connection.closed_by_peer():
                return connection
            connection.close()
        return None

    async def _connect(self, origin: _Origin, seconds: float | None) -> _Connection:
        host, port = origin
        with _deadline(seconds, httpx.ConnectTimeout):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise httpx.ConnectError(f"cannot connect: {exc}") from None
        self.opened += 1  # (trio sets TCP_NODELAY)
        return _Connection(stream)

    async def _answer(
        self, connection: _Connection, method: str
    ) -> tuple[tuple[int, bytes, bytes], list[tuple[bytes, bytes]], bytes, bool]:
        """((status, HTTP version, reason phrase), headers, body, whether the connection may be
        used again)."""
        while (end := connection.buffer.find(b"\r\n\r\n")) < 0:
            if len(connection.buffer) > MAX_HEAD:
                raise httpx.RemoteProtocolError("the answer's head is too long")
            await connection.fill()
        lines = bytes(connection.buffer[:end]).split(b"\r\n")
        del connection.buffer[: end + 4]
        version, _, rest = lines[0].partition(b" ")
        try:
            status = int(rest[:3])
            reason = rest[4:].strip()
        except ValueError:
            raise httpx.RemoteProtocolError(f"bad status line {lines[0][:80]!r}") from None
        headers: list[tuple[bytes, bytes]] = []
        fields: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
            fields[name.strip().lower()] = value.strip().lower()
        keep = version == b"HTTP/1.1" and fields.get(b"connection") != b"close"
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return (status, version, reason), headers, b"", keep
        if fields.get(b"transfer-encoding", b"").endswith(b"chunked"):
            content = await self._chunked(connection)
            headers = [(n, v) for n, v in headers if n.lower() != b"transfer-encoding"]
        elif b"content-length" in fields:
            try:
                size = int(fields[b"content-length"])
            except ValueError:
                raise httpx.RemoteProtocolError("bad Content-Length") from None
            content = await connection.exactly(size)
        else:
            content, keep = await connection.rest(), False
        return (status, version, reason), headers, content, keep

    async def _chunked(self, connection: _Connection) -> bytes:
        parts: list[bytes] = []
        while True:
            try:
                size = int((await connection.line()).split(b";")[0], 16)
            except ValueError:
                raise httpx.RemoteProtocolError("bad chunk size") from None
            if size == 0:
                while await connection.line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(await connection.exactly(size))
            await connection.exactly(2)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()
        if self._fallback is not None:
            await self._fallback.aclose()
