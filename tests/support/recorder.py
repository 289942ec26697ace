"""A downstream service for end-to-end tests: it applies each effect once per idempotency key
and records everything, so tests can check what the orchestrator really did."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from quart_trio import QuartTrio

from .server import free_port


@attrs.define
class Effect:
    key: str
    op: str
    saga_id: str
    step: str


@attrs.define
class Recorder:
    applied: list[Effect] = attrs.field(factory=list)
    """Effects applied, one per idempotency key and operation."""
    calls: int = 0
    responses: dict[tuple[str, str], tuple[dict[str, Any], int]] = attrs.field(factory=dict)
    delay: float = 0.0
    """Seconds to wait after applying an effect before answering (a window to crash in)."""
    changed: trio.Event = attrs.field(factory=trio.Event)
    gate: trio.Event = attrs.field(factory=trio.Event)
    """Calls wait here, before anything is applied, until it is set (see :meth:`hold`)."""

    def __attrs_post_init__(self) -> None:
        self.gate.set()

    def hold(self) -> None:
        """Make the calls from now on wait (nothing applied, no answer) until :meth:`release`."""
        if self.gate.is_set():
            self.gate = trio.Event()

    def release(self) -> None:
        self.gate.set()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def _applied(self, effect: Effect) -> None:
        self.applied.append(effect)
        self._notify()

    async def reached(self, count: int, *, within: float) -> None:
        """Wait until at least ``count`` effects have been applied."""
        with trio.fail_after(within):
            while len(self.applied) < count:
                await self.changed.wait()

    async def called(self, count: int, *, within: float) -> None:
        """Wait until at least ``count`` calls have arrived (held ones included)."""
        with trio.fail_after(within):
            while self.calls < count:
                await self.changed.wait()


def create_recorder_app(recorder: Recorder) -> QuartTrio:
    app = QuartTrio("recorder")

    @app.post("/effects/<op>")
    async def effect(op: str) -> tuple[dict[str, Any], int]:
        recorder.calls += 1
        recorder._notify()
        await recorder.gate.wait()
        body = await request.get_json()
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return {"error": "Idempotency-Key is required"}, 400
        seen = recorder.responses.get((key, op))
        if seen is not None:
            return seen
        if body.get("fail"):
            answer: tuple[dict[str, Any], int] = ({"error": "refused"}, 422)
        else:
            recorder._applied(Effect(key, op, body["saga_id"], body["step"]))
            answer = ({"applied": key}, 200)
        recorder.responses[(key, op)] = answer
        delay = body.get("delay", recorder.delay)  # a request may ask for its own delay
        if delay:
            await trio.sleep(delay)
        return answer

    return app


@asynccontextmanager
async def run_recorder(delay: float = 0.0) -> AsyncIterator[tuple[Recorder, str]]:
    """Serve a recorder on a free loopback port for the body of the ``async with``."""
    recorder = Recorder(delay=delay)
    config = Config()
    port = free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        await nursery.start(serve, create_recorder_app(recorder), config)
        yield recorder, f"http://127.0.0.1:{port}"
        nursery.cancel_scope.cancel()
