"""HTTP/1.1 by hand over trio sockets: for tests about connections themselves (keep-alive,
closing, malformed framing), which an HTTP client library would hide or refuse to send."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import attrs
import trio

READ_TIMEOUT = 10.0
"""Most seconds a test waits for an answer or for the server to close."""


@attrs.frozen
class Answer:
    status: int
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def closes(self) -> bool:
        """The answer says ``Connection: close``."""
        return "close" in self.headers.get("connection", "").lower()


async def connect(url: str) -> trio.SocketStream:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return await trio.open_tcp_stream(parts.hostname, parts.port)


def request(
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> bytes:
    """One request; ``Content-Length`` is added for a body unless ``headers`` frame it."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    given = headers or {}
    if body and not {"content-length", "transfer-encoding"} & {k.lower() for k in given}:
        given = {**given, "Content-Length": str(len(body))}
    lines += [f"{name}: {value}" for name, value in given.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Reader:
    """Reads answers off one connection (what it read past an answer is kept for the next)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def _more(self) -> bool:
        try:
            data = await self.stream.receive_some(65536)
        except trio.BrokenResourceError:  # reset by the server
            return False
        self.buffer += data
        return bool(data)

    async def answer(self, within: float = READ_TIMEOUT) -> Answer:
        """The next answer (with a ``Content-Length`` body); fails on EOF before it."""
        with trio.fail_after(within):
            while b"\r\n\r\n" not in self.buffer:
                if not await self._more():
                    raise EOFError(f"closed before an answer: {self.buffer[:200]!r}")
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                if not await self._more():
                    raise EOFError("closed in the middle of an answer")
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Answer(int(status_line.split(" ")[1]), headers, body)

    async def closed(self, within: float = READ_TIMEOUT) -> bytes:
        """Wait until the server closes the connection; what it sent before that."""
        with trio.fail_after(within):
            while await self._more():
                pass
        return self.buffer
