"""The package boundaries of docs/architecture.md: what each package exports, and which way the
imports point."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "saga_orchestrator"

EXPORTS: dict[str, set[str]] = {
    "saga_orchestrator.actors": {
        "ActorError",
        "ActorRef",
        "ActorStopped",
        "ActorSystem",
        "AskTimeout",
        "ChildSpec",
        "Envelope",
        "Mailbox",
        "MailboxFull",
        "NoReply",
        "Reply",
        "Restart",
        "Supervisor",
        "SupervisorEscalation",
        "open_actor_system",
        "open_mailbox",
        "run_loop_actor",
    },
    "saga_orchestrator.coordinator": {
        "AwaitReply",
        "CancelSaga",
        "Clock",
        "Coordinator",
        "CoordinatorStatus",
        "DeliverEvent",
        "DomainEvents",
        "EngineOptions",
        "EventRouter",
        "GetStatus",
        "NonRetryableError",
        "Parallel",
        "RetryPolicy",
        "RetrySaga",
        "SagaCatalog",
        "SagaDefinition",
        "SagaObserver",
        "SagaStatus",
        "StartResult",
        "StartSaga",
        "Step",
        "StepContext",
        "WallClock",
        "start_coordinator",
        "start_router",
    },
    "saga_orchestrator.store": {
        "ACTIVE_STATUSES",
        "AppendRequest",
        "AppendResult",
        "MemoryBackend",
        "NewEvent",
        "OutboxMessage",
        "OutboxRecord",
        "RecordedEvent",
        "SagaPage",
        "SagaQuery",
        "SagaRecord",
        "StepRecord",
        "Store",
        "StoreBackend",
        "StoreStats",
        "TERMINAL_STATUSES",
        "make_backend",
        "new_id",
        "start_store",
    },
    "saga_orchestrator.client": {
        "API_KEY_ENVS",
        "Accepted",
        "ClientError",
        "Conflict",
        "ENDED",
        "EXIT_CONFLICT",
        "EXIT_ERROR",
        "EXIT_INTERRUPTED",
        "EXIT_NOT_COMPLETED",
        "EXIT_NOT_FOUND",
        "EXIT_OK",
        "EXIT_USAGE",
        "EXIT_WAIT_TIMEOUT",
        "Event",
        "EventTypes",
        "NotFound",
        "Page",
        "Replayed",
        "Saga",
        "SagaClient",
        "SagaNotCompleted",
        "SagaStep",
        "SagaSteps",
        "SagaType",
        "ServiceError",
        "StepType",
        "SyncSagaClient",
        "TERMINAL",
        "TypeVersion",
        "URL_ENV",
        "UsageError",
        "WaitTimedOut",
        "api_key_of",
        "register",
        "service_url",
        "wait_until_ready",
    },
    "saga_orchestrator.testing": {
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
    },
}


def _public(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not (hasattr(value, "__path__") or _is_submodule(value))
    }


def _is_submodule(value: object) -> bool:
    return type(value).__name__ == "module"


@pytest.mark.parametrize("package", sorted(EXPORTS))
def test_each_package_exports_exactly_its_api(package: str) -> None:
    assert EXPORTS[package] == _public(package) - {"annotations"}


def _imports_of(path: Path) -> set[str]:
    """The ``saga_orchestrator`` packages a module imports (absolute or relative)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(SRC.parent).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level]
                found.add(".".join((*base, node.module or "")).rstrip("."))
            elif node.module:
                found.add(node.module)
    return {name for name in found if name.startswith("saga_orchestrator")}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


FORBIDDEN = {
    "actors": {"coordinator", "http", "store", "bus", "service", "bench", "testing"},
    "store": {"coordinator", "http", "bus", "service", "bench", "testing"},
    "bus": {"coordinator", "http", "service", "bench", "testing"},
    "coordinator": {"http", "service", "bench", "testing"},
    "http": {"service", "bench", "testing"},
    "testing": {"http", "bus", "service", "bench"},
    "ui": {"service", "bench", "testing"},
    "client": {"actors", "coordinator", "store", "bus", "http", "service", "bench", "testing"},
}
"""Package -> the packages it must not import (imports point http -> coordinator -> actors,
store and bus below the coordinator; the saga authors' test kit sits beside http, over the
coordinator and the memory store; the client library talks to a service over HTTP only; the
dashboard (ui) beside http, reading through it)."""


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(SRC)} imports {name}"
        for path in (SRC / package).rglob("*.py")
        for name in _imports_of(path)
        if _layer(name) in FORBIDDEN[package]
    }
    assert set() == wrong
