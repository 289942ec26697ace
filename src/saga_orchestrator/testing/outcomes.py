"""Fake step outcomes: what a faked action or compensation does on each attempt.

An outcome is called with the step's :class:`StepContext` in place of the real function::

    succeed({"account_id": "a-1"})     # every attempt returns this
    fail(RuntimeError("down"))         # every attempt raises this
    succeed_after(2, {"id": 1})        # attempts 1 and 2 raise, the third returns
    hang()                             # never returns: the step's timeout, a cancel or the
                                       # saga's deadline ends it (its outcome is then unknown)
    per_attempt(fail(...), hang(), succeed())   # attempt n takes the n-th; the last repeats

A plain ``async def (ctx) -> result`` works wherever an outcome does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from saga_orchestrator.coordinator.definition import StepContext

__all__ = ["Outcome", "fail", "hang", "per_attempt", "succeed", "succeed_after"]

Outcome = Callable[[StepContext], Awaitable[Any]]


class FakeStepError(RuntimeError):
    """What :func:`fail` and :func:`succeed_after` raise when not given an error."""


def succeed(value: Any = None) -> Outcome:
    """Every attempt returns ``value`` (a step result must be JSON: dicts, lists, strings,
    numbers, booleans, ``None``)."""

    async def outcome(ctx: StepContext) -> Any:
        return value

    return outcome


def fail(error: BaseException | None = None) -> Outcome:
    """Every attempt raises ``error`` (a ``FakeStepError`` naming the step by default). Raise a
    :class:`~saga_orchestrator.coordinator.definition.NonRetryableError` to fail at once."""

    async def outcome(ctx: StepContext) -> Any:
        raise error if error is not None else FakeStepError(f"{ctx.step} failed (fake)")

    return outcome


def succeed_after(failures: int, value: Any = None, error: BaseException | None = None) -> Outcome:
    """The first ``failures`` attempts raise ``error``; the next returns ``value``."""
    failing = fail(error)

    async def outcome(ctx: StepContext) -> Any:
        if ctx.attempt <= failures:
            return await failing(ctx)
        return value

    return outcome


def hang() -> Outcome:
    """Never returns: with trio's ``MockClock`` (pytest-trio's ``autojump_clock``) the step's
    timeout passes at once in virtual time."""

    async def outcome(ctx: StepContext) -> Any:
        await trio.sleep_forever()

    return outcome


def per_attempt(*outcomes: Outcome) -> Outcome:
    """Attempt ``n`` runs the ``n``-th outcome; attempts past the last run the last one."""
    if not outcomes:
        raise ValueError("per_attempt needs at least one outcome")

    async def outcome(ctx: StepContext) -> Any:
        return await outcomes[min(ctx.attempt, len(outcomes)) - 1](ctx)

    return outcome
