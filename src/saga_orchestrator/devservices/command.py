"""``saga-orchestrator devservices``: serve the in-memory stand-in on one port.

    saga-orchestrator devservices [--port 8100] [--host 127.0.0.1] [--sync-delay 1]
        [--fail OPERATION[:STATUS[:TIMES]] ...] [--latency S] [--failure-rate R]
        [--orchestrator-url URL] [--seed N]

``ORCHESTRATOR_URL`` (default ``http://localhost:8008``) is where the sync outcome events are
published, with ``SAGA_ORCHESTRATOR_API_KEY`` (else ``API_KEY``) as its ``X-API-Key``;
``SERVICE_AUTH_TOKEN``, when set, is the bearer token every call must carry. They are read from
the environment over ``./.env``. ``GET /health/ready`` answers 200 once it serves
(``saga-orchestrator wait-ready http://127.0.0.1:8100``).
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ._state import DevState

__all__ = ["build_state", "register", "run", "serve_devservices"]

DEFAULT_PORT = 8100
DEFAULT_ORCHESTRATOR_URL = "http://localhost:8008"


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``devservices`` command to ``subparsers`` (of the ``saga-orchestrator`` parser)."""
    parser = subparsers.add_parser(
        "devservices",
        help="run an in-memory stand-in of the downstream services (auth, user, permission, "
        "notification, Airtable connector)",
        description="Serve the downstream services' contract (docs/services.md) in memory, "
        "with idempotency keys honoured, every call recorded (GET /_control/calls) and fault "
        "injection (POST /_control/faults, the X-Dev-Fault header, or the options below). "
        "Data-sync outcomes are published to ORCHESTRATOR_URL/events/publish.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default %(default)s; 0: any free)"
    )
    parser.add_argument(
        "--orchestrator-url",
        default=None,
        help="where to publish events (default: ORCHESTRATOR_URL, else "
        f"{DEFAULT_ORCHESTRATOR_URL})",
    )
    parser.add_argument(
        "--sync-delay",
        type=_seconds,
        default=1.0,
        help="seconds an Airtable data sync takes (default %(default)s)",
    )
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="OPERATION[:STATUS[:TIMES]]",
        help="fail an operation (status 503 and once by default; TIMES 0: always); repeatable, "
        "e.g. --fail airtable.create_integration:422:0",
    )
    parser.add_argument(
        "--latency", type=_seconds, default=0.0, help="seconds added to every answer"
    )
    parser.add_argument(
        "--failure-rate",
        type=_rate,
        default=0.0,
        help="chance (0 to 1) that any call answers 503",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of --failure-rate's dice")
    return parser


def build_state(args: argparse.Namespace, environ: dict[str, str] | None = None) -> DevState:
    """The stand-in's :class:`~._state.DevState` for the command's options.

    Raises:
        ValueError: a ``--fail`` is not ``OPERATION[:STATUS[:TIMES]]``.
    """
    from saga_orchestrator.client import api_key_of  # as the client commands choose theirs
    from saga_orchestrator.config import read_environment

    from ._announce import HttpAnnouncer
    from ._faults import Fault, FaultBook, fault_from_spec
    from ._state import DevState

    environ = read_environment() if environ is None else environ
    faults = FaultBook(rng=random.Random(args.seed))
    for spec in args.fail:
        faults.add(fault_from_spec(spec))
    if args.latency:
        faults.add(Fault(status=None, times=None, delay=args.latency))
    if args.failure_rate:
        faults.add(Fault(status=503, times=None, rate=args.failure_rate))
    url = args.orchestrator_url or environ.get("ORCHESTRATOR_URL") or DEFAULT_ORCHESTRATOR_URL
    return DevState(
        token=environ.get("SERVICE_AUTH_TOKEN") or None,
        sync_delay=args.sync_delay,
        faults=faults,
        announcer=HttpAnnouncer(orchestrator_url=url, api_key=api_key_of(environ)),
    )


async def serve_devservices(
    state: DevState,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the stand-in until ``shutdown`` (a ``trio.Event``) is set or the task is cancelled;
    ``task_status.started(port)`` once it accepts connections."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from ._app import create_app

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    config.include_server_header = False
    trigger = shutdown.wait if shutdown is not None else trio.sleep_forever
    async with trio.open_nursery() as nursery:
        app = create_app(state)
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=trigger))
        task_status.started(int(binds[0].rsplit(":", 1)[1]))


async def _main(args: argparse.Namespace, state: DevState) -> None:
    from ._app import SERVICE_PATHS

    shutdown = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for _ in signals:
                    shutdown.set()
                    return

            nursery.start_soon(watch)
            port = await nursery.start(
                partial(serve_devservices, state, host=args.host, port=args.port, shutdown=shutdown)
            )
            host = f"[{args.host}]" if ":" in args.host else args.host
            base = f"http://{host}:{port}"
            lines = [f"devservices listening on {base} (records and knobs: {base}/_control)"]
            lines.append("point the orchestrator at it with:")
            lines += [f"  {name}={base}{path}" for name, path in SERVICE_PATHS.items()]
            print("\n".join(lines), flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 after SIGINT/SIGTERM, 2 on a bad option."""
    from saga_orchestrator.errors import find_error

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        state = build_state(args)
    except ValueError as exc:
        print(f"devservices: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(_main, args, state)
    except Exception as exc:
        problem = find_error(exc, OSError)
        if problem is None:
            raise
        print(f"devservices: cannot serve on {args.host}:{args.port}: {problem}", file=sys.stderr)
        return 1
    return 0
