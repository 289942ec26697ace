"""The live-update stream (server-sent events) and the dashboard's static files.

``GET /ui/live`` (``?saga=<id>``: one saga's transitions only) streams one ``transition`` event
per recorded transition, in the order the engine recorded them, each a JSON object
(:func:`~.live.message_of`) with its sequence number as the event id; a comment every
:data:`HEARTBEAT_SECONDS` keeps proxies from closing an idle stream. The stream ends when the
browser goes, when it falls :data:`~.live.QUEUE_SIZE` messages behind (a ``dropped`` event, then
the end: the browser reconnects and reloads), and when the service stops. Beyond
``UI_LIVE_CONNECTIONS`` streams the answer is 503 ``too_many_streams`` with ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources

import trio
from quart import Response, request

from saga_orchestrator.errors import NotFoundError

from .guard import dashboard, ui
from .live import LiveHub, Subscriber

__all__ = ["HEARTBEAT_SECONDS", "STATIC_FILES", "events_of"]

HEARTBEAT_SECONDS = 15.0
STATIC_FILES = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
"""The files under ``/ui/static/``, with their types."""


async def events_of(hub: LiveHub, subscriber: Subscriber) -> AsyncIterator[bytes]:
    """The stream's bytes until it ends; releases ``subscriber`` at the end."""
    try:
        yield b"retry: 2000\n\n"
        while True:
            chunk = b": keep-alive\n\n"
            with trio.move_on_after(HEARTBEAT_SECONDS):
                try:
                    message = await subscriber.receive.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    break
                data = json.dumps(message, separators=(",", ":"))
                chunk = f"id: {message['seq']}\nevent: transition\ndata: {data}\n\n".encode()
            yield chunk
        if subscriber.dropped:
            yield b"event: dropped\ndata: {}\n\n"
    finally:
        hub.release(subscriber)


@ui.get("/live")
async def live() -> Response:
    hub = dashboard().hub
    saga_id = request.args.get("saga") or None
    subscriber = hub.open(saga_id)
    response = Response(
        events_of(hub, subscriber),
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a stream lasts as long as the browser watches
    return response


@ui.get("/static/<name>")
async def static_file(name: str) -> Response:
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        raise NotFoundError(f"no static file {name!r}")
    body = (resources.files("saga_orchestrator.ui") / "static" / name).read_bytes()
    return Response(
        body, content_type=content_type, headers={"Cache-Control": "public, max-age=300"}
    )
