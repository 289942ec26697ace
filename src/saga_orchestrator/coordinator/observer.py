"""Hooks the saga engine calls as sagas move, for metrics, benchmarks and tests.

The engine calls them synchronously right after the transitions are durable. They must be quick
and must not raise (an error is logged and ignored).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from .state import SagaState
from .transitions import Transition

log = logging.getLogger(__name__)


def step_names_of(names: Mapping[Any, Sequence[str]], saga: SagaState) -> Sequence[str]:
    """The step names of ``saga``'s definition from ``names``, keyed by (type, version) (the
    service's: versions may differ in their steps) or by type."""
    return names.get((saga.saga_type, saga.saga_version)) or names.get(saga.saga_type, ())


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
