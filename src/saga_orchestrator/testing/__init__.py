"""A test kit for saga authors: unit-test a saga definition in-process, in milliseconds.

Fake the steps' outcomes, crash the engine at any transition and resume from the history,
cancel mid-step, deliver reply events, let timeouts pass in virtual time (trio's ``MockClock``;
pytest-trio's ``autojump_clock``), then assert the transitions, the compensations and the
idempotency keys. See docs/testing-sagas.md.
"""

from saga_orchestrator.coordinator.operator import Resolve, Resume, Retry, SkipCompensation
from saga_orchestrator.coordinator.transitions import Resolution

from .calls import Call, CallLog
from .kit import ENDED, SagaTestKit
from .outcomes import FakeStepError, Outcome, fail, hang, per_attempt, succeed, succeed_after

__all__ = [
    "ENDED",
    "Call",
    "CallLog",
    "FakeStepError",
    "Outcome",
    "Resolution",
    "Resolve",
    "Resume",
    "Retry",
    "SagaTestKit",
    "SkipCompensation",
    "fail",
    "hang",
    "per_attempt",
    "succeed",
    "succeed_after",
]
