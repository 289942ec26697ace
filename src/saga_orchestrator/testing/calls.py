"""The calls a saga made: every action and compensation attempt, real or faked, in order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from saga_orchestrator.coordinator.definition import SagaDefinition, Step, StepContext

from .outcomes import Outcome

__all__ = ["Call", "CallLog"]

Kind = Literal["action", "compensation"]


@attrs.frozen
class Call:
    """One attempt of a step's action or compensation, as the step's code saw it."""

    saga_id: str
    step: str
    kind: Kind
    attempt: int
    idempotency_key: str
    result: Any = None
    """For a compensation: the result of the action it undoes (``None``: outcome unknown)."""


@attrs.define
class CallLog:
    """Every call, in the order they began; read it with :meth:`of`, :meth:`steps`."""

    calls: list[Call] = attrs.field(factory=list)

    def of(self, saga_id: str, kind: Kind | None = None) -> list[Call]:
        """The saga's calls, of one kind or both."""
        return [c for c in self.calls if c.saga_id == saga_id and kind in (None, c.kind)]

    def steps(self, saga_id: str, kind: Kind = "action") -> list[str]:
        """The step names of the saga's calls of ``kind``, one per attempt, in order."""
        return [c.step for c in self.of(saga_id, kind)]

    def wrap(
        self,
        definition: SagaDefinition,
        actions: Mapping[str, Outcome],
        compensations: Mapping[str, Outcome],
    ) -> SagaDefinition:
        """``definition`` with every step's functions recorded here, and those named in
        ``actions`` / ``compensations`` (steps of this definition) replaced by the fakes."""
        for name in compensations:
            step = next(s for s in definition.steps if s.name == name)
            if step.compensation is None:
                raise ValueError(f"step {name!r} of {definition.name!r} has no compensation")
        steps = [self._step(s, actions.get(s.name), compensations.get(s.name))
                 for s in definition.steps]  # fmt: skip
        return definition.with_steps(steps)

    def _step(self, step: Step, action: Outcome | None, compensation: Outcome | None) -> Step:
        real = step.compensation
        return attrs.evolve(
            step,
            action=self._recorded("action", action or step.action),
            compensation=None if real is None else self._recorded("compensation",
                                                                  compensation or real),
        )  # fmt: skip

    def _recorded(self, kind: Kind, function: Outcome) -> Outcome:
        async def recorded(ctx: StepContext) -> Any:
            result = ctx.result if kind == "compensation" else None
            call = Call(ctx.saga_id, ctx.step, kind, ctx.attempt, ctx.idempotency_key, result)
            self.calls.append(call)
            return await function(ctx)

        return recorded
