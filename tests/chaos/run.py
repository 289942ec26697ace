"""One chaos run from start to report: plan, processes, load and faults, quiescence, checks."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import redis
import trio

from .checker import Invariant, Snapshot, check, take_snapshot
from .cluster import CONSUMER_GROUP, EVENT_STREAM, Cluster, Exit, open_cluster
from .driver import Driver
from .injector import Injector, Struck
from .plan import ChaosConfig, Plan, make_plan

GIVE_UP_AFTER = 60.0
"""Seconds after the window a request may still be retried before the driver gives up."""
QUIET_FOR = 2.0
"""Seconds the store must stay unchanged (and settled) to count as quiet."""

QUIET_SQL = """
SELECT (SELECT count(*) FROM sagas WHERE status IN ('pending', 'running', 'compensating'))
           AS unsettled,
       (SELECT count(*) FROM sagas) AS sagas,
       (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS unsent,
       (SELECT coalesce(max(position), 0) FROM events) AS last_position
"""


@attrs.define
class ChaosReport:
    config: ChaosConfig
    workdir: Path
    invariants: list[Invariant]
    notes: list[str]
    statuses: dict[str, int]
    """Sagas in the store by final status."""
    struck: list[Struck]
    fault_counts: dict[str, int]
    exits: list[Exit]
    answers: dict[str, int]
    unexpected_answers: list[str]
    durations: dict[str, float]
    quiet: bool
    planned: dict[str, int]
    snapshot: Snapshot | None = None
    """What the checks read (for a test that looks further)."""

    @property
    def known(self) -> list[str]:
        """Violations of invariants an open product bug breaks (they do not fail the run)."""
        return [f"[{i.name}] {v}" for i in self.invariants if i.known_bug for v in i.violations]

    @property
    def violations(self) -> list[str]:
        found = [
            f"[{i.name}] {v}" for i in self.invariants if not i.known_bug for v in i.violations
        ]
        found += [
            f"[no_unexpected_exits] incarnation {e.incarnation} exited with {e.code}:\n{e.log}"
            for e in self.exits
            if not e.expected
        ]
        found += [
            f"[faults_struck] {s.fault.describe()}: {s.error}" for s in self.struck if s.error
        ]
        if not self.quiet:
            found.append("[quiet] the system did not settle in time")
        return found

    def text(self) -> str:
        config = self.config
        lines = [
            f"chaos run seed={config.seed}: {config.sagas} sagas over {config.window:g} s, "
            f"{sum(self.durations.values()):.0f} s in all ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in self.durations.items())
            + ")",
            f"planned: {self.planned}",
            f"faults struck: {sum(self.fault_counts.values())} {self.fault_counts}",
            f"orchestrator: {config.instances} process(es), {len(self.exits)} exits, "
            f"{sum(1 for e in self.exits if not e.expected)} exits nobody asked for",
            f"sagas in the store: {sum(self.statuses.values())} {self.statuses}",
            "invariants:",
        ]
        lines += [
            f"  {i.name}: {i.checked} checked, {len(i.violations)} violations"
            + (f" (known product bug, not enforced: {i.known_bug})" if i.known_bug else "")
            for i in self.invariants
        ]
        lines += [f"  known: {known}" for known in self.known]
        lines += [f"note: {note}" for note in self.notes]
        lines.append(f"HTTP answers: {self.answers}")
        if self.unexpected_answers:
            lines.append(f"5xx other than 503: {len(self.unexpected_answers)}, e.g.")
            lines += [f"  {a}" for a in self.unexpected_answers[:5]]
        lines.append(f"violations: {len(self.violations)}")
        lines.append(f"logs: {self.workdir}")
        return "\n".join(lines)

    def failure_text(self, most: int = 30) -> str:
        violations = self.violations
        lines = [
            f"chaos run seed={self.config.seed}: {len(violations)} violations "
            f"(replay: {self.config.replay_command()}, or CHAOS_SEED={self.config.seed} for "
            "the CI test)",
            *violations[:most],
        ]
        if len(violations) > most:
            lines.append(f"... and {len(violations) - most} more")
        lines.append(f"logs: {self.workdir}")
        return "\n".join(lines)


async def _store_figures(dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return dict(await conn.fetchrow(QUIET_SQL))
    finally:
        await conn.close()


def _bus_backlog(url: str) -> int:
    """Entries of the event stream not yet read or not yet acknowledged by the router."""
    with redis.Redis.from_url(url, decode_responses=True, socket_timeout=5) as client:
        if not client.exists(EVENT_STREAM):
            return 0
        last = client.xinfo_stream(EVENT_STREAM)["last-generated-id"]
        for group in client.xinfo_groups(EVENT_STREAM):
            if group["name"] == CONSUMER_GROUP:
                unread = group["last-delivered-id"] != last
                return int(group["pending"]) + int(unread)
        return 1  # the router has not made its group yet


async def wait_quiet(cluster: Cluster, within: float) -> bool:
    """Wait until no saga is unsettled, the outbox and the router's backlog are empty, and the
    store has not changed for :data:`QUIET_FOR` seconds; False if that did not happen in time."""
    previous: dict[str, Any] | None = None
    with trio.move_on_after(within):
        while True:
            try:
                figures = await trio.to_thread.run_sync(
                    asyncio.run, _store_figures(cluster.postgres.url)
                )
                figures["backlog"] = await trio.to_thread.run_sync(_bus_backlog, cluster.redis.url)
            except (OSError, asyncpg.PostgresError, redis.RedisError):
                figures = None
            settled = (
                figures is not None
                and figures["unsettled"] == 0
                and figures["unsent"] == 0
                and figures["backlog"] == 0
            )
            if settled and figures == previous:
                return True
            previous = figures if settled else None
            await trio.sleep(QUIET_FOR)
    return False


async def run_chaos(
    config: ChaosConfig,
    workdir: Path,
    *,
    say: Callable[[str], None] = print,
    source: Path | None = None,
    plan: Plan | None = None,
) -> ChaosReport:
    """Run the chaos run ``config`` describes in ``workdir`` (its logs stay there); ``source``
    as for :func:`~.cluster.open_cluster`; ``plan``: this one instead of the seed's."""
    plan = plan or make_plan(config)
    say(f"chaos run: seed={config.seed}, {config.sagas} sagas, {config.instances} orchestrator(s), "
        f"{len(plan.faults)} faults over {config.window:g} s; logs in {workdir}")  # fmt: skip
    durations: dict[str, float] = {}
    began = time.monotonic()
    async with open_cluster(config, workdir, source) as cluster:
        durations["setup"] = time.monotonic() - began
        began = time.monotonic()
        driver = Driver(cluster.orchestrators.urls, cluster.api_key, plan.sagas)
        injector = Injector(cluster, plan.faults)
        start = trio.current_time() + 0.5
        async with trio.open_nursery() as nursery:
            nursery.start_soon(driver.run, start, start + config.window + GIVE_UP_AFTER)

            async def faults() -> None:
                await injector.run(start)
                await trio.sleep_until(start + config.window)
                await injector.calm()

            nursery.start_soon(faults)
        durations["load and faults"] = time.monotonic() - began
        say(f"load and faults done: {injector.counts()}; waiting for quiescence")
        began = time.monotonic()
        quiet = await wait_quiet(cluster, config.quiet_within)
        durations["quiescence"] = time.monotonic() - began
        began = time.monotonic()
        records = list(driver.records.values())
        sample = [i for r in records if r.planned.via == "api" for i in sorted(r.saga_ids)]
        snapshot = await take_snapshot(cluster, sample)
        invariants, notes = check(
            snapshot, records, answers=driver.answers, unexpected=driver.unexpected
        )
        for invariant in invariants:
            if invariant.name in config.not_enforced:
                invariant.not_enforced = "not enforced with several orchestrators (reliability.md)"
        durations["checks"] = time.monotonic() - began
        began = time.monotonic()
    durations["teardown"] = time.monotonic() - began
    statuses = collections.Counter(s["status"] for s in snapshot.sagas.values())
    planned = collections.Counter(f"{s.via} {s.saga_type}" for s in plan.sagas)
    planned.update(
        {
            "repeated": sum(s.repeat != "no" for s in plan.sagas),
            "cancelled": sum(s.cancel_after is not None for s in plan.sagas),
            "without key": sum(s.via == "api" and s.idempotency_key is None for s in plan.sagas),
        }
    )
    return ChaosReport(
        config=config,
        workdir=workdir,
        invariants=invariants,
        notes=notes,
        statuses=dict(statuses.most_common()),
        struck=injector.struck,
        fault_counts=injector.counts(),
        exits=cluster.orchestrators.exits,
        answers=dict(sorted(driver.answers.items())),
        unexpected_answers=driver.unexpected,
        durations=durations,
        quiet=quiet,
        planned=dict(planned),
        snapshot=snapshot,
    )
