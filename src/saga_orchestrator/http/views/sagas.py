"""Request and response shapes of the saga routes (:mod:`..routes_sagas`)."""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.coordinator.state import CompensationStatus, SagaStatus, StepStatus

from ..schema import api_field
from ._base import (
    MAX_TEXT,
    count_field,
    text_field,
    time_field,
)


def _group_field() -> Any:
    return api_field(
        default=None, doc="The parallel group the step belongs to; `null` for a plain step."
    )


def _branch_field() -> Any:
    return api_field(default=None, doc="Its branch in the group (from 0); `null` for a plain step.")


# =============================================================================================
# Saga requests


@attrs.frozen(kw_only=True)
class StartSagaRequest:
    """Start a saga."""

    saga_type: str = text_field("A type of `GET /sagas/types/available`.")
    data: dict[str, Any] = api_field(doc="The saga's input, checked against its type's schema.")
    idempotency_key: str | None = text_field(
        "A start with a key already used for this saga type returns that saga (200). Default: "
        "a new key, returned in the answer. Send your own to be able to retry a start that got "
        "no answer.",
        default=None,
    )
    correlation_id: str | None = text_field(
        "Kept with the saga and given to its steps; default: the request's X-Correlation-ID.",
        default=None,
    )
    version: int | None = count_field(
        "The version of the saga type to start on (one of its `versions` in "
        "`GET /sagas/types/available`); default: the newest loaded. A version not loaded: 422 "
        "`unknown_saga_version`.",
        minimum=1,
        maximum=2**31 - 1,
        default=None,
    )


@attrs.frozen(kw_only=True)
class CancelRequest:
    """Cancel a saga (the body is optional)."""

    reason: str | None = text_field("Recorded as the saga's error.", default=None)


_STATUS_NAME = "(?:" + "|".join(s.value for s in SagaStatus) + ")"
_STATUS_LIST = f"^{_STATUS_NAME}(?:,{_STATUS_NAME})*$"


@attrs.frozen(kw_only=True)
class ListSagasQuery:
    """Filters and paging of the saga list."""

    status: str | None = api_field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT,
        pattern=_STATUS_LIST,
        pattern_message="expected one or more of "
        + ", ".join(s.value for s in SagaStatus)
        + ", comma-separated",
        doc="Only sagas with one of these statuses, comma-separated or the parameter repeated "
        f"(`status=failed,compensation_failed`): {', '.join(s.value for s in SagaStatus)}.",
    )
    saga_type: str | None = api_field(
        default=None, min_length=1, max_length=MAX_TEXT, doc="Only sagas of this type."
    )
    saga_version: int | None = count_field(
        "Only sagas running on this version of their type (`saga_version`).",
        minimum=1,
        maximum=2**31 - 1,
        default=None,
    )
    active: bool | None = api_field(
        default=None,
        doc="`true`: only active sagas (pending, running, compensating: they still need their "
        "definition); `false`: only the others (ended, or parked for an operator).",
    )
    correlation_id: str | None = api_field(
        default=None, min_length=1, max_length=MAX_TEXT, doc="Only sagas with this correlation id."
    )
    idempotency_key: str | None = api_field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT,
        doc="Only the saga holding this idempotency key (the router's starts use "
        "`event:<event id>:<saga type>`).",
    )
    trigger_event_id: str | None = api_field(
        default=None,
        min_length=1,
        max_length=MAX_TEXT,
        doc="Only the sagas this event started (the `sagas_link` of `POST /events/publish`).",
    )
    created_after: str | None = api_field(
        default=None,
        max_length=64,
        doc="Only sagas created at or after this time: ISO-8601 (UTC without an offset) or "
        "seconds since the epoch.",
    )
    created_before: str | None = api_field(
        default=None, max_length=64, doc="Only sagas created before this time, as above."
    )
    updated_after: str | None = api_field(
        default=None, max_length=64, doc="Only sagas last changed at or after this time."
    )
    updated_before: str | None = api_field(
        default=None, max_length=64, doc="Only sagas last changed before this time."
    )
    limit: int = count_field("Most sagas in the page.", minimum=1, maximum=500, default=50)
    cursor: str | None = api_field(
        default=None, max_length=1024, doc="The `next_cursor` of the previous page."
    )


@attrs.frozen(kw_only=True)
class SagaEventsQuery:
    """A page of a saga's transitions."""

    from_version: int = count_field("The first version to read.", minimum=1, default=1)
    limit: int = count_field("Most transitions in the page.", minimum=1, maximum=1000, default=1000)


@attrs.frozen(kw_only=True)
class WaitQuery:
    """A long poll for a saga's next change."""

    after_version: int = count_field(
        "Answer once the saga's `version` is past this (0: at once).", minimum=0, default=0
    )
    timeout: int = count_field("Seconds to wait at most.", minimum=0, maximum=60, default=30)


# =============================================================================================
# Saga responses


@attrs.frozen(kw_only=True)
class StepView:
    """One step of a saga."""

    index: int
    name: str
    status: StepStatus
    attempts: int
    started_at: str | None = time_field("When its last attempt started")
    finished_at: str | None = time_field("When it finished")
    result: Any = api_field(doc="What the step returned.")
    error: str | None = api_field(
        doc="Its last error's message (of its action, or of its "
        "compensation in `compensation_error`)."
    )
    error_type: str | None = api_field(
        doc="The class of its last error (`KeyError`, `ServiceUnavailable`...): of its action, "
        "or of its compensation once that failed."
    )
    error_frames: list[str] = api_field(
        doc="For an error raised by the step's own code, the last frames of its traceback as "
        "`dir/file.py:line in function: code`, newest last (at most 5 of at most 240 bytes "
        "each); empty for a downstream service's answer."
    )
    compensation_status: CompensationStatus
    compensation_attempts: int
    compensation_error: str | None
    group: str | None = _group_field()
    branch: int | None = _branch_field()


@attrs.frozen(kw_only=True)
class SagaSummary:
    """A saga without its steps (in lists)."""

    saga_id: str = api_field(format="uuid")
    saga_type: str
    saga_version: int
    status: SagaStatus
    current_step: str | None = api_field(doc="The step running or compensating.")
    input: dict[str, Any]
    result: dict[str, Any] | None = api_field(doc="Each completed step's result, by step name.")
    error: str | None
    idempotency_key: str | None
    correlation_id: str | None
    trigger_event_id: str | None = api_field(
        doc="The event that started it (`POST /events/publish`), else null (`POST /sagas/start`)."
    )
    deadline_at: str = time_field("When the saga times out")
    created_at: str = time_field("When it was started")
    updated_at: str = time_field("When it last changed")
    version: int = api_field(doc="Transitions recorded so far.")


@attrs.frozen(kw_only=True)
class SagaView(SagaSummary):
    """A saga with its steps."""

    steps: list[StepView]
    waiting_for_definition: bool = api_field(
        default=False,
        doc="`true`: the saga is active, no live instance drives it, and its type's version "
        "(`saga_version`) is not loaded here: it waits for a process that loads it "
        "(`GET /health/ready` lists these).",
    )


@attrs.frozen(kw_only=True)
class StartedSaga(SagaView):
    """The saga a start made, or found by its idempotency key."""

    created: bool = api_field(doc="`false`: an earlier start with the same key made it.")


@attrs.frozen(kw_only=True)
class SagaPage:
    """A page of sagas, newest first."""

    items: list[SagaSummary]
    next_cursor: str | None = api_field(doc="The `cursor` of the next page; null on the last.")


@attrs.frozen(kw_only=True)
class SagaSteps:
    """A saga's steps."""

    saga_id: str = api_field(format="uuid")
    status: SagaStatus
    items: list[StepView]


@attrs.frozen(kw_only=True)
class EventView:
    """A recorded event."""

    position: int = api_field(doc="Global position, increasing in commit order.")
    version: int = api_field(doc="Version in its stream, from 1.")
    event_id: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str = time_field("When it was recorded")


@attrs.frozen(kw_only=True)
class SagaEvents:
    """A page of a saga's transitions, oldest first."""

    saga_id: str = api_field(format="uuid")
    items: list[EventView]
    next_from_version: int | None = api_field(doc="Where the next page starts; null at the end.")


@attrs.frozen(kw_only=True)
class StepType:
    """A step of a saga type."""

    name: str
    has_compensation: bool
    timeout_seconds: float | None
    group: str | None = _group_field()
    branch: int | None = _branch_field()


@attrs.frozen(kw_only=True)
class StageType:
    """A stage of a saga type: one step, or a parallel group whose branches run at once."""

    step: str | None = api_field(default=None, doc="The step's name; `null` for a group.")
    group: str | None = api_field(default=None, doc="The group's name; `null` for a step.")
    branches: list[list[str]] | None = api_field(
        default=None, doc="The group's branches, each its steps' names in order."
    )


@attrs.frozen(kw_only=True)
class TypeVersion:
    """A version of a saga type: loaded by this process, or only run by active sagas."""

    version: int
    loaded: bool = api_field(
        doc="`false`: active sagas run on it, but this process has not loaded it (they wait "
        "for a process that has)."
    )
    active: int = api_field(doc="Active sagas (pending, running, compensating) on it.")
    steps: list[StepType] | None = api_field(doc="Its steps; null when it is not loaded.")


@attrs.frozen(kw_only=True)
class SagaType:
    """A saga type the service runs; the top-level fields are its newest loaded version's."""

    name: str
    version: int = api_field(doc="The newest loaded version: new sagas start on it.")
    description: str
    steps: list[StepType]
    triggers: list[str] = api_field(doc="Event types that start a saga of this type.")
    input_schema: dict[str, Any] = api_field(doc="JSON schema of the saga's `data`.")
    versions: list[TypeVersion] = api_field(
        doc="Every version loaded or run by active sagas, oldest first."
    )
    stages: list[StageType] = api_field(
        default=attrs.Factory(list),
        doc="The stages run one after another: steps, and parallel groups whose branches run "
        "at once and are joined before the next stage.",
    )


@attrs.frozen(kw_only=True)
class NotLoadedType:
    """A version of a type this process has not loaded at all that active sagas run on."""

    saga_type: str
    version: int
    active: int


@attrs.frozen(kw_only=True)
class SagaTypes:
    """The saga types, by name."""

    items: list[SagaType]
    not_loaded: list[NotLoadedType] = api_field(
        doc="Active sagas' types of which this process has loaded no version (they wait for a "
        "process that has)."
    )


@attrs.frozen(kw_only=True)
class CommandAccepted:
    """A cancel or retry was accepted; the saga goes on in the background."""

    saga_id: str = api_field(format="uuid")
    status: SagaStatus
