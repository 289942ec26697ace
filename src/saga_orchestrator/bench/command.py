"""``saga-orchestrator bench``: run the standard workloads and print the figures.

    saga-orchestrator bench [WORKLOAD ...] [-n N] [-c C] [--warmup W] [--json]
                            [--database-url URL] [--keep] [-q]

One line per workload on stdout (``--json``: one JSON object per line); progress on stderr.
Exit codes: 0 all ran and every saga (or request) ended as expected; 1 a workload failed or
had sagas end otherwise (or requests answered with an error); 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from .workloads import ALL_WORKLOADS, DEFAULT_WORKLOADS, WORKLOADS

if TYPE_CHECKING:
    from saga_orchestrator.config import Settings

    from .stores import StoreTarget

__all__ = ["format_result", "register", "run"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _count_or_zero(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` command to ``subparsers`` (of the ``saga-orchestrator`` parser)."""
    lines = [f"  {w.name:<12} {w.description} (N {w.default_n:,})" for w in WORKLOADS.values()]
    parser = subparsers.add_parser(
        "bench",
        help="run the standard benchmark workloads and print the figures",
        description="Run benchmark workloads in this process (real store, coordinator and saga "
        "actors; http: the real server in a child process) on a fresh store made for each "
        "workload and removed afterwards: a new PostgreSQL database when DATABASE_URL names "
        "PostgreSQL (its user needs CREATEDB), else a new SQLite file.",
        epilog="workloads (default: " + ", ".join(DEFAULT_WORKLOADS) + "):\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="workloads to run")
    parser.add_argument(
        "-n",
        type=_count,
        default=None,
        help="sagas per workload; http: requests per phase (default: per workload)",
    )
    parser.add_argument(
        "-c",
        "--concurrency",
        type=_count,
        default=64,
        help="sagas in flight (default 64; latency always runs 1); wait: starts and replies "
        "in flight; recovery: starters filling the store; http: connections",
    )
    parser.add_argument(
        "--warmup",
        type=_count_or_zero,
        default=None,
        help="sagas (http: requests per phase) run first and not counted "
        "(default: N/10, at most 200; recovery has none)",
    )
    parser.add_argument(
        "--instances",
        type=_count,
        default=None,
        help="server processes on one PostgreSQL database: saga-4 through N servers (the "
        "aggregate), failover's servers (default 3)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per workload line")
    parser.add_argument(
        "--database-url",
        default=None,
        help="the store: memory, sqlite:///path.db or postgresql://... "
        "(default: DATABASE_URL, else the embedded SQLite store in DATA_DIR)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each workload's SQLite file or PostgreSQL database (and say where)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return parser


class Result(Protocol):
    """What a workload runner returns."""

    errors: int

    def to_json(self) -> dict[str, Any]: ...

    def line(self) -> str: ...


Runner = Callable[..., Awaitable[Result]]


def format_result(result: Result) -> str:
    """The one text line of a workload's figures."""
    return result.line()


def _runner(kind: str, instances: int | None = None) -> Runner:
    """The function that runs workloads of ``kind`` (imported only when needed); with
    ``instances``, through that many server processes (:mod:`.instances`)."""
    if kind == "failover" or (instances is not None and kind == "drive"):
        from functools import partial

        from .instances import run_failover, run_instances

        run = run_failover if kind == "failover" else run_instances
        return partial(run, instances=instances or 3)
    if kind == "wait":
        from .wait import run_wait

        return run_wait
    if kind == "recovery":
        from .recovery import run_recovery

        return run_recovery
    if kind == "http":
        from .http_workload import run_http

        return run_http
    from .harness import run_workload

    return run_workload


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the ``bench`` command parsed by :func:`register`'s parser; returns the exit code."""
    chosen = list(dict.fromkeys(args.workloads)) or list(DEFAULT_WORKLOADS)
    unknown = [name for name in chosen if name not in ALL_WORKLOADS]
    if unknown:
        _stderr(
            f"saga-orchestrator bench: unknown workload(s): {', '.join(unknown)}; "
            f"workloads: {', '.join(ALL_WORKLOADS)}"
        )
        return EXIT_USAGE

    from saga_orchestrator.config import load_settings
    from saga_orchestrator.errors import ConfigError

    from .stores import resolve_target

    try:
        settings = load_settings()
        database_url = (
            args.database_url if args.database_url is not None else (settings.database_url)
        )
        target = resolve_target(database_url, settings)
    except ConfigError as exc:
        _stderr(str(exc))
        return EXIT_USAGE
    if args.concurrency > settings.max_active_sagas:
        _stderr(f"-c {args.concurrency} is above MAX_ACTIVE_SAGAS={settings.max_active_sagas}")
        return EXIT_USAGE
    return _run_all(args, chosen, target, settings)


def _run_all(
    args: argparse.Namespace, chosen: list[str], target: StoreTarget, settings: Settings
) -> int:
    import trio
    import trio_asyncio

    from saga_orchestrator.errors import SagaOrchestratorError, find_error

    from .common import Progress

    progress = Progress(None if args.quiet else sys.stderr)
    failed = False

    async def main() -> None:
        nonlocal failed
        async with trio_asyncio.open_loop():
            for name in chosen:
                workload = WORKLOADS[name]
                n = args.n or workload.default_n
                warmup = min(200, n // 10) if args.warmup is None else args.warmup
                result = await _runner(workload.kind, args.instances)(
                    workload,
                    target,
                    settings,
                    n=n,
                    concurrency=args.concurrency,
                    warmup=warmup,
                    keep=args.keep,
                    progress=progress,
                    note=_stderr,
                )
                failed = failed or result.errors > 0
                line = json.dumps(result.to_json()) if args.json else format_result(result)
                print(line, flush=True)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        _stderr("interrupted")
        return EXIT_FAILED
    except Exception as exc:
        problem = find_error(exc, SagaOrchestratorError)
        if problem is None:
            raise
        _stderr(f"bench failed: {problem}")
        return EXIT_FAILED
    return EXIT_FAILED if failed else EXIT_OK
