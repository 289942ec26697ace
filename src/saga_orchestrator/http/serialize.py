"""From the store's records and the saga definitions to the API's views (:mod:`.views`).

Timestamps are ISO-8601 strings in UTC (``2024-05-01T12:00:00.123456Z``). Everything here is
pure: records in, views out, except :func:`json_response`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from quart import Response, current_app

from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.coordinator.definition import SagaDefinition
from saga_orchestrator.coordinator.layout import Group, Placement, Stage
from saga_orchestrator.coordinator.state import CompensationStatus, SagaStatus, StepStatus
from saga_orchestrator.store.records import RecordedEvent, SagaRecord, StepRecord

from .schema import input_schema
from .views import to_json
from .views.events import PublishedEvent, StoredEvent
from .views.sagas import (
    EventView,
    NotLoadedType,
    SagaSummary,
    SagaType,
    SagaTypes,
    SagaView,
    StageType,
    StartedSaga,
    StepType,
    StepView,
    TypeVersion,
)

__all__ = [
    "event_view",
    "input_schema",
    "iso_time",
    "json_response",
    "saga_summary",
    "saga_types_view",
    "saga_view",
    "step_view",
    "step_views",
    "stored_event",
]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def iso_time(timestamp: float | None) -> str | None:
    """Seconds since the epoch as an ISO-8601 UTC string; ``None`` stays ``None``."""
    if timestamp is None:
        return None
    try:
        moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):  # beyond year 9999 (a huge saga timeout)
        moment = dt.datetime.max.replace(tzinfo=dt.UTC) if timestamp > 0 else _EPOCH
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _time(timestamp: float) -> str:
    text = iso_time(timestamp)
    assert text is not None
    return text


def step_view(step: StepRecord, placement: Placement | None = None) -> StepView:
    """A step; ``placement``: its group and branch when it is in a parallel group."""
    return StepView(
        index=step.index,
        name=step.name,
        status=StepStatus(step.status),
        attempts=step.attempts,
        started_at=iso_time(step.started_at),
        finished_at=iso_time(step.finished_at),
        result=step.result,
        error=step.error,
        error_type=step.error_type,
        error_frames=list(step.error_frames),
        compensation_status=CompensationStatus(step.compensation_status),
        compensation_attempts=step.compensation_attempts,
        compensation_error=step.compensation_error,
        group=None if placement is None else placement.group,
        branch=None if placement is None else placement.branch,
    )


def step_views(
    steps: Sequence[StepRecord], placements: Sequence[Placement | None] = ()
) -> list[StepView]:
    """The steps, each with its placement (``placements``: by step index, as the saga's
    definition has them; none known: plain steps)."""
    return [step_view(s, placements[s.index] if s.index < len(placements) else None) for s in steps]


def _saga_fields(record: SagaRecord) -> dict[str, Any]:
    return {
        "saga_id": record.saga_id,
        "saga_type": record.saga_type,
        "saga_version": record.saga_version,
        "status": SagaStatus(record.status),
        "current_step": record.current_step,
        "input": record.input,
        "result": record.result,
        "error": record.error,
        "idempotency_key": record.idempotency_key,
        "correlation_id": record.correlation_id,
        "trigger_event_id": record.trigger_event_id,
        "deadline_at": _time(record.deadline_at),
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
        "version": record.version,
    }


def saga_summary(record: SagaRecord) -> SagaSummary:
    """A saga without its steps (saga lists)."""
    return SagaSummary(**_saga_fields(record))


def saga_view(
    record: SagaRecord, placements: Sequence[Placement | None] = (), **extra: Any
) -> SagaView:
    """A saga with its steps (see :func:`step_views`); ``created=...`` makes a
    :class:`~.views.StartedSaga`; and ``waiting_for_definition=...``."""
    cls = StartedSaga if "created" in extra else SagaView
    steps = step_views(record.steps, placements)
    return cls(**_saga_fields(record), steps=steps, **extra)


def event_view(event: RecordedEvent) -> EventView:
    """One transition of a saga's stream."""
    return EventView(**_event_fields(event))


def stored_event(event: RecordedEvent, **extra: Any) -> StoredEvent:
    """An event with its stream; ``created=...`` makes a :class:`~.views.PublishedEvent`."""
    cls = PublishedEvent if "created" in extra else StoredEvent
    return cls(**_event_fields(event), stream_id=event.stream_id, **extra)


def _event_fields(event: RecordedEvent) -> dict[str, Any]:
    return {
        "position": event.position,
        "version": event.version,
        "event_id": event.event_id,
        "type": event.event_type,
        "data": event.data,
        "metadata": event.metadata,
        "recorded_at": _time(event.recorded_at),
    }


def saga_types_view(catalog: SagaCatalog, active: Mapping[tuple[str, int], int]) -> SagaTypes:
    """Each loaded type (its newest version first-hand) with its versions, loaded or run by
    active sagas; ``active``: the active sagas by (type, version)."""
    names = catalog.names()
    items = []
    for name in names:
        newest = catalog.get(name)
        numbers = sorted({*catalog.versions(name), *(v for t, v in active if t == name)})
        loaded = set(catalog.versions(name))
        versions = [
            TypeVersion(
                version=v,
                loaded=v in loaded,
                active=active.get((name, v), 0),
                steps=_step_types(catalog.get(name, v)) if v in loaded else None,
            )
            for v in numbers
        ]
        items.append(
            SagaType(
                name=newest.name,
                version=newest.version,
                description=newest.description,
                steps=_step_types(newest),
                triggers=list(newest.triggers),
                input_schema=input_schema(newest.input_type),
                versions=versions,
                stages=[_stage_type(newest, stage) for stage in newest.stages],
            )
        )
    not_loaded = [
        NotLoadedType(saga_type=t, version=v, active=n)
        for (t, v), n in sorted(active.items())
        if t not in names
    ]
    return SagaTypes(items=items, not_loaded=not_loaded)


def _step_types(definition: SagaDefinition) -> list[StepType]:
    return [
        StepType(
            name=step.name,
            has_compensation=step.compensation is not None,
            timeout_seconds=step.timeout,
            group=None if placement is None else placement.group,
            branch=None if placement is None else placement.branch,
        )
        for step, placement in zip(definition.steps, definition.placements, strict=True)
    ]


def _stage_type(definition: SagaDefinition, stage: Stage) -> StageType:
    names = [step.name for step in definition.steps]
    if isinstance(stage, Group):
        branches = [[names[i] for i in branch] for branch in stage.branches]
        return StageType(group=stage.name, branches=branches)
    return StageType(step=names[stage])


# --------------------------------------------------------------------------------------------


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response with ``body``: a view of :mod:`.views`, or plain JSON values (keys in
    the order given)."""
    response = current_app.response_class(
        json.dumps(to_json(body), ensure_ascii=False, allow_nan=False, default=str),
        status=status,
        content_type="application/json",
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
