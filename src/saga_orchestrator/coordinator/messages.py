"""Messages the coordinator and saga actors understand, and what they answer."""

from __future__ import annotations

from typing import Any

import attrs

from saga_orchestrator.store.records import InstanceRecord, SagaRecord


@attrs.frozen(kw_only=True)
class StartSaga:
    """Ask the coordinator: start a saga; answers :class:`StartResult`.

    Raises ``UnknownSagaType``, ``UnknownSagaVersion``, ``ValidationError``,
    ``OverloadedError``, ``StoreError``.
    """

    saga_type: str
    data: Any
    version: int | None = None
    """The definition version to start on; ``None``: the type's newest loaded version."""
    idempotency_key: str | None = None
    correlation_id: str | None = None
    trigger_event_id: str | None = None
    """The event that asks for this start (the router's), kept with the saga."""
    key_is_new: bool = False
    """The ``idempotency_key`` was made for this start (the HTTP layer's, when the client sent
    none): no saga can hold it yet, so the coordinator starts the saga without looking the key
    up (as it does a start without a key) and records the key with it."""


@attrs.frozen(kw_only=True)
class StartResult:
    saga: SagaRecord
    created: bool
    """False when the idempotency key named an existing saga, which is returned instead."""


@attrs.frozen(kw_only=True)
class CancelSaga:
    """Ask: cancel a saga; answers the saga's status once cancellation has started.

    Raises ``SagaNotFound``, ``SagaStateConflict`` (it has ended or waits for an operator).
    """

    saga_id: str
    reason: str = "cancelled by request"


@attrs.frozen(kw_only=True)
class RetrySaga:
    """Ask: resume a parked saga (``compensation_failed`` or ``failed``); answers its status.

    Raises ``SagaNotFound``, ``SagaStateConflict`` (it is not parked).
    """

    saga_id: str
    by: str | None = None
    """Who asks (the name of the API key used), recorded with the retry."""
    reason: str | None = None


@attrs.frozen(kw_only=True)
class OperateSaga:
    """Ask: an operator's action on a parked saga (``coordinator.operator``: retry, resolve a
    step in doubt, skip a compensation, resume from a step); answers :class:`OperatorOutcome`.
    With ``dry_run`` nothing is recorded: the answer says what would be.

    Raises ``SagaNotFound``, ``SagaStateConflict`` (the action does not apply: why is said),
    ``ValidationError`` (a resume's patched input does not fit the saga's input type).
    """

    saga_id: str
    action: Any
    """A ``coordinator.operator.Action``; a ``Resume`` carries its input *patch*, applied here."""
    by: str | None = None
    reason: str | None = None
    dry_run: bool = False


@attrs.frozen(kw_only=True)
class OperatorOutcome:
    saga_id: str
    status: str
    """The saga's status after the action (would be, with ``dry_run``)."""
    dry_run: bool
    transitions: tuple[str, ...]
    """The transitions the action records (would record) at once, in order."""


@attrs.frozen
class GetStatus:
    """Ask the coordinator for :class:`CoordinatorStatus`."""


@attrs.frozen(kw_only=True)
class CoordinatorStatus:
    active_sagas: int
    max_active_sagas: int
    recovered: bool
    """Recovery of the sagas found in the store at start-up is done."""
    recovered_sagas: int
    mailbox_depth: int
    saga_types: tuple[str, ...]
    instance_id: str = ""
    """This instance's id in the store (empty until it registered)."""
    lease_holds: bool = True
    """Whether this instance's leases surely hold (it may start and drive sagas)."""
    live_instances: tuple[InstanceRecord, ...] = ()
    """The instances sharing the store, as read at the last heartbeat."""
    waiting_for_definition: tuple[tuple[str, int, int], ...] = ()
    """(type, version, count) of the active sagas no live instance drives whose definition
    version this process has not loaded, as of the last look."""


@attrs.frozen(kw_only=True)
class DeliverEvent:
    """Ask: hand an event addressed to a saga (a reply) to it; answers once it is durable in the
    saga's history (``"accepted"``, or ``"duplicate"`` for an event id it already has).

    Raises ``SagaNotFound``, ``SagaStateConflict`` (the saga has ended or is parked).
    """

    saga_id: str
    event_id: str
    event_type: str
    data: dict[str, Any] = attrs.field(factory=dict)
