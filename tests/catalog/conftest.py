"""The stand-in served on a loopback port, and a coordinator in-process that calls it.

Real sockets, so the real clock with short timeouts and backoffs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial

import attrs
import httpx
import pytest
import trio

from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.downstream import (
    DOWNSTREAM,
    DownstreamConfig,
    open_downstream_clients,
)
from saga_orchestrator.coordinator.options import EngineOptions
from saga_orchestrator.devservices import Announcement, DevState, serve_devservices
from saga_orchestrator.errors import SagaStateConflict
from saga_orchestrator.testing import SagaTestKit

from ..coordinator.harness import FAST

TOKEN = "s3cret-service-token"
OPTIONS = attrs.evolve(
    FAST, saga_timeout=60, step_timeout=5, retry_backoff=0.05, retry_backoff_max=0.2
)
"""Real time here: short timeouts and backoffs."""


@attrs.frozen
class StandIn:
    state: DevState
    url: str

    def config(self) -> DownstreamConfig:
        return DownstreamConfig.all_at(self.url, token=TOKEN, timeout=OPTIONS.step_timeout)

    def calls(self, operation: str) -> list:
        return [call for call in self.state.calls if call.operation == operation]


@pytest.fixture
async def stand_in(nursery: trio.Nursery) -> StandIn:
    state = DevState(token=TOKEN, sync_delay=0.05)
    port = await nursery.start(partial(serve_devservices, state, port=0))
    return StandIn(state, f"http://127.0.0.1:{port}")


@pytest.fixture
async def control(stand_in: StandIn) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stand_in.url, timeout=5) as client:
        yield client


@asynccontextmanager
async def orchestrating(
    stand_in: StandIn, definitions: Sequence[SagaDefinition], *, options: EngineOptions = OPTIONS
) -> AsyncIterator[SagaTestKit]:
    """The saga test kit running ``definitions`` against ``stand_in`` over HTTP; the stand-in's
    announcements (reply events) are delivered to the sagas, as the router would."""
    async with (
        open_downstream_clients(stand_in.config()) as clients,
        SagaTestKit(*definitions, options=options, resources={DOWNSTREAM: clients}) as kit,
    ):
        stand_in.state.announcer = partial(deliver, kit)
        yield kit


async def deliver(kit: SagaTestKit, announcement: Announcement) -> None:
    """The stand-in's announcer in these tests: the reply goes straight to the saga (as
    ``POST /events/publish`` would hand it on)."""
    with contextlib.suppress(SagaStateConflict):  # the saga has ended: nothing waits for it
        await kit.deliver(
            announcement.saga_id,
            announcement.event_type,
            announcement.data,
            event_id=announcement.event_id,
        )
