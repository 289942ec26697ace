"""The event envelope (docs/events.md), end to end on both buses: an event published through
the API, and the lifecycle events of the saga it starts, as a consumer reads them from the bus.
"""

from __future__ import annotations

from typing import Any

import trio

from saga_orchestrator.bus import BusMessage, EventBus
from saga_orchestrator.coordinator import state as sm
from saga_orchestrator.coordinator.options import EngineOptions, shape_of
from saga_orchestrator.coordinator.projection import lifecycle_events
from saga_orchestrator.coordinator.transitions import (
    SagaCompleted,
    SagaStarted,
    StepCompleted,
    StepStarted,
)
from saga_orchestrator.store.records import RecordedEvent
from tests.http.test_events_api import EventsApi, open_events_api, registered

from .harness import EVENTS, LIFECYCLE, ONBOARDING, WITHIN

ANNOUNCED_BY = {
    "saga.started": "SagaStarted",
    "saga.step.completed": "StepCompleted",
    "saga.completed": "SagaCompleted",
}


async def wait_for_messages(bus: EventBus, stream: str, count: int) -> list[BusMessage]:
    with trio.fail_after(WITHIN):
        while len(entries := await bus.entries(stream)) < count:
            await trio.sleep(0.01)
    return [entry.message for entry in entries]


async def stored(api: EventsApi, stream_id: str, version: int) -> RecordedEvent:
    [event] = await api.path.store.read_stream(stream_id, from_version=version, limit=1)
    return event


async def test_a_published_event_carries_its_envelope_on_the_bus(bus: EventBus) -> None:
    async with open_events_api(bus=bus) as api:
        given = {"causation_id": "form-7", "source": "signup", "stream_id": "x", "version": 9}
        first = await api.client.post(
            "/events/publish",
            json=registered("u-env", metadata=given, expected_version=0),
            headers={"X-Correlation-ID": "req-env-1"},
        )
        second = await api.client.post(  # no expected_version, no X-Correlation-ID
            "/events/publish", json={"event_type": "thing.done", "stream_id": "t", "data": {}}
        )
        assert (202, 202) == (first.status_code, second.status_code)
        messages = await wait_for_messages(bus, EVENTS, 2)
        one = await stored(api, "user-u-env", 1)
        two = await stored(api, "t", 1)

    assert [
        BusMessage(
            event_id=one.event_id,
            event_type="user.registered",
            data={"user_id": "u-env", "email": "u-env@example.com"},
            metadata={
                "causation_id": "form-7",
                "source": "signup",
                "correlation_id": "req-env-1",
                "stream_id": "user-u-env",
                "version": 1,
            },
            occurred_at=one.recorded_at,
        ),
        BusMessage(
            event_id=two.event_id,
            event_type="thing.done",
            metadata={"correlation_id": second.headers["X-Correlation-ID"], "stream_id": "t"},
            occurred_at=two.recorded_at,
        ),
    ] == messages
    assert (await first.get_json())["event_id"] == one.event_id
    # the event store keeps the metadata as published
    assert {**given, "correlation_id": "req-env-1"} == one.metadata


async def lifecycle_of_a_started_saga(bus: EventBus) -> list[tuple[BusMessage, RecordedEvent]]:
    """Publish a trigger event with a correlation id; the lifecycle events of its saga, each
    with the transition its ``stream_id`` and ``version`` name."""
    async with open_events_api(bus=bus) as api:
        response = await api.client.post(
            "/events/publish", json=registered("u-lc"), headers={"X-Correlation-ID": "req-chain"}
        )
        assert 202 == response.status_code
        [saga] = await api.path.wait_for_sagas(ONBOARDING.name, 1)
        await api.path.wait_status(saga.saga_id, ["completed"])
        messages = await wait_for_messages(bus, LIFECYCLE, 3)
        assert list(ANNOUNCED_BY) == [m.event_type for m in messages]
        assert {f"saga-{saga.saga_id}"} == {m.metadata["stream_id"] for m in messages}
        return [
            (m, await stored(api, m.metadata["stream_id"], m.metadata["version"])) for m in messages
        ]


async def test_lifecycle_events_carry_the_correlation_id_and_name_their_transition(
    bus: EventBus,
) -> None:
    for message, transition in await lifecycle_of_a_started_saga(bus):
        assert ANNOUNCED_BY[message.event_type] == transition.event_type
        assert "req-chain" == message.metadata["correlation_id"]
        assert transition.recorded_at == message.occurred_at
        assert message.event_id != transition.event_id  # an event of its own


async def test_lifecycle_events_carry_the_id_of_their_transition_as_causation_id(
    bus: EventBus,
) -> None:
    for message, transition in await lifecycle_of_a_started_saga(bus):
        assert transition.event_id == message.metadata.get("causation_id")


def test_lifecycle_metadata_names_each_transition_in_the_saga_stream() -> None:
    shape = shape_of(ONBOARDING, EngineOptions())
    started = SagaStarted(
        saga_id="s-1", saga_type=ONBOARDING.name, saga_version=1, input={}, deadline_at=1e12,
        correlation_id="c-1",
    )  # fmt: skip
    history: list[Any] = [started, StepStarted(step=0, attempt=1)]
    later = [StepCompleted(step=0, attempt=1), SagaCompleted(result={})]
    state = sm.replay(shape, history)
    first = lifecycle_events(state, shape, history, "lc", event_ids=["t-1", "t-2"])
    then = lifecycle_events(sm.replay(shape, history + later), shape, later, "lc")

    assert [
        ("saga.started", {"correlation_id": "c-1", "causation_id": "t-1", "version": 1}),
        ("saga.step.completed", {"correlation_id": "c-1", "version": 3}),
        ("saga.completed", {"correlation_id": "c-1", "version": 4}),
    ] == [
        (m.event.event_type, {k: v for k, v in m.event.metadata.items() if k != "stream_id"})
        for m in first + then
    ]
    assert {"saga-s-1"} == {m.event.metadata["stream_id"] for m in first + then}
