"""The invariants of a chaos run, checked once the system is quiet.

:func:`take_snapshot` reads everything once: the store (a direct asyncpg connection to the run's
PostgreSQL), the bus (XRANGE on the run's Redis), the stand-in's records and, for a sample of
sagas, the API. :func:`check` then holds it against the driver's records and the built-in
sagas' declarations (which steps have compensations, which of those are safe when a step's
outcome is unknown) and answers one :class:`Invariant` per promise, each with what it checked
and every violation it found.

Over 400 lines on purpose: the snapshot, the checks and their shared readings of it (key
parsing, attempt windows, the declared steps) are one piece, each check a method of
``_Checks``; split, they would trade this module's length for imports of private helpers.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import attrs
import httpx
import redis
import trio

from saga_orchestrator.coordinator.catalog.airtable_integration import AIRTABLE_INTEGRATION
from saga_orchestrator.coordinator.catalog.user_onboarding import USER_ONBOARDING

from ..support.processes import SpreadClient
from .cluster import CONSUMER_GROUP, EVENT_STREAM, Cluster
from .driver import DriverRecord
from .plan import TRIGGERS

TERMINAL = ("completed", "compensated", "cancelled", "timed_out")
UNSETTLED = ("pending", "running", "compensating")
UNKNOWN_UNSAFE = "is unknown and its compensation is not declared safe"
"""What the engine writes when it parks a saga because a step's outcome is unknown."""
REPLY_FAILURE = "airtable.sync.failed"
"""How the error of a step failed by its reply starts (its command's effect exists)."""
API_SAMPLE = 300
"""Sagas whose API view is compared with the store."""
ACTION_ENDS = ("StepCompleted", "StepAwaitingReply", "StepAttemptFailed", "StepFailed")
"""Transitions that end an attempt of a step's action (the action returned, raised, or was
interrupted)."""
COMPENSATION_ENDS = ("CompensationCompleted", "CompensationAttemptFailed", "CompensationFailed")
_STATUS = re.compile(r" (\d{3})$")


@attrs.frozen
class StepDecl:
    name: str
    has_compensation: bool
    safe_if_unknown: bool


DECLARED = {
    d.name: [StepDecl(s.name, s.compensation is not None, s.compensation_safe_if_unknown)
             for s in d.steps]
    for d in (USER_ONBOARDING, AIRTABLE_INTEGRATION)
}  # fmt: skip
"""The built-in sagas' steps, as their definitions declare them."""

CREATES = {
    ("user_onboarding", "create_profile"): ("user.create_profile", "profile_id"),
    ("user_onboarding", "create_workspace"): ("user.create_workspace", "workspace_id"),
    ("user_onboarding", "send_welcome_email"): ("notification.send", "notification_id"),
    ("user_onboarding", "setup_airtable_integration"): (
        "airtable.create_integration",
        "integration_id",
    ),
    ("airtable_integration", "setup_webhook"): ("airtable.create_webhook", "webhook_id"),
    ("airtable_integration", "initial_sync"): ("airtable.start_sync", "job_id"),
    ("airtable_integration", "notify_success"): ("notification.send", "notification_id"),
}
"""Steps whose action creates something at the stand-in: the operation, and the field of the
step's result that holds the id of what it created (the effect's subject)."""


KNOWN_BUGS: dict[str, str] = {}
"""Invariants that an open product bug breaks now and then, and the test that reproduces it:
their violations are reported, but do not fail the run. Remove the entry with the fix."""


@attrs.define
class Invariant:
    name: str
    promise: str
    checked: int = 0
    planned: int = 0
    """Cases the plan gave it (sagas cancelled, started by events, ...): one that checked none
    of them is a violation, not a pass."""
    violations: list[str] = attrs.field(factory=list)
    not_enforced: str | None = None
    """Why this run reports its violations without failing on them (an open finding)."""

    @property
    def known_bug(self) -> str | None:
        return self.not_enforced or KNOWN_BUGS.get(self.name)

    def fail(self, text: str) -> None:
        self.violations.append(text)


@attrs.define
class Snapshot:
    sagas: dict[str, dict[str, Any]]
    steps: dict[str, list[dict[str, Any]]]
    transitions: dict[str, list[tuple[int, str, dict[str, Any]]]]
    """Saga id -> its stream: (version, transition type, data), in version order."""
    events: list[dict[str, Any]]
    """Every event outside the saga streams."""
    stream_problems: list[str]
    streams_checked: int
    outbox: list[dict[str, Any]]
    on_bus: dict[str, set[str]]
    """Stream -> the event ids of its entries."""
    dead_letters: list[dict[str, str]]
    pending: int
    effects: list[dict[str, Any]]
    calls: list[dict[str, Any]]
    """Every call the stand-in received, before its de-duplication by key (``status`` is
    ``None`` for one never answered)."""
    announcements: list[dict[str, Any]]
    api_status: dict[str, str]
    """A sample: saga id -> its status as ``GET /sagas/{id}`` shows it."""
    published_twice: dict[tuple[str, str], int] = attrs.field(factory=dict)
    """(stream, event id) -> how many entries it has, for those on their stream more than once."""
    commands: list[dict[str, Any]] = attrs.field(factory=list)
    """The commands kept for another instance (``saga_commands``): kind, done."""
    restarts: list[float] = attrs.field(factory=list)
    """Wall-clock times at which an orchestrator process was seen to have ended (killed, or
    exited by itself), was sent the SIGKILL or SIGTERM that ended it, or lost its lease: each
    may make the next owner run again the steps that were in flight."""


# -- reading ----------------------------------------------------------------------------------

STREAM_VERSIONS_SQL = """
SELECT e.stream_id, count(*) AS n, count(DISTINCT e.version) AS distinct_versions,
       min(e.version) AS lowest, max(e.version) AS highest, s.version AS current
FROM events e LEFT JOIN streams s USING (stream_id)
GROUP BY e.stream_id, s.version
"""
EMPTY_STREAMS_SQL = """
SELECT s.stream_id, s.version FROM streams s
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_id = s.stream_id)
"""


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _read_store(dsn: str) -> dict[str, Any]:
    """Every table the checks need (plain asyncio: run it with ``asyncio.run`` in a thread)."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        sagas = await conn.fetch("SELECT * FROM sagas")
        steps = await conn.fetch("SELECT * FROM saga_steps ORDER BY saga_id, step_index")
        events = await conn.fetch(
            "SELECT position, stream_id, version, event_id, event_type, data, metadata "
            "FROM events ORDER BY position"
        )
        versions = await conn.fetch(STREAM_VERSIONS_SQL)
        empty = await conn.fetch(EMPTY_STREAMS_SQL)
        outbox = await conn.fetch("SELECT id, topic, event_id, event_type, sent_at FROM outbox")
        commands = await conn.fetch(
            "SELECT saga_id, kind, done_at IS NOT NULL AS done FROM saga_commands"
        )
    finally:
        await conn.close()
    return {
        "sagas": [dict(r) for r in sagas],
        "steps": [dict(r) for r in steps],
        "events": [dict(r) for r in events],
        "versions": [dict(r) for r in versions],
        "empty": [dict(r) for r in empty],
        "outbox": [dict(r) for r in outbox],
        "commands": [dict(r) for r in commands],
    }


def _stream_problems(versions: list[dict[str, Any]], empty: list[dict[str, Any]]) -> list[str]:
    problems = []
    for row in versions:
        n, highest = row["n"], row["highest"]
        if not (row["distinct_versions"] == n and row["lowest"] == 1 and highest == n):
            problems.append(
                f"stream {row['stream_id']!r}: {n} events with versions {row['lowest']} to "
                f"{highest} ({row['distinct_versions']} distinct): a gap or a duplicate"
            )
        if row["current"] != highest:
            problems.append(
                f"stream {row['stream_id']!r}: streams.version is {row['current']}, its last "
                f"event has version {highest}"
            )
    for row in empty:
        if row["version"] != 0:
            problems.append(f"stream {row['stream_id']!r} is at version {row['version']} "
                            "without events")  # fmt: skip
    return problems


def _read_bus(
    url: str,
) -> tuple[dict[str, set[str]], dict[tuple[str, str], int], list[dict[str, str]], int]:
    """The event ids on each stream, those on it more than once, the dead letters, and the
    router's pending entries."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=30)
    try:
        on_bus: dict[str, set[str]] = {}
        twice: dict[tuple[str, str], int] = {}
        for key in client.scan_iter(_type="stream"):
            ids: set[str] = set()
            counts: collections.Counter[str] = collections.Counter()
            last = "-"
            while True:
                entries = client.xrange(key, min=last, count=10_000)
                if last != "-":
                    entries = entries[1:]  # the range starts at the last entry read
                if not entries:
                    break
                counts.update(fields.get("event_id", "") for _, fields in entries)
                last = entries[-1][0]
            ids.update(counts)
            on_bus[key] = ids
            twice.update({(key, event_id): n for event_id, n in counts.items() if n > 1})
        dead = [fields for _, fields in client.xrange(f"{EVENT_STREAM}:dead")]
        pending = 0
        if client.exists(EVENT_STREAM):
            groups = {g["name"]: g for g in client.xinfo_groups(EVENT_STREAM)}
            if CONSUMER_GROUP in groups:
                pending = int(groups[CONSUMER_GROUP]["pending"])
        return on_bus, twice, dead, pending
    finally:
        client.close()


async def _api_statuses(cluster: Cluster, saga_ids: list[str]) -> dict[str, str]:
    """Each saga's status as ``GET /sagas/{id}`` shows it, asked of each orchestrator in turn
    (a read that breaks is asked again, of the next one)."""
    statuses: dict[str, str] = {}
    limiter = trio.CapacityLimiter(8)
    async with SpreadClient(cluster.orchestrators.urls, api_key=cluster.api_key, timeout=30) as api:

        async def one(saga_id: str) -> None:
            async with limiter:
                for attempt in range(3):
                    try:
                        response, _ = await api.request("GET", f"/sagas/{saga_id}")
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                statuses[saga_id] = (
                    response.json()["status"]
                    if response.status_code == 200
                    else f"HTTP {response.status_code}"
                )

        async with trio.open_nursery() as nursery:
            for saga_id in saga_ids:
                nursery.start_soon(one, saga_id)
    return statuses


LEASE_LOST = "lost its lease: stopping its"
"""What an orchestrator logs when it stops its saga actors because its lease was lost."""


def lease_losses(cluster: Cluster) -> list[float]:
    """Wall-clock times at which an orchestrator process lost its lease (its logs say): like a
    restart, each may make the steps it cut run again (by whichever instance claims them)."""
    times = []
    for path in sorted(cluster.workdir.glob("orchestrator*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if LEASE_LOST in line:
                try:
                    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                except ValueError:
                    continue
                times.append(stamp.timestamp())
    return times


async def take_snapshot(cluster: Cluster, api_sample: Iterable[str]) -> Snapshot:
    store = await trio.to_thread.run_sync(asyncio.run, _read_store(cluster.postgres.url))
    on_bus, twice, dead, pending = await trio.to_thread.run_sync(_read_bus, cluster.redis.url)
    effects = (await cluster.standin.control("GET", "effects"))["effects"]
    calls = (await cluster.standin.control("GET", "calls"))["calls"]
    announcements = (await cluster.standin.control("GET", "announcements"))["announcements"]
    api_status = await _api_statuses(cluster, list(api_sample)[:API_SAMPLE])

    sagas = {}
    for row in store["sagas"]:
        row["input"] = _json(row["input"])
        row["result"] = _json(row["result"])
        sagas[row["saga_id"]] = row
    steps: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in store["steps"]:
        row["result"] = _json(row["result"])
        steps[row["saga_id"]].append(row)
    transitions: dict[str, list[tuple[int, str, dict[str, Any]]]] = collections.defaultdict(list)
    events = []
    for row in store["events"]:
        if row["stream_id"].startswith("saga-"):
            saga_id = row["stream_id"].removeprefix("saga-")
            transitions[saga_id].append((row["version"], row["event_type"], _json(row["data"])))
        else:
            row["data"], row["metadata"] = _json(row["data"]), _json(row["metadata"])
            events.append(row)
    return Snapshot(
        sagas=sagas,
        steps=dict(steps),
        transitions={k: sorted(v, key=lambda t: t[0]) for k, v in transitions.items()},
        events=events,
        stream_problems=_stream_problems(store["versions"], store["empty"]),
        streams_checked=len(store["versions"]) + len(store["empty"]),
        outbox=store["outbox"],
        on_bus=on_bus,
        dead_letters=dead,
        pending=pending,
        effects=effects,
        calls=calls,
        announcements=announcements,
        api_status=api_status,
        published_twice=twice,
        commands=store["commands"],
        restarts=[e.at for e in cluster.orchestrators.exits]
        + [e.signalled for e in cluster.orchestrators.exits if e.signalled]
        + lease_losses(cluster),
    )


# -- checking ---------------------------------------------------------------------------------


def _expects_compensation(decl: StepDecl, status: str) -> bool:
    """Whether a step in ``status`` must be compensated once its saga compensates."""
    if not decl.has_compensation:
        return False
    return status == "completed" or (status == "unknown" and decl.safe_if_unknown)


def _parked_step(saga: dict[str, Any], steps: list[dict[str, Any]]) -> int | None:
    """The step whose unknown outcome explains a ``compensation_failed`` saga, or ``None``."""
    decls = DECLARED[saga["saga_type"]]
    failed = [s for s in steps if s["compensation_status"] == "failed"]
    if len(failed) != 1:
        return None
    step = failed[0]
    decl = decls[step["step_index"]]
    explained = (
        step["status"] == "unknown"
        and decl.has_compensation
        and not decl.safe_if_unknown
        and step["compensation_attempts"] == 0
        and UNKNOWN_UNSAFE in (step["compensation_error"] or "")
    )
    return step["step_index"] if explained else None


class _Checks:
    def __init__(self, snap: Snapshot, records: list[DriverRecord]) -> None:
        self.snap = snap
        self.records = records
        self.invariants: dict[str, Invariant] = {}
        self.notes: list[str] = []
        self.users = {saga["input"].get("user_id") for saga in snap.sagas.values()}

    def inv(self, name: str, promise: str) -> Invariant:
        if name not in self.invariants:
            self.invariants[name] = Invariant(name, promise)
        return self.invariants[name]

    # every saga settled; status agrees with steps and history
    def sagas(self) -> None:
        settled = self.inv(
            "settled",
            "every saga reached a terminal status, or compensation_failed because a step's "
            "outcome is unknown and its compensation is not declared safe for that",
        )
        agrees = self.inv(
            "status_agrees_with_steps",
            "a saga's status agrees with its steps' statuses and compensations, and with its "
            "recorded transitions",
        )
        for saga_id, saga in self.snap.sagas.items():
            settled.checked += 1
            agrees.checked += 1
            status = saga["status"]
            steps = self.snap.steps.get(saga_id, [])
            if status in UNSETTLED:
                settled.fail(f"saga {saga_id} ({saga['saga_type']}) is still {status}")
                continue
            if status == "failed":
                settled.fail(f"saga {saga_id} parked as failed: {saga['error']}")
                continue
            parked = None
            if status == "compensation_failed":
                parked = _parked_step(saga, steps)
                if parked is None:
                    settled.fail(
                        f"saga {saga_id} parked as compensation_failed for another reason than "
                        f"an unknown outcome: {saga['error']}; steps {_steps_text(steps)}"
                    )
                    continue
            for problem in self._status_problems(saga, steps, parked):
                agrees.fail(f"saga {saga_id} ({status}): {problem}")

    def _status_problems(
        self, saga: dict[str, Any], steps: list[dict[str, Any]], parked: int | None
    ) -> list[str]:
        status = saga["status"]
        decls = DECLARED[saga["saga_type"]]
        history = self.snap.transitions.get(saga["saga_id"], [])
        problems = []
        if [s["step_index"] for s in steps] != list(range(len(decls))):
            return [f"its step rows are {_steps_text(steps)}"]
        if saga["version"] != len(history) or [v for v, _, _ in history] != list(
            range(1, len(history) + 1)
        ):
            problems.append(f"version {saga['version']} but {len(history)} transitions recorded")
        kinds = [kind for _, kind, _ in history]
        last = kinds[-1] if kinds else None
        statuses = [s["status"] for s in steps]
        if status == "completed":
            if statuses != ["completed"] * len(decls):
                problems.append(f"steps {statuses}")
            if any(s["compensation_status"] != "not_run" for s in steps):
                problems.append(f"a completed saga has compensations: {_steps_text(steps)}")
            if last != "SagaCompleted":
                problems.append(f"last transition {last}")
            return problems
        first = next((i for i, s in enumerate(statuses) if s != "completed"), len(statuses))
        ends = statuses[first:]
        if ends and (
            ends[0] not in ("failed", "unknown", "pending") or set(ends[1:]) - {"pending"}
        ):
            problems.append(f"steps {statuses}: not a prefix of completed steps, then one that "
                            "ended, then pending ones")  # fmt: skip
        interrupted = [d for _, kind, d in history if kind == "SagaInterrupted"]
        if status == "compensated" and (interrupted or not ends or ends[0] == "pending"):
            problems.append(f"compensated without a failed step: steps {statuses}")
        if status in ("cancelled", "timed_out") and [d["reason"] for d in interrupted] != [status]:
            problems.append(f"interruptions recorded: {[d['reason'] for d in interrupted]}")
        resolved = _resolutions(history)
        for step, decl in zip(steps, decls, strict=True):
            expected = "not_run"
            index = step["step_index"]
            if _expects_compensation(decl, step["status"]):
                # every step whose outcome is known is compensated, also when the saga then
                # parks on a step in doubt (that one alone waits for an operator)
                expected = "completed"
            if index in resolved:  # an operator said what became of it (the repair run)
                expected = "completed" if resolved[index] == "applied" else "skipped"
            if index == parked:
                expected = "failed"
            if step["compensation_status"] != expected:
                problems.append(
                    f"step {decl.name} is {step['status']}, its compensation "
                    f"{step['compensation_status']} (expected {expected})"
                )
        wanted_last = "CompensationFailed" if parked is not None else "SagaCompensated"
        if last != wanted_last:
            problems.append(f"last transition {last}, expected {wanted_last}")
        return problems

    def compensations(self) -> None:
        once = self.inv(
            "compensated_once_in_reverse",
            "every completed step of a compensated saga was compensated exactly once, in "
            "reverse order (in its history and at the stand-in); no compensation ran for a step "
            "that never completed, unless its outcome was unknown and its compensation is "
            "declared safe for that",
        )
        undos: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
        for effect in self.snap.effects:
            saga_id, step, part = _parse_key(effect["idempotency_key"])
            # each built-in compensation makes one call keyed <step>:undo (its other calls,
            # undo:<part>, come before it: a withdrawal, a stop by key)
            if part == "undo":
                undos[saga_id].append((effect["seq"], step))
        for saga_id, saga in self.snap.sagas.items():
            decls = DECLARED[saga["saga_type"]]
            names = _names(saga)
            steps = self.snap.steps.get(saga_id, [])
            if len(steps) != len(decls):
                continue  # reported by status_agrees_with_steps
            once.checked += 1
            history = self.snap.transitions.get(saga_id, [])
            done = [d["step"] for _, kind, d in history if kind == "CompensationCompleted"]
            started = {d["step"] for _, kind, d in history if kind == "CompensationStarted"}
            allowed = {
                i
                for i, (s, decl) in enumerate(zip(steps, decls, strict=True))
                if _expects_compensation(decl, s["status"])
            }
            allowed |= set(_resolutions(history))  # tried before the park, then resolved
            if len(done) != len(set(done)):
                once.fail(f"saga {saga_id}: compensations completed {done} (one twice)")
            if done != sorted(done, reverse=True):
                once.fail(f"saga {saga_id}: compensations completed in the order {done}")
            if started - allowed:
                wrong = {names[i]: steps[i]["status"] for i in sorted(started - allowed)}
                once.fail(f"saga {saga_id}: compensation started for steps {wrong}")
            compensated = [
                s["step_index"] for s in steps if s["compensation_status"] == "completed"
            ]
            if sorted(done) != sorted(compensated):
                once.fail(f"saga {saga_id}: history says {done} compensated, steps {compensated}")
            at_standin = [step for _, step in sorted(undos.get(saga_id, []))]
            expected = [names[i] for i in sorted(compensated, reverse=True)]
            if at_standin != expected:
                once.fail(
                    f"saga {saga_id} ({saga['status']}): undone at the stand-in {at_standin}, "
                    f"compensations completed {expected}"
                )

    def effects(self) -> None:
        twice = self.inv(
            "effects_at_most_once",
            "no effect was applied twice at the stand-in: one per idempotency key and "
            "operation, each key names a saga of the store and a step of its type (the "
            "stand-in's own de-duplication; calls_explained counts the calls before it)",
        )
        matched = self.inv(
            "effects_match_steps",
            "a completed step's effect is at the stand-in with the id its result records; a "
            "step that failed (outcome failed) or never started left no effect",
        )
        seen: dict[tuple[str, str], int] = collections.Counter()
        by_key: dict[tuple[str, str], dict[str, Any]] = {}
        for effect in self.snap.effects:
            twice.checked += 1
            key, operation = effect["idempotency_key"], effect["operation"]
            seen[(key, operation)] += 1
            by_key[(key, operation)] = effect
            saga_id, step, part = _parse_key(key)
            saga = self.snap.sagas.get(saga_id)
            if saga is None:
                twice.fail(f"effect {operation} with key {key!r}: no such saga in the store")
            elif not (part == "" or _is_undo(part)) or step not in _names(saga):
                twice.fail(
                    f"effect {operation} with key {key!r}: not <saga id>:<step>[:undo[:<part>]]"
                )
        for (key, operation), count in seen.items():
            if count > 1:
                twice.fail(f"effect {operation} with key {key!r} applied {count} times")
        # The stand-in strikes its injected faults before it looks the key up, so a step run
        # again after a crash (same key, first attempt applied) may get an injected refusal
        # instead of the answer it was first given: the stand-in then breaks the idempotency
        # contract of docs/services.md on purpose, and the step's effect is left behind.
        refused_repeats = {
            (c["idempotency_key"], c["operation"])
            for c in self.snap.calls
            if c["fault"] and c["status"] is not None and 400 <= c["status"] < 500
        }
        contract_broken: list[str] = []
        for saga_id, saga in self.snap.sagas.items():
            for step in self.snap.steps.get(saga_id, []):
                create = CREATES.get((saga["saga_type"], step["name"]))
                if create is None:
                    continue
                matched.checked += 1
                operation, field = create
                effect = by_key.get((f"{saga_id}:{step['name']}", operation))
                if step["status"] == "completed":
                    result = step["result"] or {}
                    recorded = (result.get("accepted") or {}) if "accepted" in result else result
                    if effect is None:
                        matched.fail(f"saga {saga_id}: step {step['name']} completed, but the "
                                     "stand-in applied nothing for it")  # fmt: skip
                    elif recorded.get(field) != effect["subject"]:
                        matched.fail(
                            f"saga {saga_id}: step {step['name']} recorded {field}="
                            f"{recorded.get(field)!r}, the stand-in created {effect['subject']!r}"
                        )
                elif step["status"] in ("failed", "pending") and effect is not None:
                    if (step["error"] or "").startswith(REPLY_FAILURE):
                        continue  # the command was accepted; the reply said it failed
                    if (effect["idempotency_key"], operation) in refused_repeats:
                        contract_broken.append(f"{saga_id}:{step['name']}")
                        continue
                    matched.fail(
                        f"saga {saga_id} ({saga['status']}): step {step['name']} is "
                        f"{step['status']} but the stand-in applied {operation} for it"
                    )

        self.notes.append(
            "steps failed by an injected refusal of a repeated key, their effect left behind "
            f"(the stand-in broke its idempotency contract on purpose): {len(contract_broken)} "
            f"{contract_broken[:5]}"
        )

    def after_compensation(self) -> None:
        late = self.inv(
            "no_effect_after_compensation",
            "no step's action took effect at the stand-in after the saga's first compensation "
            "call had (a cancel, a failure or a deadline cuts the running step before the saga "
            "compensates, on whichever instance owns it), except the late landing of a step "
            "whose outcome is unknown and whose compensation is not declared safe for that "
            "(the saga parks for an operator)",
        )
        late.planned = sum(r.planned.cancel_after is not None for r in self.records)
        first_undo: dict[str, int] = {}
        for effect in self.snap.effects:
            saga_id, _, part = _parse_key(effect["idempotency_key"])
            if _is_undo(part):
                first_undo[saga_id] = min(effect["seq"], first_undo.get(saga_id, effect["seq"]))
        for effect in self.snap.effects:
            saga_id, step, part = _parse_key(effect["idempotency_key"])
            saga = self.snap.sagas.get(saga_id)
            if part != "" or saga_id not in first_undo or saga is None:
                continue
            late.checked += 1
            if effect["seq"] < first_undo[saga_id]:
                continue
            names = _names(saga)
            index = names.index(step) if step in names else None
            steps = {s["step_index"]: s for s in self.snap.steps.get(saga_id, [])}
            decl = DECLARED[saga["saga_type"]][index] if index is not None else None
            in_doubt = (
                index is not None
                and decl is not None
                and steps.get(index, {}).get("status") == "unknown"
                and not decl.safe_if_unknown
            )
            if not in_doubt:
                late.fail(
                    f"saga {saga_id} ({saga['status']}): {effect['operation']} of {step} took "
                    f"effect (#{effect['seq']}) after its first compensation call "
                    f"(#{first_undo[saga_id]})"
                )

    def calls(self) -> None:
        explained = self.inv(
            "calls_explained",
            "every call to the stand-in is explained by the saga's history: per idempotency "
            "key and operation, no more calls than the attempts recorded for that step's action "
            "(or compensation) plus the orchestrator restarts that struck while one of those "
            "attempts was in flight; every call carries a key <saga id>:<step>[:<part>] of a "
            "saga in the store",
        )
        explained.planned = len(self.snap.sagas)  # every saga's first step calls the stand-in
        counts = collections.Counter(
            (c["idempotency_key"], c["operation"]) for c in self.snap.calls
        )
        windows: dict[str, dict[tuple[int, str], list[tuple[float, float]]]] = {}
        repeated = {"by retries": 0, "by restarts": 0}
        for (key, operation), count in counts.items():
            explained.checked += count
            if key is None:
                explained.fail(f"{count} call(s) of {operation} without an idempotency key")
                continue
            saga_id, step, part = _parse_key(key)
            saga = self.snap.sagas.get(saga_id)
            if saga is None or step not in _names(saga):
                explained.fail(f"{operation} with key {key!r}: not a step of a saga in the store")
                continue
            if saga_id not in windows:
                windows[saga_id] = _attempt_windows(self.snap.transitions.get(saga_id, []))
            kind = "compensation" if _is_undo(part) else "action"
            attempts = windows[saga_id].get((_names(saga).index(step), kind), [])
            restarts = sum(
                1 for start, end in attempts for at in self.snap.restarts if start < at < end
            )
            if count > 1:
                repeated["by restarts" if count > len(attempts) else "by retries"] += 1
            if count > len(attempts) + restarts:
                explained.fail(
                    f"saga {saga_id} ({saga['status']}): {operation} with key {key!r} called "
                    f"{count} times; the {kind} of {step} has {len(attempts)} attempts recorded "
                    f"and {restarts} orchestrator restarts struck during them"
                )
        self.notes.append(
            f"keys called more than once (explained by recorded retries, or needing a restart): "
            f"{repeated}"
        )

    def answers(self, answers: Mapping[str, int], unexpected: Sequence[str]) -> None:
        documented = self.inv(
            "no_unexpected_5xx",
            "the API answered every request the driver sent with a status it documents: no "
            "5xx other than 503 (overloaded, or a dependency unavailable)",
        )
        documented.planned = len(self.records)
        documented.checked = sum(n for route, n in answers.items() if _STATUS.search(route))
        for answer in unexpected:
            documented.fail(answer)

    def starts(self) -> None:
        acknowledged = self.inv(
            "acknowledged_starts_exist",
            "every start the API acknowledged (2xx) names a saga of the store, repeated starts "
            "with one idempotency key name the same saga, and no saga exists that nobody started",
        )
        by_user: dict[str, list[str]] = collections.defaultdict(list)
        for saga_id, saga in self.snap.sagas.items():
            by_user[saga["input"].get("user_id", "")].append(saga_id)
        planned_users = set()
        for record in self.records:
            planned = record.planned
            planned_users.add(planned.user_id)
            acknowledged.checked += 1
            found = by_user.get(planned.user_id, [])
            tag = f"planned saga {planned.n} ({planned.via}, {planned.saga_type})"
            for problem in record.problems:
                acknowledged.fail(f"{tag}: {problem}")
            if record.gave_up:
                acknowledged.fail(f"{tag}: the service did not answer in time")
            if len(record.saga_ids) > 1:
                acknowledged.fail(f"{tag}: its starts named sagas {sorted(record.saga_ids)}")
            for saga_id in record.saga_ids - set(found):
                acknowledged.fail(f"{tag}: acknowledged saga {saga_id} is not in the store")
            if record.acknowledged and len(found) != 1:
                acknowledged.fail(f"{tag}: acknowledged, {len(found)} sagas in the store")
            elif not record.acknowledged and len(found) > 1:
                acknowledged.fail(f"{tag}: its answer was lost, {len(found)} sagas in the store")
            key = planned.idempotency_key
            if planned.via == "event":
                key = f"event:{planned.event_id}:{planned.saga_type}"
            for saga_id in found:
                if key is not None and self.snap.sagas[saga_id]["idempotency_key"] != key:
                    acknowledged.fail(
                        f"{tag}: saga {saga_id} has key "
                        f"{self.snap.sagas[saga_id]['idempotency_key']!r}, expected {key!r}"
                    )
        for user_id, saga_ids in by_user.items():
            if user_id not in planned_users:
                acknowledged.fail(f"sagas {saga_ids} of user {user_id!r}: nobody started them")

    def events(self) -> None:
        stored = self.inv(
            "accepted_events_stored_and_streamed",
            "every event accepted by POST /events/publish (2xx) is in the event store and on "
            "the bus stream; every outbox message (lifecycle events included) was relayed to "
            "its stream; nothing went to the dead-letter stream",
        )
        triggered = self.inv(
            "trigger_events_start_one_saga",
            "every stored triggering event started exactly one saga (per event id and saga type)",
        )
        triggered.planned = sum(r.planned.via == "event" for r in self.records)
        by_id = {e["event_id"]: e for e in self.snap.events}
        on_events = self.snap.on_bus.get(EVENT_STREAM, set())
        for record in self.records:
            for answer in record.published:
                stored.checked += 1
                event_id = answer.get("event_id")
                if event_id != record.planned.event_id:
                    stored.fail(f"publish of {record.planned.event_id} answered {answer}")
                elif event_id not in by_id:
                    stored.fail(f"accepted event {event_id} is not in the event store")
        for event in self.snap.events:
            stored.checked += 1
            if event["event_id"] not in on_events:
                stored.fail(f"stored event {event['event_id']} ({event['event_type']}) is not on "
                            f"{EVENT_STREAM}")  # fmt: skip
        for message in self.snap.outbox:
            stored.checked += 1
            if message["sent_at"] is None:
                stored.fail(f"outbox message {message['event_id']} was never marked sent")
            if message["event_id"] not in self.snap.on_bus.get(message["topic"], set()):
                stored.fail(f"outbox message {message['event_id']} ({message['event_type']}) is "
                            f"not on {message['topic']}")  # fmt: skip
        for dead in self.snap.dead_letters:
            stored.fail(f"dead letter: {dead}")
        if self.snap.pending:
            stored.fail(f"{self.snap.pending} entries of {EVENT_STREAM} are still pending")
        by_key = collections.Counter(s["idempotency_key"] for s in self.snap.sagas.values())
        types = {event_type: saga_type for saga_type, event_type in TRIGGERS.items()}
        for event in self.snap.events:
            saga_type = types.get(event["event_type"])
            if saga_type is None:
                continue
            triggered.checked += 1
            count = by_key.get(f"event:{event['event_id']}:{saga_type}", 0)
            if count != 1:
                triggered.fail(f"event {event['event_id']} started {count} {saga_type} sagas")
        announced = {a["event_id"] for a in self.snap.announcements}
        self.notes.append(
            f"stand-in announcements: {len(announced)}, stored: {len(announced & set(by_id))}"
        )

    def streams(self) -> None:
        versions = self.inv(
            "stream_versions",
            "the event store's per-stream versions run 1..n with no gap or duplicate, and each "
            "stream's current version is its last event's",
        )
        versions.checked = self.snap.streams_checked
        for problem in self.snap.stream_problems:
            versions.fail(problem)

    def api(self) -> None:
        agrees = self.inv("api_agrees_with_store", "GET /sagas/{id} shows the stored status")
        agrees.planned = sum(r.planned.via == "api" and r.acknowledged for r in self.records)
        for saga_id, status in self.snap.api_status.items():
            agrees.checked += 1
            stored = self.snap.sagas.get(saga_id, {}).get("status")
            if status != stored:
                agrees.fail(f"saga {saga_id}: the API says {status}, the store {stored}")

    def cancels(self) -> None:
        honoured = self.inv(
            "cancel_honoured",
            "a cancel answered 202 ends the saga compensated: cancelled (or timed_out or "
            "compensated when its deadline or a step's failure came first, or "
            "compensation_failed for an unknown outcome), never completed",
        )
        honoured.planned = sum(r.planned.cancel_after is not None for r in self.records)
        outcomes: collections.Counter[str] = collections.Counter()
        for record in self.records:
            if record.cancel_status is None or len(record.saga_ids) != 1:
                continue
            saga_id = next(iter(record.saga_ids))
            saga = self.snap.sagas.get(saga_id)
            final = saga["status"] if saga else "missing"
            outcomes[f"{record.cancel_status} -> {final}"] += 1
            if record.cancel_status == 202:
                honoured.checked += 1
                if final not in ("cancelled", "timed_out", "compensated", "compensation_failed"):
                    honoured.fail(f"saga {saga_id}: cancel answered 202, the saga ended {final}")
        self.notes.append(f"cancels (answer -> final status): {dict(sorted(outcomes.items()))}")
        kept = collections.Counter(c["kind"] for c in self.snap.commands)
        self.notes.append(f"commands kept for the saga's owner on another instance: {dict(kept)}")
        self.notes.append(
            f"messages on their stream more than once: {len(self.snap.published_twice)}"
        )
        lost = [r for r in self.records if r.ambiguous and not r.acknowledged]
        created = sum(1 for r in lost if r.planned.user_id in self.users)
        self.notes.append(
            f"starts without a key whose answer was lost: {len(lost)} ({created} of them exist)"
        )


def _names(saga: dict[str, Any]) -> list[str]:
    return [d.name for d in DECLARED[saga["saga_type"]]]


def _parse_key(key: str) -> tuple[str, str, str]:
    """``<saga_id>:<step>[:<part>]`` -> (saga id, step, part)."""
    saga_id, _, rest = key.partition(":")
    step, _, part = rest.partition(":")
    return saga_id, step, part


def _is_undo(part: str) -> bool:
    """Whether a key's part names a compensation's call: ``undo`` or ``undo:<part>``."""
    return part == "undo" or part.startswith("undo:")


def _steps_text(steps: list[dict[str, Any]]) -> str:
    return (
        ", ".join(f"{s['name']}={s['status']}/{s['compensation_status']}" for s in steps)
        or "(none)"
    )


def _resolutions(history: list[tuple[int, str, dict[str, Any]]]) -> dict[int, str]:
    """Step index -> what an operator resolved its unknown outcome to (``applied`` or
    ``not_applied``), from the saga's ``StepResolved`` transitions."""
    return {d["step"]: d["resolution"] for _, kind, d in history if kind == "StepResolved"}


def _attempt_windows(
    history: list[tuple[int, str, dict[str, Any]]],
) -> dict[tuple[int, str], list[tuple[float, float]]]:
    """(step index, ``action`` or ``compensation``) -> the wall-clock window of each attempt
    the history records: from its ``StepStarted`` (``CompensationStarted``) to the transition
    that ended it, or without end when none did. A restart of the orchestrator inside a
    window may have run that attempt again (it resumes from the history: nothing new is
    recorded for the run again)."""
    windows: dict[tuple[int, str], list[tuple[float, float]]] = collections.defaultdict(list)
    running: dict[tuple[int, str], float] = {}
    for _, kind, data in history:
        if kind in ("StepStarted", "CompensationStarted"):
            key = (data["step"], "action" if kind == "StepStarted" else "compensation")
            if key in running:  # started again without an end: the last one ended here
                windows[key].append((running[key], data["at"]))
            running[key] = data["at"]
        elif kind in ACTION_ENDS or kind in COMPENSATION_ENDS:
            key = (data["step"], "action" if kind in ACTION_ENDS else "compensation")
            if key in running:
                windows[key].append((running.pop(key), data["at"]))
    for key, start in running.items():
        windows[key].append((start, math.inf))
    return windows


def check(
    snap: Snapshot,
    records: list[DriverRecord],
    *,
    answers: Mapping[str, int] | None = None,
    unexpected: Sequence[str] = (),
) -> tuple[list[Invariant], list[str]]:
    """The invariants, and notes (figures that are not promises). ``answers``: the driver's
    count of answers by ``"<method> <route> <status>"``; ``unexpected``: its 5xx answers other
    than 503."""
    checks = _Checks(snap, records)
    checks.sagas()
    checks.compensations()
    checks.effects()
    checks.after_compensation()
    checks.calls()
    checks.starts()
    checks.events()
    checks.streams()
    checks.api()
    checks.cancels()
    if answers is not None:
        checks.answers(answers, unexpected)
    invariants = list(checks.invariants.values())
    for invariant in invariants:
        if invariant.planned and not invariant.checked:
            invariant.fail(
                f"the plan gave it {invariant.planned} cases and it checked none of them"
            )
    return invariants, checks.notes
