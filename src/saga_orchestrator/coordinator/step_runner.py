"""The attempts of a saga's steps' actions or compensations, run for a saga actor.

Each attempt runs in a cancel scope whose deadline is the step's timeout or, for a step's action,
the saga deadline if that comes first; the actor can cut it short at any time (a cancel). Several
attempts run at once in a parallel group (one per step). How one
ended comes back as a pure outcome (:data:`~.plan.Attempt`), or ``None`` when it was cut short:
what to record is the core's call.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from typing import Any

import trio

from saga_orchestrator.errors import SagaOrchestratorError

from . import decide as core
from .clock import Clock
from .definition import NonRetryableError, SagaDefinition, StepContext
from .plan import Attempt, Raised, Succeeded, TimedOut
from .state import SagaState, StepStatus

__all__ = ["StepRunner"]

_JSON_SCALARS = frozenset((str, int, bool))


class StepRunner:
    """Runs attempts (one per step at a time), and cuts a running one short on request."""

    def __init__(
        self,
        *,
        saga_id: str,
        definition: SagaDefinition,
        resources: Mapping[str, Any],
        clock: Clock,
    ) -> None:
        self._saga_id = saga_id
        self._definition = definition
        self._resources = resources
        self._clock = clock
        self._scopes: dict[int, trio.CancelScope] = {}
        self._cut: set[int] = set()
        self._input: Any = None
        self._input_of: Any = None
        self.last_error: dict[int, BaseException | None] = {}
        """By step: the error its last attempt raised (for the log line with its traceback)."""

    def cut(self, step: int) -> None:
        """Cut the attempt of ``step`` short (it ends at its next checkpoint): the running
        one, or the one whose task has not started yet."""
        self._cut.add(step)
        scope = self._scopes.get(step)
        if scope is not None:
            scope.cancel()

    async def run(self, run: core.Run, state: SagaState) -> core.AttemptEnded:
        """Run the attempt ``run`` names, with ``state`` the saga's state as it starts."""
        limit = run.timeout
        by_deadline = False
        if run.cut_at is not None:
            left = run.cut_at - self._clock.now()
            by_deadline = left < limit
            limit = max(0.0, min(limit, left))
        scope = self._scopes[run.step] = trio.CancelScope(deadline=trio.current_time() + limit)
        if run.step in self._cut:  # cut before its task started
            scope.cancel()
        self.last_error[run.step] = None
        step = self._definition.steps[run.step]
        outcome: Attempt | None = None
        try:
            with scope:
                try:
                    if run.compensation:
                        assert step.compensation is not None
                        result = state.steps[run.step].result
                        await step.compensation(self._context(state, run, result))
                        outcome = Succeeded()
                    else:
                        outcome = _checked_result(await step.action(self._context(state, run)))
                except Exception as exc:
                    self.last_error[run.step] = exc
                    retryable = not isinstance(exc, NonRetryableError) and not isinstance(
                        exc, step.retry.non_retryable
                    )
                    outcome = Raised(
                        _describe(exc),
                        retryable=retryable,
                        retry_after=_retry_after(exc),
                        error_type=type(exc).__name__,
                        frames=frames_of(exc, skip=1),  # not this frame: the step's
                        effect_unknown=getattr(exc, "effect_unknown", False) is True,
                    )
        finally:
            del self._scopes[run.step]
        if outcome is not None or run.step in self._cut:
            self._cut.discard(run.step)
            return core.AttemptEnded(run.step, outcome)
        if by_deadline:
            return core.AttemptEnded(run.step, None, deadline_passed=True)
        return core.AttemptEnded(run.step, TimedOut(run.timeout))  # its own time limit

    def _context(self, state: SagaState, run: core.Run, result: Any = None) -> StepContext:
        steps = self._definition.steps
        results = {
            steps[i].name: s.result
            for i, s in enumerate(state.steps)
            if s.status is StepStatus.COMPLETED
        }
        name = steps[run.step].name
        if self._input is None or self._input_of is not state.input:
            self._input = self._definition.parse_input(state.input)
            self._input_of = state.input  # an operator's resume may have patched it
        generation = state.steps[run.step].generation
        key = f"{self._saga_id}:{name}" + (f":r{generation}" if generation else "")
        return StepContext(
            saga_id=self._saga_id,
            saga_type=state.saga_type,
            step=name,
            attempt=run.attempt,
            input=self._input,
            results=results,
            idempotency_key=key,
            correlation_id=state.correlation_id,
            result=result,
            resources=self._resources,
        )


FRAMES_KEPT = 5
"""Frames of a step's error kept with the saga (the innermost, where it was raised)."""
FRAME_BYTES = 240
"""Most bytes (UTF-8) of one kept frame: a step keeps at most 1200 bytes of frames."""
ERROR_TEXT = 2000
"""Most characters of an error's message kept with the saga (the rest is cut, with ``…``)."""


def frames_of(exc: BaseException, *, skip: int = 0) -> tuple[str, ...]:
    """The last frames of ``exc``'s traceback as ``dir/file.py:line in function: code``, newest
    last, bounded: ``FRAMES_KEPT`` frames of at most ``FRAME_BYTES`` bytes each.

    Only for an error raised by the step's own code: an error of ours (a downstream service's
    answer, ``NonRetryableError``) says what happened in its type and message. ``skip``: the
    outermost frames to leave out (the caller's own)."""
    if isinstance(exc, SagaOrchestratorError):
        return ()
    kept = []
    for frame in traceback.extract_tb(exc.__traceback__)[skip:][-FRAMES_KEPT:]:
        where = "/".join(frame.filename.replace("\\", "/").split("/")[-2:])
        text = f"{where}:{frame.lineno} in {frame.name}"
        if frame.line:
            text += f": {frame.line.strip()}"
        kept.append(_cut_utf8(text, FRAME_BYTES))
    return tuple(kept)


def _cut_utf8(text: str, size: int) -> str:
    """``text`` cut to at most ``size`` bytes of UTF-8, never inside a character."""
    return text.encode()[:size].decode(errors="ignore")


def _retry_after(exc: BaseException) -> float | None:
    """The delay an error asks for before a retry (its ``retry_after`` attribute, seconds)."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > ERROR_TEXT:
        text = text[: ERROR_TEXT - 1] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _checked_result(result: Any) -> Attempt:
    """``Succeeded(result)`` if the store can keep ``result`` (JSON without NaN or infinity,
    as the store encodes it), else a failure that is not retried."""
    if result is None or type(result) in _JSON_SCALARS:
        return Succeeded(result)
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return Raised(f"the step's result cannot be stored as JSON: {exc}", retryable=False)
    return Succeeded(result)
