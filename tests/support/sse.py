"""Server-sent events read by hand over a trio socket (HTTP/1.0: the body is the stream until
the server closes it), so that a test controls exactly when it stops reading or goes away."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .raw_http import connect

__all__ = ["EventStream", "open_event_stream"]


@attrs.define
class EventStream:
    stream: trio.SocketStream
    status: int
    headers: dict[str, str]
    buffer: bytes = b""
    ended: bool = False

    async def next_event(self) -> tuple[str, str] | None:
        """The next event's ``(name, data)`` (comments skipped); ``None`` once the server has
        ended the stream."""
        while True:
            while b"\n\n" in self.buffer:
                block, self.buffer = self.buffer.split(b"\n\n", 1)
                name, data = "message", []
                for line in block.decode().splitlines():
                    if line.startswith("event: "):
                        name = line[7:]
                    elif line.startswith("data: "):
                        data.append(line[6:])
                if data:
                    return name, "\n".join(data)
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                self.ended = True
                return None
            self.buffer += chunk

    async def transitions(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` ``transition`` events' data (fewer if the stream ends)."""
        found: list[dict[str, Any]] = []
        while len(found) < count:
            event = await self.next_event()
            if event is None:
                break
            if event[0] == "transition":
                found.append(json.loads(event[1]))
        return found


@asynccontextmanager
async def open_event_stream(
    url: str, path: str, headers: dict[str, str]
) -> AsyncIterator[EventStream]:
    """``GET path`` on the server at ``url``; the connection is closed at the end."""
    stream = await connect(url)
    async with stream:
        lines = [f"GET {path} HTTP/1.0", "Host: test", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            head += chunk
        raw_head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *header_lines = raw_head.decode().split("\r\n")
        parsed = dict(line.split(": ", 1) for line in header_lines if ": " in line)
        yield EventStream(
            stream,
            int(status_line.split()[1]),
            {k.lower(): v for k, v in parsed.items()},
            rest,
        )
