"""Connections that close: the ASGI wrapper between Hypercorn and the Quart-Trio app.

It does two things for every HTTP request:

1. **The app's last response message is sent shielded**, so that Hypercorn can close or recycle
   the connection. Without it no connection of the service ever closed on its own: a
   ``Connection: close`` answer left the socket open (a client reading until EOF waited
   forever), and an idle keep-alive connection was never closed.

   The cause (quart-trio 0.12 on Hypercorn 0.18): ``TrioASGIHTTPConnection`` runs the request
   handler and the task reading ASGI messages in one nursery; whichever ends first cancels the
   other. When the handler sends the final ``http.response.body`` message, Hypercorn finishes
   the response *inside that send call*: it ends the stream, which puts ``http.disconnect`` in
   the app's queue, and then either closes the socket or re-arms its idle (keep-alive) timer.
   The reading task wakes up on ``http.disconnect`` and cancels the nursery, so the handler is
   cancelled while still inside Hypercorn's send: the close is cancelled before ``aclose()``
   (the socket stays open) and the idle timer is never re-armed (the connection is never
   reaped). The final send therefore runs in a shielded cancel scope, bounded by
   :data:`FINAL_SEND_SECONDS` so that it can never hang the handler. The fix belongs in
   quart-trio (shield Hypercorn's send, or do not cancel the handler on a disconnect its own
   last send caused); remove this part once it is there.

2. **An answer that starts before the request body has arrived says ``Connection: close``.**
   Hypercorn cannot reuse a connection whose request body is still on the wire (it closes it
   after the answer), but it does not tell the client so: a client that reused the connection
   (``requests``, ``httpx``) sent its next request into a socket about to close, or waited
   forever. An answer that does not close the connection anyway waits up to
   :data:`BODY_WAIT_SECONDS` for the rest of the body (a refused request with a small body
   keeps its connection); after that it carries ``Connection: close`` and the connection
   closes once it is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["BODY_WAIT_SECONDS", "FINAL_SEND_SECONDS", "AsgiApp", "guard_connections"]

FINAL_SEND_SECONDS = 5.0
"""Most seconds the shielded final send may take (Hypercorn's work there takes about 1 ms)."""
BODY_WAIT_SECONDS = 0.2
"""Most seconds an answer waits for the rest of a request body it did not read, before it
closes the connection instead."""

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
AsgiApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

_CLOSE = (b"connection", b"close")


def _ends_request(message: Message) -> bool:
    """Nothing more of the request will come after ``message``."""
    kind = message.get("type")
    return kind == "http.disconnect" or (
        kind == "http.request" and not message.get("more_body", False)
    )


def _is_final_body(message: Message) -> bool:
    return message.get("type") == "http.response.body" and not message.get("more_body", False)


def _says_close(start: Message) -> bool:
    return any(
        k.lower() == b"connection" and b"close" in v.lower() for k, v in start.get("headers", ())
    )


def _closing(start: Message) -> Message:
    """The ``http.response.start`` message ``start`` with ``Connection: close``."""
    headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() != b"connection"]
    return {**start, "headers": [*headers, _CLOSE]}


def guard_connections(app: AsgiApp) -> AsgiApp:
    """``app`` whose final response message is sent shielded from cancellation, and whose
    answers say ``Connection: close`` when the request body has not all arrived."""

    async def guarded(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        request_read = trio.Event()

        async def receive_tracked() -> Message:
            message = await receive()
            if _ends_request(message):
                request_read.set()
            return message

        async def send_guarded(message: Message) -> None:
            if message.get("type") == "http.response.start" and not (
                request_read.is_set() or _says_close(message)
            ):
                with trio.move_on_after(BODY_WAIT_SECONDS):
                    await request_read.wait()
                if not request_read.is_set():
                    message = _closing(message)
            if _is_final_body(message):
                with trio.move_on_after(FINAL_SEND_SECONDS, shield=True):
                    await send(message)
            else:
                await send(message)

        await app(scope, receive_tracked, send_guarded)

    return guarded
