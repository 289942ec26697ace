"""The repair run: sagas cancelled mid-step at random park, and an operator repairs each one
through the API until every saga has ended.

From one seed, ``user_onboarding`` sagas are started over the API and each is cancelled at a
random moment. Every write of the stand-in is slowed by a delay fault, so the cancel lands
mid-step: the call is abandoned before its effect (``when: before``) or after it (``after``),
and the step is in doubt either way. The stand-in's undos (by key, and plain deletes) fail
often (503) and the orchestrator gives each compensation two attempts, so most cancelled sagas
park as ``compensation_failed``. Once the faults are gone an operator repairs each parked saga
as docs/sagas.md says: a step in doubt is looked up at the stand-in by its idempotency key and
resolved (``applied`` or ``not_applied``), or now and then retried (its compensation undoes by
key, safe in doubt too); a completed step whose compensation failed is retried. Each action is
first asked as a dry run, then sent twice at once.

Then the invariants of :mod:`.checker` hold (its compensations take the resolutions into
account), and the repair's own: every saga ends terminal; each resolution agrees with the
stand-in; of two concurrent actions exactly one is taken, recorded once with who and why, and
a dry run records nothing; nothing a saga that did not complete made is left at the stand-in.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from .checker import CREATES, TERMINAL, Invariant, Snapshot, check, take_snapshot
from .cluster import Cluster, open_cluster
from .driver import Driver
from .plan import ONBOARDING, ChaosConfig, PlannedSaga
from .run import wait_quiet

WHO = "default"
"""The name of the key the run's operator uses (``API_KEY``)."""
UNDOS_BY_KEY = (
    "user.delete_profile_by_key",
    "user.delete_workspace_by_key",
    "notification.withdraw_by_key",
    "airtable.delete_integration_by_key",
)
PLAIN_UNDOS = ("user.delete_profile", "user.delete_workspace", "airtable.delete_integration")
HOLDINGS = ("profiles", "workspaces", "integrations")
"""The stand-in's kinds of things an onboarding makes and holds."""
OPERATOR_TRANSITIONS = ("OperatorRetried", "StepResolved")


@attrs.frozen(kw_only=True)
class RepairConfig:
    seed: int
    sagas: int = 24
    window: float = 3.0
    """Seconds over which the sagas start."""
    delay: float = 0.5
    """Seconds each write of the stand-in takes (the cancels land mid-step)."""
    cancel_after: tuple[float, float] = (0.0, 2.2)
    """Seconds between a start's answer and its cancel."""
    undo_failure_rate: float = 0.6
    """Share of the undos by key that fail (plain deletes: half that)."""
    rounds: int = 4
    """Most rounds of repairs (a repaired saga may park again)."""
    quiet_within: float = 30.0

    def chaos(self) -> ChaosConfig:
        """The cluster's configuration: no process faults, deadlines far away."""
        return ChaosConfig(
            seed=self.seed,
            sagas=self.sagas,
            window=self.window,
            saga_timeout=60.0,
            step_timeout=10.0,
            quiet_within=self.quiet_within,
        )

    def replay_command(self) -> str:
        return f"python -m tests.chaos --repair --seed {self.seed} --sagas {self.sagas}"


SETTINGS = {
    "COMPENSATION_RETRY_ATTEMPTS": "2",
    "SAGA_RETRY_BACKOFF_SECONDS": "0.1",
    "SAGA_RETRY_BACKOFF_MAX_SECONDS": "0.3",
}
"""Over the chaos run's settings: a compensation that fails twice parks its saga."""


def planned_sagas(config: RepairConfig) -> list[PlannedSaga]:
    rng = random.Random(config.seed)
    sagas = []
    for n in range(config.sagas):
        tag = f"{config.seed}-r{n}"
        sagas.append(
            PlannedSaga(
                n=n,
                saga_type=ONBOARDING,
                via="api",
                at=rng.uniform(0.0, config.window),
                data={"user_id": f"u{tag}", "email": f"u{tag}@example.com", "name": f"U {tag}"},
                correlation_id=f"repair-{tag}",
                idempotency_key=f"repair-start-{tag}",
                cancel_after=rng.uniform(*config.cancel_after),
            )
        )
    return sorted(sagas, key=lambda s: s.at)


def faults(config: RepairConfig) -> list[dict[str, Any]]:
    """The stand-in's faults for the whole load: slow writes, failing undos."""
    slow = {"status": None, "delay": config.delay, "times": None}
    writes = [op for (saga_type, _), (op, _) in CREATES.items() if saga_type == ONBOARDING]
    found = []
    for operation in writes:  # half the calls applied before the wait, half after
        found.append({"operation": operation, **slow, "when": "after", "rate": 0.5})
        found.append({"operation": operation, **slow})
    rate = config.undo_failure_rate
    found += [{"operation": op, "status": 503, "times": None, "rate": rate} for op in UNDOS_BY_KEY]
    found += [
        {"operation": op, "status": 503, "times": None, "rate": rate / 2} for op in PLAIN_UNDOS
    ]
    return found


@attrs.define
class Taken:
    """An operator action sent (twice at once) on a parked saga."""

    saga_id: str
    action: str
    body: dict[str, Any]
    dry_run: int
    """The dry run's status."""
    answers: list[int]
    """The two answers' statuses, sorted."""
    conflict_status: str | None = None
    """The 409's ``error.saga_status``."""


class Operator:
    """Repairs the parked sagas through the API, as docs/sagas.md tells an operator to."""

    def __init__(self, cluster: Cluster, rng: random.Random) -> None:
        self.cluster = cluster
        self.rng = rng
        self.taken: list[Taken] = []
        self.problems: list[str] = []

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.cluster.api_url,
            headers={"X-API-Key": self.cluster.api_key},
            timeout=30,
        )

    async def parked(self, client: httpx.AsyncClient) -> list[str]:
        found = []
        for status in ("compensation_failed", "failed"):
            page = (await client.get("/sagas/", params={"status": status, "limit": 500})).json()
            found += [saga["saga_id"] for saga in page["items"]]
        return found

    async def repair_round(self) -> int:
        """Repair every saga parked now; how many there were."""
        async with self._client() as client:
            parked = await self.parked(client)
            effects = (await self.cluster.standin.control("GET", "effects"))["effects"]
            applied = {(e["idempotency_key"], e["operation"]) for e in effects}
            async with trio.open_nursery() as nursery:
                for saga_id in parked:
                    nursery.start_soon(self.repair, client, saga_id, applied)
        return len(parked)

    def choose(
        self, saga: dict[str, Any], applied: set[tuple[str, str]]
    ) -> tuple[str, dict[str, Any]] | None:
        """The action a parked saga needs, and its body."""
        if saga["status"] == "failed":
            return "retry", {"reason": "the crash is understood"}
        failed = [s for s in saga["steps"] if s["compensation_status"] == "failed"]
        if len(failed) != 1:
            self.problems.append(f"saga {saga['saga_id']} parked with failed compensations "
                                 f"{[s['name'] for s in failed]}")  # fmt: skip
            return None
        step = failed[0]
        if step["status"] != "unknown":
            return "retry", {"reason": "the service is back"}
        if self.rng.random() < 0.25:  # its compensation undoes by key: safe in doubt too
            return "retry", {"reason": f"undo {step['name']} by its key"}
        operation, _ = CREATES[(saga["saga_type"], step["name"])]
        found = (f"{saga['saga_id']}:{step['name']}", operation) in applied
        outcome = "applied" if found else "not_applied"
        why = f"the stand-in {'holds' if found else 'has no'} {operation} for the step's key"
        return "resolve", {"step": step["name"], "outcome": outcome, "reason": why}

    async def repair(
        self, client: httpx.AsyncClient, saga_id: str, applied: set[tuple[str, str]]
    ) -> None:
        saga = (await client.get(f"/sagas/{saga_id}")).json()
        chosen = self.choose(saga, applied)
        if chosen is None:
            return
        action, body = chosen
        path = f"/sagas/{saga_id}/{action}"
        dry = await client.post(path, json={**body, "dry_run": True})
        answers: list[httpx.Response] = []

        async def send() -> None:
            answers.append(await client.post(path, json=body))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            nursery.start_soon(send)
        taken = Taken(
            saga_id, action, body, dry.status_code, sorted(a.status_code for a in answers)
        )
        for answer in answers:
            if answer.status_code == 409:
                taken.conflict_status = answer.json()["error"].get("saga_status")
            elif answer.status_code != 202:
                self.problems.append(f"{action} of {saga_id}: {answer.status_code} {answer.text}")
        self.taken.append(taken)


def repair_invariants(
    snap: Snapshot, operator: Operator, leftovers: dict[str, Any]
) -> list[Invariant]:
    terminal = Invariant("repaired_terminal", "after the repairs every saga has ended")
    for saga_id, saga in snap.sagas.items():
        terminal.checked += 1
        if saga["status"] not in TERMINAL:
            terminal.fail(f"saga {saga_id} is {saga['status']}: {saga['error']}")
    for problem in operator.problems:
        terminal.fail(problem)

    agree = Invariant(
        "resolutions_agree_with_the_standin",
        "a step resolved applied has its effect at the stand-in, one resolved not_applied none",
    )
    effects = {(e["idempotency_key"], e["operation"]) for e in snap.effects}
    for saga_id, history in snap.transitions.items():
        saga = snap.sagas[saga_id]
        names = [s["name"] for s in snap.steps.get(saga_id, [])]
        for _, kind, data in history:
            if kind != "StepResolved":
                continue
            agree.checked += 1
            name = names[data["step"]]
            operation, _ = CREATES[(saga["saga_type"], name)]
            there = (f"{saga_id}:{name}", operation) in effects
            if there != (data["resolution"] == "applied"):
                agree.fail(f"saga {saga_id}: {name} resolved {data['resolution']}, the stand-in "
                           f"{'holds' if there else 'has no'} its effect")  # fmt: skip

    once = Invariant(
        "one_action_taken_and_recorded",
        "of two concurrent actions on a parked saga exactly one is taken (202) and the other "
        "is a 409 naming the saga's status; the dry run before them answers 200 and records "
        "nothing; each action taken is in the saga's history once, with who and why",
    )
    once.planned = len(operator.taken)
    by_saga: dict[str, list[Taken]] = collections.defaultdict(list)
    for taken in operator.taken:
        once.checked += 1
        by_saga[taken.saga_id].append(taken)
        if (taken.dry_run, taken.answers) != (200, [202, 409]) or not taken.conflict_status:
            once.fail(
                f"saga {taken.saga_id}: {taken.action} answered dry run {taken.dry_run}, "
                f"then {taken.answers} (409 saga_status {taken.conflict_status!r})"
            )
    for saga_id, actions in by_saga.items():
        history = snap.transitions.get(saga_id, [])
        recorded = [(d["by"], d["reason"]) for _, k, d in history if k in OPERATOR_TRANSITIONS]
        sent = [(WHO, t.body["reason"]) for t in actions]
        if recorded != sent:
            once.fail(f"saga {saga_id}: actions sent {sent}, recorded {recorded}")

    left = Invariant(
        "nothing_left_behind",
        "nothing that a saga which did not complete made (profiles, workspaces, integrations) "
        "is still held by the stand-in",
    )
    held = {thing.get(f"{kind[:-1]}_id") for kind in HOLDINGS for thing in leftovers.get(kind, [])}
    for effect in snap.effects:
        saga_id, _, rest = effect["idempotency_key"].partition(":")
        saga = snap.sagas.get(saga_id)
        if saga is None or ":" in rest or saga["status"] == "completed":
            continue
        left.checked += 1
        if effect["subject"] in held:
            left.fail(f"saga {saga_id} ({saga['status']}): {effect['operation']} made "
                      f"{effect['subject']}, still held")  # fmt: skip
    return [terminal, agree, once, left]


@attrs.define
class RepairReport:
    config: RepairConfig
    workdir: Path
    invariants: list[Invariant]
    notes: list[str]
    statuses: dict[str, int]
    parked_per_round: list[int]
    actions: dict[str, int]
    seconds: float

    @property
    def violations(self) -> list[str]:
        return [f"[{i.name}] {v}" for i in self.invariants if not i.known_bug for v in i.violations]

    def text(self) -> str:
        lines = [
            f"repair run seed={self.config.seed}: {self.config.sagas} sagas, {self.seconds:.0f} s",
            f"parked before each round of repairs: {self.parked_per_round}",
            f"actions taken: {self.actions}",
            f"sagas in the store: {self.statuses}",
            "invariants:",
            *(
                f"  {i.name}: {i.checked} checked, {len(i.violations)} violations"
                for i in self.invariants
            ),
            *(f"note: {note}" for note in self.notes),
            f"violations: {len(self.violations)}",
            f"logs: {self.workdir}",
        ]
        return "\n".join(lines)

    def failure_text(self, most: int = 30) -> str:
        violations = self.violations
        return "\n".join(
            [
                f"repair run seed={self.config.seed}: {len(violations)} violations (replay: "
                f"{self.config.replay_command()}, or CHAOS_SEED={self.config.seed})",
                *violations[:most],
                f"logs: {self.workdir}",
            ]
        )


async def run_repair(
    config: RepairConfig, workdir: Path, *, say: Callable[[str], None] = print
) -> RepairReport:
    """Run the repair run ``config`` describes in ``workdir`` (its logs stay there)."""
    began = time.monotonic()
    chaos = config.chaos()
    planned = planned_sagas(config)
    say(f"repair run: seed={config.seed}, {config.sagas} sagas; logs in {workdir}")
    async with open_cluster(chaos, workdir, overrides=SETTINGS) as cluster:
        for fault in faults(config):
            await cluster.standin.control("POST", "faults", fault)
        driver = Driver(cluster.orchestrators.urls, cluster.api_key, planned)
        start = trio.current_time() + 0.2
        await driver.run(start, start + config.window + config.quiet_within)
        quiet = await wait_quiet(cluster, config.quiet_within)
        await cluster.standin.control("DELETE", "faults")  # the services are back
        operator = Operator(cluster, random.Random(config.seed))
        rounds = []
        for _ in range(config.rounds):
            rounds.append(await operator.repair_round())
            if not rounds[-1]:
                break
            quiet = await wait_quiet(cluster, config.quiet_within) and quiet
        say(f"repairs done: parked before each round {rounds}")
        records = list(driver.records.values())
        snapshot = await take_snapshot(cluster, [i for r in records for i in sorted(r.saga_ids)])
        leftovers = (await cluster.standin.control("GET", "state"))["leftovers"]
        invariants, notes = check(
            snapshot, records, answers=driver.answers, unexpected=driver.unexpected
        )
        invariants += repair_invariants(snapshot, operator, leftovers)
        if not quiet:
            invariants.append(Invariant("quiet", "the system settled", violations=["it did not"]))
    statuses = collections.Counter(s["status"] for s in snapshot.sagas.values())
    actions = collections.Counter(
        f"{t.action} {t.body.get('outcome', '')}".strip() for t in operator.taken
    )
    return RepairReport(
        config=config,
        workdir=workdir,
        invariants=invariants,
        notes=notes,
        statuses=dict(statuses.most_common()),
        parked_per_round=rounds,
        actions=dict(sorted(actions.items())),
        seconds=time.monotonic() - began,
    )
