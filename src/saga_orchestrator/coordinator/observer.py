"""Hooks the saga engine calls as sagas move, for metrics, benchmarks and tests.

The engine calls them synchronously right after the transitions are durable. They must be quick
and must not raise (an error is logged and ignored).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .state import SagaState
from .transitions import Transition

log = logging.getLogger(__name__)


class SagaObserver:
    """Does nothing; subclass and override what you need."""

    def transitions_recorded(
        self, before: SagaState, after: SagaState, transitions: Sequence[Transition]
    ) -> None:
        """``transitions`` took the saga from ``before`` to ``after`` and are durable."""


class FanOut(SagaObserver):
    """Tells each of ``observers`` in turn; one that fails does not keep the others from
    knowing."""

    def __init__(self, *observers: SagaObserver) -> None:
        self.observers = observers

    def transitions_recorded(
        self, before: SagaState, after: SagaState, transitions: Sequence[Transition]
    ) -> None:
        for observer in self.observers:
            notify(observer, before, after, transitions)


def notify(
    observer: SagaObserver,
    before: SagaState,
    after: SagaState,
    transitions: Sequence[Transition],
) -> None:
    """Call ``observer`` without letting its failure reach the saga."""
    try:
        observer.transitions_recorded(before, after, transitions)
    except Exception:
        log.exception("saga observer %r failed", observer)
