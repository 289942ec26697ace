"""``python -m tests.chaos``: a chaos run of any length, by hand (see docs/reliability.md).

    python -m tests.chaos --sagas 5000 --seed 123 --minutes 10
    python -m tests.chaos --instances 3 --minutes 5     # several orchestrators on one store
    python -m tests.chaos --repair --sagas 100 --seed 123

``--repair`` runs the repair run instead (:mod:`.repair`): sagas cancelled mid-step park, and an
operator repairs them through the API.

Prints the seed, the figures and every violation; exits 1 when there is one. The processes'
logs stay in ``--workdir`` (a new temporary directory by default).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from functools import partial
from pathlib import Path

import trio

from .plan import ChaosConfig
from .repair import RepairConfig, run_repair
from .run import run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="A chaos run of any length, by hand (see docs/reliability.md).",
    )
    parser.add_argument("--sagas", type=int, default=1000, help="sagas to start (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="the run's seed (default: random)")
    parser.add_argument(
        "--minutes", type=float, default=5.0, help="how long the sagas and faults last (default 5)"
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="orchestrator processes on the one store, each killed or stopped among the faults "
        "(default 1)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the logs go")
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="run the orchestrator and the stand-in from the saga_orchestrator package in this "
        "directory (e.g. the src/ of `git archive HEAD src | tar -x -C DIR`) instead of the "
        "working tree, which may change during a long run",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="the repair run: sagas cancelled mid-step park, an operator repairs them through "
        "the API (--minutes and --source do not apply)",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    if args.repair:
        return _repair(seed, args.sagas, args.workdir)
    config = ChaosConfig.long(
        seed=seed, sagas=args.sagas, minutes=args.minutes, instances=max(1, args.instances)
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"saga-chaos-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"seed: {seed}", flush=True)
    say = partial(print, flush=True)
    source = args.source.resolve() if args.source else None
    report = trio.run(partial(run_chaos, config, workdir, say=say, source=source))
    print(report.text())
    if report.violations:
        print(report.failure_text(most=200))
        return 1
    return 0


def _repair(seed: int, sagas: int, workdir: Path | None) -> int:
    config = RepairConfig(seed=seed, sagas=sagas)
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"saga-repair-{seed}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"seed: {seed}", flush=True)
    report = trio.run(partial(run_repair, config, workdir, say=partial(print, flush=True)))
    print(report.text())
    if report.violations:
        print(report.failure_text(most=200))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
