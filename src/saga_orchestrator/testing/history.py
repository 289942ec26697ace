"""What the engine recorded, per saga, as an observer sees it: transitions, status, waits."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import trio

from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.observer import SagaObserver
from saga_orchestrator.coordinator.state import SagaState
from saga_orchestrator.coordinator.transitions import Transition

__all__ = ["History"]


class History(SagaObserver):
    """Keeps every durable transition of every saga, in order, across engine restarts."""

    def __init__(self, definitions: Mapping[str, SagaDefinition]) -> None:
        self._definitions = definitions
        self._transitions: dict[str, list[Transition]] = {}
        self._steps: dict[str, Sequence[str]] = {}
        self._status: dict[str, str] = {}
        self._changed = trio.Event()
        self.on_recorded: Callable[[str, str, str | None], None] = lambda *_: None
        """Called for each transition once it is durable: (saga id, name, step name)."""

    def transitions_recorded(
        self, before: SagaState, after: SagaState, transitions: Sequence[Transition]
    ) -> None:
        saga_id = after.saga_id
        if saga_id not in self._steps:
            definition = self._definitions[after.saga_type]
            self._steps[saga_id] = [step.name for step in definition.steps]
        self._transitions.setdefault(saga_id, []).extend(transitions)
        self._status[saga_id] = str(after.status)
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        for transition in transitions:
            self.on_recorded(saga_id, type(transition).__name__, self._step_of(saga_id, transition))

    def _step_of(self, saga_id: str, transition: Transition) -> str | None:
        index = getattr(transition, "step", None)
        return None if not isinstance(index, int) else self._steps[saga_id][index]

    def status(self, saga_id: str) -> str | None:
        """The saga's status after its last durable transition (``None``: none yet)."""
        return self._status.get(saga_id)

    def transitions(self, saga_id: str) -> list[Transition]:
        return list(self._transitions.get(saga_id, ()))

    def trace(self, saga_id: str) -> list[str]:
        lines = []
        for transition in self._transitions.get(saga_id, ()):
            step = self._step_of(saga_id, transition)
            name = type(transition).__name__
            lines.append(name if step is None else f"{name} {step}")
        return lines

    def count(self, saga_id: str, name: str, step: str | None) -> int:
        return sum(
            1
            for t in self._transitions.get(saga_id, ())
            if type(t).__name__ == name and step in (None, self._step_of(saga_id, t))
        )

    async def wait(self, done: Callable[[], bool], within: float, where: Callable[[], str]) -> None:
        """Wait until ``done()`` holds, re-checked after each recorded transition."""
        with trio.move_on_after(within) as scope:
            while not done():
                await self._changed.wait()
        if scope.cancelled_caught and not done():
            raise trio.TooSlowError(f"after {within:g} s: {where()}")
