"""What a chaos run does, drawn from one seed: the sagas to start and the faults to strike.

Everything random in a run comes from here (the stand-in's fault dice get the seed too), so a
seed names a run: the same sagas, started the same way at the same offsets, and the same faults
at the same offsets. Process timing still differs from run to run; the invariants must hold for
any timing.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import attrs

ONBOARDING = "user_onboarding"
AIRTABLE = "airtable_integration"
TRIGGERS = {ONBOARDING: "user.registered", AIRTABLE: "airtable.base.connected"}
"""The event type that starts each built-in saga type."""

ONBOARDING_SHARE = 0.5
"""Of the sagas, the share of ``user_onboarding`` (the rest: ``airtable_integration``)."""
API_SHARE = 0.5
"""Of the sagas, the share started by ``POST /sagas/start`` (the rest by events)."""
KEYED_SHARE = 0.7
"""Of the API starts, the share with an idempotency key (only those are retried blindly)."""
REPEAT_SHARE = 0.2
"""Of the keyed API starts and of the events, the share sent twice."""
CANCEL_SHARE = 0.15
"""Of the API starts, the share cancelled mid-flight."""
CANCEL_AFTER = (0.0, 2.5)
"""Seconds between a start's answer and its cancel."""

KILL_ORCHESTRATOR = "kill_orchestrator"
RESTART_POSTGRES = "restart_postgres"
RESTART_REDIS = "restart_redis"
STALL_STANDIN = "stall_standin"
STANDIN_FAULT = "standin_fault"
DISRUPTIONS = (KILL_ORCHESTRATOR, RESTART_POSTGRES, RESTART_REDIS, STALL_STANDIN)
"""The faults that take a process away; the injector strikes them one after the other."""

WRITES = (
    "user.create_profile",
    "user.create_workspace",
    "notification.send",
    "airtable.create_integration",
    "airtable.create_webhook",
    "airtable.start_sync",
)
"""Stand-in operations of steps' actions that change something."""
READS = ("auth.get_user", "permission.check", "airtable.check_access", "airtable.get_schema")
UNDOS = (
    "user.delete_profile",
    "user.delete_workspace",
    "airtable.delete_integration",
    "airtable.delete_webhook",
    "airtable.purge_synced_data",
    "user.delete_profile_by_key",
    "user.delete_workspace_by_key",
    "notification.withdraw_by_key",
    "airtable.delete_integration_by_key",
    "airtable.delete_webhook_by_key",
    "airtable.cancel_sync_by_key",
)
"""Stand-in operations of compensations (the ``_by_key`` ones when a step is in doubt)."""


@attrs.frozen(kw_only=True)
class ChaosConfig:
    """The size of a run, its fault counts and the orchestrator's timeouts for it."""

    seed: int
    sagas: int = 300
    instances: int = 1
    """Orchestrator processes on the one store; with several, each process fault strikes one of
    them (drawn), and half of them are orderly stops (SIGTERM, as in a rolling update)."""
    window: float = 60.0
    """Seconds over which the sagas start and the faults strike."""
    orchestrator_kills: int = 3
    postgres_restarts: int = 2
    redis_restarts: int = 2
    standin_stalls: int = 2
    standin_faults: int = 14
    """Faults added to the stand-in through its control API (failures, latency, hangs)."""
    saga_timeout: float = 6.0
    """``SAGA_TIMEOUT_SECONDS`` of the run."""
    step_timeout: float = 4.0
    """``SAGA_STEP_TIMEOUT_SECONDS`` of the run (also the wait for a sync's reply)."""
    sync_delay: float = 1.0
    """Seconds the stand-in's Airtable sync takes before it announces its outcome."""
    quiet_within: float = 45.0
    """Most seconds to wait, once the faults stop, for every saga to settle."""
    not_enforced: tuple[str, ...] = ()
    """Invariants this run reports but does not fail on: an open finding (docs/reliability.md,
    "Several orchestrators")."""

    @classmethod
    def long(cls, *, seed: int, sagas: int, minutes: float, instances: int = 1) -> ChaosConfig:
        """A long run: the faults scale with its length (at least the CI run's counts)."""
        window = minutes * 60.0
        return cls(
            seed=seed,
            sagas=sagas,
            instances=instances,
            window=window,
            orchestrator_kills=max(3, round(window / 30)),
            postgres_restarts=max(2, round(window / 60)),
            redis_restarts=max(2, round(window / 60)),
            standin_stalls=max(2, round(window / 75)),
            standin_faults=max(14, round(window / 4)),
        )

    @classmethod
    def several(cls, *, seed: int, instances: int = 3) -> ChaosConfig:
        """A short run over several orchestrators (CI): the processes are killed and stopped
        among the other faults; fewer sagas and faults than the one-process run, and no
        PostgreSQL restart (it makes every instance lose its lease at once: the long run by
        hand covers it, docs/reliability.md)."""
        return cls(
            seed=seed,
            sagas=150,
            instances=instances,
            window=25.0,
            orchestrator_kills=4,
            postgres_restarts=0,
            redis_restarts=1,
            standin_stalls=1,
            standin_faults=8,
            quiet_within=40.0,
            not_enforced=("calls_explained",),
        )

    def replay_command(self) -> str:
        several = f" --instances {self.instances}" if self.instances > 1 else ""
        return (
            f"python -m tests.chaos --seed {self.seed} --sagas {self.sagas} "
            f"--minutes {self.window / 60:g}{several}"
        )


@attrs.frozen(kw_only=True)
class PlannedSaga:
    """One saga the driver starts, and how."""

    n: int
    saga_type: str
    via: Literal["api", "event"]
    at: float
    """Seconds after the start of the window."""
    data: dict[str, str]
    correlation_id: str
    idempotency_key: str | None = None
    """API starts: the key sent (``None``: none; the start is then not retried blindly)."""
    event_id: str | None = None
    stream_id: str | None = None
    repeat: Literal["no", "after", "together"] = "no"
    """Send the start (or publish the event) twice: after the first answer, or at once."""
    cancel_after: float | None = None
    """Seconds after the start's answer to cancel the saga (API starts only)."""

    @property
    def user_id(self) -> str:
        return self.data["user_id"]

    @property
    def event_type(self) -> str:
        return TRIGGERS[self.saga_type]


@attrs.frozen(kw_only=True)
class PlannedFault:
    at: float
    """Seconds after the start of the window."""
    kind: str
    seconds: float = 0.0
    """How long the process stays down (or stalled); for a stand-in fault, how long it stays
    (0: until used up)."""
    variant: str = ""
    """PostgreSQL: the ``pg_ctl stop`` mode (``fast`` or ``immediate``); a stand-in fault:
    what it stands for (``reject``, ``transient``, ``lost_reply``, ...)."""
    fault: dict[str, Any] | None = None
    """A stand-in fault (``POST /_control/faults``)."""
    target: int = 0
    """The orchestrator process a kill strikes (several instances)."""

    @property
    def label(self) -> str:
        """The kind, with the variant of a stand-in fault (figures are counted by label)."""
        return f"{self.kind}:{self.variant}" if self.kind == STANDIN_FAULT else self.kind

    def describe(self) -> str:
        if self.kind == STANDIN_FAULT:
            return f"{self.label} {self.fault}"
        variant = f" ({self.variant})" if self.variant else ""
        target = f" of orchestrator {self.target}" if self.kind == KILL_ORCHESTRATOR else ""
        return f"{self.kind}{variant}{target} for {self.seconds:.1f} s"


@attrs.frozen
class Plan:
    sagas: list[PlannedSaga]
    faults: list[PlannedFault]


def make_plan(config: ChaosConfig) -> Plan:
    rng = random.Random(config.seed)
    sagas = [_saga(rng, config, n) for n in range(config.sagas)]
    sagas.sort(key=lambda s: s.at)
    faults = _disruptions(rng, config) + [
        _standin_fault(rng, config) for _ in range(config.standin_faults)
    ]
    faults.sort(key=lambda f: f.at)
    return Plan(sagas, faults)


def _saga(rng: random.Random, config: ChaosConfig, n: int) -> PlannedSaga:
    tag = f"{config.seed}-{n}"
    saga_type = ONBOARDING if rng.random() < ONBOARDING_SHARE else AIRTABLE
    if saga_type == ONBOARDING:
        data = {"user_id": f"u{tag}", "email": f"u{tag}@example.com", "name": f"User {tag}"}
    else:
        data = {"user_id": f"u{tag}", "workspace_id": f"ws{tag}", "base_id": f"app{tag}"}
    at = rng.uniform(0.0, config.window * 0.9)
    fields: dict[str, Any] = {
        "n": n,
        "saga_type": saga_type,
        "at": at,
        "data": data,
        "correlation_id": f"chaos-{tag}",
    }
    repeat = rng.choice(["after", "together"]) if rng.random() < REPEAT_SHARE else "no"
    if rng.random() < API_SHARE:
        keyed = rng.random() < KEYED_SHARE
        cancel = rng.uniform(*CANCEL_AFTER) if rng.random() < CANCEL_SHARE else None
        return PlannedSaga(
            via="api",
            idempotency_key=f"chaos-start-{tag}" if keyed else None,
            repeat=repeat if keyed else "no",
            cancel_after=cancel,
            **fields,
        )
    stream = f"user-{data['user_id']}" if saga_type == ONBOARDING else f"base-{data['base_id']}"
    return PlannedSaga(
        via="event", event_id=f"chaos-event-{tag}", stream_id=stream, repeat=repeat, **fields
    )


def _disruptions(rng: random.Random, config: ChaosConfig) -> list[PlannedFault]:
    """The process faults, one per slot of the window (in a random order), so that they are
    spread over it; each is over before the next one strikes."""
    kinds = (
        [KILL_ORCHESTRATOR] * config.orchestrator_kills
        + [RESTART_POSTGRES] * config.postgres_restarts
        + [RESTART_REDIS] * config.redis_restarts
        + [STALL_STANDIN] * config.standin_stalls
    )
    rng.shuffle(kinds)
    start, end = 0.08 * config.window, 0.85 * config.window
    slot = (end - start) / max(1, len(kinds))
    faults = []
    for index, kind in enumerate(kinds):
        at = start + slot * (index + rng.uniform(0.1, 0.6))
        match kind:
            case "kill_orchestrator":
                seconds = rng.uniform(0.0, 1.5)
                if config.instances > 1:  # one of them, killed or stopped in order
                    target = rng.randrange(config.instances)
                    how = rng.choice(["sigkill", "sigterm"])
                    fault = PlannedFault(
                        at=at, kind=kind, seconds=seconds, variant=how, target=target
                    )
                else:
                    fault = PlannedFault(at=at, kind=kind, seconds=seconds)
                faults.append(fault)
            case "restart_postgres":
                mode = rng.choice(["fast", "immediate"])
                faults.append(
                    PlannedFault(at=at, kind=kind, seconds=rng.uniform(0.5, 3.0), variant=mode)
                )
            case "restart_redis":
                faults.append(PlannedFault(at=at, kind=kind, seconds=rng.uniform(0.5, 3.0)))
            case _:
                stall = rng.uniform(1.0, 1.5 * config.step_timeout)
                faults.append(PlannedFault(at=at, kind=kind, seconds=stall))
    return faults


def _standin_fault(rng: random.Random, config: ChaosConfig) -> PlannedFault:
    """A fault of the stand-in's control API: what the next matching calls get."""
    late = config.step_timeout + 1.0
    kind = rng.choice(
        ["reject", "reject", "transient", "transient", "lost_reply", "sync_failed", "sync_hang",
         "slow", "slow_window", "slow_window", "too_slow", "undo_transient", "undo_transient"]
    )  # fmt: skip
    fault: dict[str, Any]
    seconds = 0.0
    match kind:
        case "reject":  # a refusal: not retried, the completed steps are compensated
            operation = rng.choice([*WRITES, "airtable.check_access"])
            status = 403 if operation == "airtable.check_access" else rng.choice([409, 422])
            fault = {"operation": operation, "status": status, "times": rng.randint(1, 3)}
        case "transient":  # retried with backoff; Retry-After honoured
            fault = {
                "operation": rng.choice([*WRITES, *READS]),
                "status": rng.choice([500, 502, 503, 429]),
                "times": rng.randint(1, 2),
                "retry_after": rng.choice([None, 0.5]),
            }
        case "lost_reply":  # applied, but the answer comes after the step's timeout
            operation = rng.choice(WRITES)
            fault = {"operation": operation, "status": None, "delay": late, "when": "after"}
        case "sync_failed":  # the connector announces airtable.sync.failed
            fault = {"operation": "airtable.sync_job", "status": 500, "times": rng.randint(1, 3)}
        case "sync_hang":  # no announcement: the wait for the reply runs out
            fault = {"operation": "airtable.sync_job", "status": None, "hang": True}
        case "slow":  # latency within the step timeout: sagas run long, some past their deadline
            delay = round(rng.uniform(0.5, 0.8) * config.step_timeout, 2)
            fault = {"operation": "*", "status": None, "delay": delay, "times": rng.randint(10, 40)}
        case "slow_window":  # every call slow for a while: the sagas then run past deadlines
            delay = round(rng.uniform(0.4, 0.7) * config.step_timeout, 2)
            fault = {"operation": "*", "status": None, "delay": delay, "times": None}
            seconds = rng.uniform(1.5, 4.0)
        case "too_slow":  # past the step timeout: the step's outcome is unknown
            operation = rng.choice([*WRITES, *READS])
            fault = {"operation": operation, "status": None, "delay": late}
        case _:  # a compensation fails and is retried
            fault = {"operation": rng.choice(UNDOS), "status": 503, "times": rng.randint(1, 2)}
    at = rng.uniform(0.03 * config.window, 0.85 * config.window)
    return PlannedFault(at=at, kind=STANDIN_FAULT, variant=kind, fault=fault, seconds=seconds)
