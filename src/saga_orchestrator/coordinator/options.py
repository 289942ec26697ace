"""Engine options (from the settings) and the pure shape of a saga definition."""

from __future__ import annotations

from typing import Any

import attrs

from .definition import SagaDefinition
from .lease import default_instance_name
from .state import SagaShape, StepShape


@attrs.frozen(kw_only=True)
class EngineOptions:
    """The knobs of the saga engine; see ``docs/configuration.md`` for each variable."""

    saga_timeout: float = 3600.0
    step_timeout: float = 300.0
    retry_attempts: int = 3
    retry_backoff: float = 1.0
    retry_backoff_max: float = 60.0
    compensation_attempts: int = 5
    max_active_sagas: int = 10_000
    saga_mailbox_size: int = 64
    coordinator_mailbox_size: int = 1024
    crash_restarts: int = 3
    """Restarts of one saga actor within ``crash_period`` before it is parked as ``failed``."""
    crash_period: float = 60.0
    """The sliding window, in seconds, of ``crash_restarts`` (``SUPERVISOR_PERIOD_SECONDS``)."""
    store_retry_max: float = 5.0
    """Longest pause between attempts to write to a store that is unavailable."""
    lifecycle_topic: str = "saga.lifecycle"
    """Bus stream the saga lifecycle events are relayed to."""
    instance_name: str = "local"
    """This process's name among the instances sharing the store (``INSTANCE_ID``)."""
    heartbeat_interval: float = 1.0
    """Seconds between renewals of the instance's leases."""
    instance_ttl: float = 5.0
    """Seconds an instance's leases last without a renewal: then others take its sagas."""
    scan_interval: float = 1.0
    """Seconds between looks for sagas no live instance owns (failover)."""
    claim_batch: int = 500
    """Most sagas one claim takes."""

    @classmethod
    def from_settings(cls, settings: Any) -> EngineOptions:
        return cls(
            saga_timeout=settings.saga_timeout_seconds,
            step_timeout=settings.saga_step_timeout_seconds,
            retry_attempts=settings.saga_retry_attempts,
            retry_backoff=settings.saga_retry_backoff_seconds,
            retry_backoff_max=settings.saga_retry_backoff_max_seconds,
            compensation_attempts=settings.compensation_retry_attempts,
            max_active_sagas=settings.max_active_sagas,
            saga_mailbox_size=settings.saga_mailbox_size,
            coordinator_mailbox_size=settings.coordinator_mailbox_size,
            crash_restarts=settings.supervisor_max_restarts,
            instance_name=settings.instance_id or default_instance_name(),
            heartbeat_interval=settings.instance_heartbeat_seconds,
            instance_ttl=settings.instance_expiry_seconds,
            scan_interval=settings.failover_scan_seconds,
            claim_batch=settings.claim_batch_size,
            crash_period=settings.supervisor_period_seconds,
            lifecycle_topic=settings.lifecycle_stream,
        )


def shape_of(definition: SagaDefinition, options: EngineOptions) -> SagaShape:
    """What the pure state machine needs of ``definition``, defaults filled from ``options``."""

    def step_shape(step: Any) -> StepShape:
        retry = step.retry
        initial = (
            retry.initial_backoff if retry.initial_backoff is not None else (options.retry_backoff)
        )
        return StepShape(
            name=step.name,
            has_compensation=step.compensation is not None,
            compensation_safe_if_unknown=step.compensation_safe_if_unknown,
            max_attempts=retry.max_attempts or options.retry_attempts,
            initial_backoff=initial,
            multiplier=retry.multiplier,
            max_backoff=retry.max_backoff
            if retry.max_backoff is not None
            else (options.retry_backoff_max),
            jitter=retry.jitter,
            compensation_max_attempts=options.compensation_attempts,
            reply_success=tuple(step.reply.success) if step.reply else (),
            reply_failure=tuple(step.reply.failure) if step.reply else (),
            reply_timeout=options.step_timeout if step.timeout is None else step.timeout,
            timeout=options.step_timeout if step.timeout is None else step.timeout,
        )

    return SagaShape(
        steps=tuple(step_shape(step) for step in definition.steps), stages=definition.stages
    )
