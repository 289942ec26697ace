"""The throttled log on trio's MockClock: one line per kind and interval, the count of those left
out on the next line of the kind or when the kind goes quiet."""

from __future__ import annotations

import logging

import pytest
import trio.testing

from saga_orchestrator.throttled_log import ThrottledLog

LOGGER = "tests.throttled"


@pytest.fixture
def throttled(caplog: pytest.LogCaptureFixture) -> ThrottledLog:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return ThrottledLog(logging.getLogger(LOGGER), interval=60.0)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == LOGGER]


async def test_repeats_within_the_interval_are_counted_and_reported_with_the_next_line(
    throttled: ThrottledLog,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    for n in range(38):
        throttled.error("event %s failed: %s", f"e-{n}", "boom")
        autojump_clock.jump(1.0)
    autojump_clock.jump(60.0 - 38.0)  # 60 s after the first line
    assert throttled.error("event %s failed: %s", "e-38", "boom")
    assert [
        ("ERROR", "event e-0 failed: boom"),
        ("ERROR", "event e-38 failed: boom (repeated 37 times in the last 60 s)"),
    ] == lines(caplog)
    assert 37 == throttled.left_out


async def test_kinds_are_throttled_apart_by_their_key(
    throttled: ThrottledLog,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    for event_type in ("a", "b", "a", "b", "a"):
        throttled.warning("%s failed", event_type, key=("failed", event_type))
    throttled.warning("something else")
    throttled.warning("something else")
    assert [
        ("WARNING", "a failed"),
        ("WARNING", "b failed"),
        ("WARNING", "something else"),
    ] == lines(caplog)


async def test_a_kind_that_went_quiet_is_reported_once_its_interval_has_passed(
    throttled: ThrottledLog,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    throttled.error("dead-lettered %s", "e-1")
    throttled.error("dead-lettered %s", "e-2")
    throttled.error("dead-lettered %s", "e-3")
    autojump_clock.jump(59.0)
    throttled.flush()
    assert [("ERROR", "dead-lettered e-1")] == lines(caplog)  # not yet
    autojump_clock.jump(1.5)
    throttled.flush()
    throttled.flush()
    assert [
        ("ERROR", "dead-lettered e-1"),
        ("ERROR", "dead-lettered e-3 (repeated 2 times in the last 60 s)"),
    ] == lines(caplog)
    # The report was a line of its kind: the next one waits for its own interval.
    assert not throttled.error("dead-lettered %s", "e-4")
    autojump_clock.jump(60.0)
    throttled.info("another kind reports the quiet ones on its way")
    assert ("ERROR", "dead-lettered e-4 (repeated 1 time in the last 60 s)") == lines(caplog)[-2]


async def test_a_kind_with_nothing_left_out_is_forgotten_silently(
    throttled: ThrottledLog,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    throttled.error("once")
    autojump_clock.jump(61.0)
    throttled.flush()
    assert throttled.error("once")
    assert [("ERROR", "once"), ("ERROR", "once")] == lines(caplog)


async def test_the_oldest_kind_is_reported_and_forgotten_beyond_max_kinds(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    throttled = ThrottledLog(logging.getLogger(LOGGER), interval=60.0, max_kinds=2)
    throttled.error("kind %s", 1, key=1)
    throttled.error("kind %s", 1, key=1)
    throttled.error("kind %s", 2, key=2)
    throttled.error("kind %s", 3, key=3)
    assert [
        ("ERROR", "kind 1"),
        ("ERROR", "kind 2"),
        ("ERROR", "kind 1 (repeated 1 time in the last 0 s)"),
        ("ERROR", "kind 3"),
    ] == lines(caplog)
    assert throttled.error("kind %s", 1, key=1)  # forgotten: logged again


async def test_levels_the_logger_leaves_out_are_not_counted(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    throttled = ThrottledLog(logging.getLogger(LOGGER))
    assert not throttled.info("quiet")
    assert (0, []) == (throttled.left_out, lines(caplog))


async def test_a_logged_line_names_its_caller_and_keeps_its_traceback(
    throttled: ThrottledLog,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: trio.testing.MockClock,
) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        throttled.warning("failed: %s", exc, exc_info=exc)
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert "test_a_logged_line_names_its_caller_and_keeps_its_traceback" == record.funcName
    assert record.exc_info is not None and record.exc_info[1] is not None


def test_outside_trio_the_monotonic_clock_is_used(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    throttled = ThrottledLog(logging.getLogger(LOGGER))
    assert throttled.info("outside")
    assert not throttled.info("outside")
