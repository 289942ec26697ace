"""Prometheus metrics of the service: one registry per service instance.

Counters and histograms are updated as things happen (the saga engine's observer, the store
actor's batch hook, the HTTP layer); gauges (active sagas, mailbox depths) are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from saga_orchestrator.coordinator.observer import SagaObserver, step_names_of
from saga_orchestrator.coordinator.state import (
    PARKED,
    TERMINAL,
    SagaState,
    StepStatus,
)
from saga_orchestrator.coordinator.transitions import Transition

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SAGA_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_STEP_END = {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.UNKNOWN}
_ENDED = frozenset((*TERMINAL, *PARKED))


Labels = str | tuple[str, ...]
"""One label's name (or value), or several."""
_Source = tuple[
    type[GaugeMetricFamily] | type[CounterMetricFamily],
    str,
    Labels,
    Callable[[], Mapping[Any, float]],
]


def _as_list(labels: Labels) -> list[str]:
    return [labels] if isinstance(labels, str) else list(labels)


class _ReadAtScrape(Collector):
    """Gauges and counters whose values are read when Prometheus scrapes."""

    def __init__(self, sources: dict[str, _Source]):
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for name, (kind, help_text, label, read) in self.sources.items():
            family = kind(name, help_text, labels=_as_list(label))
            for value_labels, value in read().items():
                family.add_metric(_as_list(value_labels), value)
            yield family


class ServiceMetrics(SagaObserver):
    """Every metric the service exports; also the saga engine's observer."""

    def __init__(self, step_names: Mapping[Any, Sequence[str]] | None = None) -> None:
        """``step_names``: the step names of each saga type, for the step metrics' labels."""
        self.step_names = dict(step_names or {})
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sagas_started = Counter("saga_started", "Sagas started.", ["saga_type"], registry=r)
        self.sagas_finished = Counter(
            "saga_finished",
            "Sagas that ended or parked for an operator, by final status.",
            ["saga_type", "status"],
            registry=r,
        )
        self.saga_duration = Histogram(
            "saga_duration_seconds",
            "Time from start to the end (or parking) of a saga.",
            ["saga_type", "status"],
            buckets=_SAGA_BUCKETS,
            registry=r,
        )
        self.step_duration = Histogram(
            "saga_step_duration_seconds",
            "Time from a step's first start to its end, by outcome.",
            ["saga_type", "step", "outcome"],
            buckets=_SAGA_BUCKETS,
            registry=r,
        )
        self.store_batch_size = Histogram(
            "store_batch_size",
            "Appends committed in one store transaction (group commit).",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_commit_seconds = Histogram(
            "store_commit_seconds",
            "Time to commit one store batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request handling time by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._sources: dict[str, _Source] = {}
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r.register(_ReadAtScrape(self._sources))

    def gauge(
        self,
        name: str,
        help_text: str,
        read: Callable[[], Mapping[Any, float]],
        *,
        label: Labels = "name",
    ) -> None:
        """Export gauge ``name`` with one sample per ``read()`` entry, labelled ``label``
        (a tuple of names: each entry's key is the tuple of their values)."""
        self._sources[name] = (GaugeMetricFamily, help_text, label, read)

    def counter(
        self,
        name: str,
        help_text: str,
        read: Callable[[], Mapping[Any, float]],
        *,
        label: Labels = "outcome",
    ) -> None:
        """Export counter ``name`` (``name_total``) from counts someone else keeps."""
        self._sources[name] = (CounterMetricFamily, help_text, label, read)

    def store_batch(self, size: int, seconds: float) -> None:
        self.store_batch_size.observe(size)
        self.store_commit_seconds.observe(seconds)

    def transitions_recorded(
        self, before: SagaState, after: SagaState, transitions: Sequence[Transition]
    ) -> None:
        saga_type = after.saga_type
        if before.version == 0:
            self._child(self.sagas_started, saga_type).inc()
        names = step_names_of(self.step_names, after)
        for index, (old, new) in enumerate(zip(before.steps, after.steps, strict=True)):
            if new is old:  # unchanged steps are the same object: the common case
                continue
            if new.status in _STEP_END and old.status not in _STEP_END and new.started_at:
                elapsed = (new.finished_at or after.updated_at) - new.started_at
                name = names[index] if index < len(names) else str(index)
                self._child(self.step_duration, saga_type, name, new.status.value).observe(
                    max(0.0, elapsed)
                )
        if before.status is not after.status and (after.status in _ENDED):
            status = after.status.value
            self._child(self.sagas_finished, saga_type, status).inc()
            self._child(self.saga_duration, saga_type, status).observe(
                max(0.0, after.updated_at - after.created_at)
            )

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: prometheus-client's own look-up is slow."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
