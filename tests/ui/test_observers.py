"""The dashboard's observers without a server: the live hub (order, slow consumers, bound,
shutdown), the metrics ring (per minute, bounded) and the timeline (bars from transitions)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from saga_orchestrator.coordinator import transitions as t
from saga_orchestrator.coordinator.state import (
    SagaShape,
    SagaState,
    StepShape,
    evolve,
    initial_state,
)
from saga_orchestrator.http.errors import LiveStreamsFull, ServiceStopping
from saga_orchestrator.ui.live import LiveHub
from saga_orchestrator.ui.ring import MINUTES, MetricsRing, percentile
from saga_orchestrator.ui.timeline import history, timeline

SHAPE = SagaShape(steps=(StepShape(name="reserve"), StepShape(name="confirm")))
NAMES = ["reserve", "confirm"]


def feed(observer: object, saga_id: str, steps: Sequence[t.Transition]) -> SagaState:
    """Record ``steps`` one by one on ``observer`` (as the engine does); the state after."""
    state = initial_state(SHAPE)
    for transition in steps:
        after = evolve(state, transition)
        observer.transitions_recorded(state, after, [transition])  # type: ignore[attr-defined]
        state = after
    return state


def started(saga_id: str, at: float = 100.0) -> t.SagaStarted:
    return t.SagaStarted(
        saga_id=saga_id, saga_type="order", saga_version=1, input={}, deadline_at=at + 60, at=at
    )


COMPLETED_RUN = [
    t.StepStarted(step=0, attempt=1, at=100.0),
    t.StepCompleted(step=0, attempt=1, at=100.2),
    t.StepStarted(step=1, attempt=1, at=100.2),
    t.StepAttemptFailed(step=1, attempt=1, error="boom", retry_in=0.5, at=100.3),
    t.StepStarted(step=1, attempt=2, at=100.8),
    t.StepCompleted(step=1, attempt=2, at=101.0),
    t.SagaCompleted(result={}, at=101.0),
]


async def test_the_hub_delivers_each_saga_s_transitions_in_order() -> None:
    hub = LiveHub(max_streams=5, step_names={"order": NAMES})
    with hub.subscribe() as everything, hub.subscribe("b") as only_b:
        feed(hub, "a", [started("a"), *COMPLETED_RUN])
        feed(hub, "b", [started("b")])
        seen = [everything.receive.receive_nowait() for _ in range(9)]
        assert ["a"] * 8 + ["b"] == [m["saga_id"] for m in seen]
        assert ["SagaStarted", "StepStarted", "StepCompleted"] == [
            m["transition"] for m in seen[:3]
        ]
        assert "reserve" == seen[1]["step"] and "confirm" == seen[3]["step"]
        assert [m["seq"] for m in seen] == sorted(m["seq"] for m in seen)
        assert "b" == only_b.receive.receive_nowait()["saga_id"]
        with pytest.raises(trio.WouldBlock):
            only_b.receive.receive_nowait()


async def test_a_slow_consumer_is_dropped_not_buffered() -> None:
    hub = LiveHub(max_streams=5, queue_size=4)
    with hub.subscribe() as slow, hub.subscribe() as fast:
        for index in range(3):
            feed(hub, f"s{index}", [started(f"s{index}")])
            fast.receive.receive_nowait()  # this one keeps up
        feed(hub, "s3", [started("s3")])
        feed(hub, "s4", [started("s4")])  # the slow one's fifth: over its queue
        assert slow.dropped and not fast.dropped and 1 == hub.dropped
        assert slow not in hub.subscribers and fast in hub.subscribers
        received = [slow.receive.receive_nowait()["saga_id"] for _ in range(4)]
        assert ["s0", "s1", "s2", "s3"] == received
        with pytest.raises(trio.EndOfChannel):
            slow.receive.receive_nowait()


async def test_the_hub_is_bounded_and_ends_every_stream_when_closed() -> None:
    hub = LiveHub(max_streams=2)
    with hub.subscribe() as first, hub.subscribe():
        with pytest.raises(LiveStreamsFull), hub.subscribe():
            pass
        hub.close()
        with pytest.raises(trio.EndOfChannel):
            first.receive.receive_nowait()
        with pytest.raises(ServiceStopping), hub.subscribe():
            pass
    assert not hub.subscribers


def test_the_ring_counts_per_minute_and_keeps_one_hour() -> None:
    now = [600.0]
    ring = MetricsRing(clock=lambda: now[0])
    feed(ring, "a", [started("a"), *COMPLETED_RUN])
    parked = [started("p"), t.StepStarted(step=0, attempt=1, at=100.0)]
    parked.append(t.SagaParked(error="crashed", at=100.5))
    feed(ring, "p", parked)
    minute = ring.series()[-1]
    assert {"started": 2, "completed": 1, "compensated": 0, "failed": 1} == minute.counts
    # From a step's first start to its end, retries included (as saga_step_duration_seconds).
    assert [pytest.approx(0.2), pytest.approx(0.8)] == minute.latencies
    now[0] += 60 * MINUTES  # an hour later: that minute has gone
    feed(ring, "b", [started("b")])
    assert MINUTES == len(ring.series())
    assert 1 == sum(m.counts["started"] for m in ring.series())
    assert 1 == len(ring.minutes)


def test_percentile_by_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert 2 == percentile([3, 1, 2], 0.5)
    assert 100 == percentile(list(range(1, 101)), 0.99) + 1


def test_the_timeline_has_attempts_backoffs_and_the_step_in_doubt() -> None:
    events = [
        started("a"),
        *COMPLETED_RUN[:5],
        t.StepFailed(step=1, attempt=2, error="timed out", outcome=t.Outcome.UNKNOWN, at=101.5),
        t.CompensationStarted(step=0, attempt=1, at=101.5),
        t.CompensationCompleted(step=0, attempt=1, at=101.7),
    ]
    line = timeline(events, NAMES, now=200.0)
    reserve, confirm = line.rows
    assert [("attempt", "completed"), ("compensation", "completed")] == [
        (bar.kind, bar.outcome) for bar in reserve.bars
    ]
    kinds = [(bar.kind, bar.outcome) for bar in confirm.bars]
    assert [("attempt", "retried"), ("backoff", "done"), ("attempt", "unknown")] == kinds
    assert confirm.in_doubt and not reserve.in_doubt
    assert (100.3, 100.8) == (confirm.bars[1].start, confirm.bars[1].end)
    assert (100.0, 101.7) == (line.start, line.end)
    placed = line.layout(width=1000)
    assert 0 == min(p["x"] for p in placed)
    assert 1000 == pytest.approx(max(p["x"] + p["width"] for p in placed))
    rows = history(events, NAMES)
    assert rows[0]["at"].endswith("Z")
    assert ".300000Z" in rows[4]["at"]  # milliseconds (and finer) are kept
    assert ("StepAttemptFailed", "confirm") == (rows[4]["type"], rows[4]["step"])
    assert "error: boom" in rows[4]["details"] and "retry in: 500 ms" in rows[4]["details"]


def test_a_step_still_running_ends_at_now() -> None:
    line = timeline([started("a"), COMPLETED_RUN[0]], NAMES, now=105.0)
    (bar,) = line.rows[0].bars
    assert bar.end is None and 105.0 == line.end
    assert line.layout()[0]["end"] is None
