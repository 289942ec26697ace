"""``saga-orchestrator wait-ready [URL]`` and ``saga-orchestrator health``.

``wait-ready`` polls ``URL/health/ready`` (the service's readiness, or the ``devservices``
stand-in's) until it answers 200, for scripts that start a server in the background and go on
once it listens: exit 0 when ready, 1 with a line saying what it last saw when ``--timeout``
passes first; it polls with an httpx client of its own (no key, short timeouts, any answer a
reason to go on), being a probe rather than a call of the saga API. ``health`` prints the
client's ``health()`` (``GET /health``): every component, exit 1 when one is unhealthy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from saga_orchestrator.config import read_environment

from ._command import URL_ENV, runner, service_url
from ._errors import EXIT_ERROR, EXIT_OK, EXIT_USAGE, ClientError
from ._output import Column, emit, json_text, table
from ._saga_client import SyncSagaClient

__all__ = ["READY_PATH", "register", "wait_until_ready"]

READY_PATH = "/health/ready"
_HEALTH_COLUMNS: Sequence[Column] = (
    ("component", lambda c: c.get("name")),
    ("status", lambda c: c.get("status")),
    ("figures", lambda c: {k: v for k, v in c.items() if k not in ("name", "status")}),
)


def _not_ready(response: httpx.Response) -> str:
    """What a non-200 readiness answer says."""
    try:
        body = response.json()
    except ValueError:
        body = None
    parts = body.get("not_ready") if isinstance(body, dict) else None
    if isinstance(parts, list) and parts:
        said = ", ".join(
            f"{part.get('component')}: {part.get('reason')}"
            for part in parts
            if isinstance(part, dict)
        )
        return f"HTTP {response.status_code}, not ready ({said})"
    return f"HTTP {response.status_code}"


def wait_until_ready(
    url: str,
    *,
    timeout: float,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> str | None:
    """Poll ``url`` + ``/health/ready`` until it answers 200 (``None``) or ``timeout`` seconds
    pass (what it saw last, for a person)."""
    target = url.rstrip("/") + READY_PATH
    deadline = clock() + timeout
    seen = "no answer yet"
    with httpx.Client(timeout=max(0.1, min(2.0, timeout))) as http:
        while True:
            try:
                response = http.get(target)
            except httpx.HTTPError as exc:
                seen = f"nothing answers ({type(exc).__name__}: {exc or 'no detail'})"
            else:
                if response.status_code == 200:
                    return None
                seen = _not_ready(response)
            left = deadline - clock()
            if left <= 0:
                return seen
            pause(min(interval, left))


def _wait_ready(args: argparse.Namespace) -> int:
    try:
        environ = read_environment()
        url = service_url({**environ, URL_ENV: args.url} if args.url else environ)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    try:
        problem = wait_until_ready(url, timeout=args.timeout, interval=args.interval)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_ERROR
    if problem is not None:
        print(f"error: {url} is not ready after {args.timeout:g} s: {problem}", file=sys.stderr)
        return EXIT_ERROR
    emit(f"{url} is ready ({time.monotonic() - started:.1f} s)")
    return EXIT_OK


def _health(sagas: SyncSagaClient, args: argparse.Namespace) -> int:
    health: dict[str, Any] = sagas.health()
    if args.json:
        emit(json_text(health))
    else:
        components = [
            {"name": name, **values} for name, values in (health.get("components") or {}).items()
        ]
        emit(f"status  {health.get('status')}\n\n" + table(components, _HEALTH_COLUMNS))
    return EXIT_OK if health.get("status") == "ok" else EXIT_ERROR


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add ``wait-ready`` and ``health`` to ``commands`` (an argparse subparsers object)."""
    ready = commands.add_parser(
        "wait-ready",
        help="wait until a service (or devservices) is ready: exit 0, or 1 after --timeout",
        description=f"Poll URL{READY_PATH} until it answers 200. Exit 0 once ready; 1 after "
        "--timeout, with what it last saw. Works for the service and for devservices.",
    )
    ready.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help=f"base URL (default: ${URL_ENV}, else http://$HOST:$PORT as the client commands)",
    )
    ready.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="give up after S seconds (default %(default)g)",
    )
    ready.add_argument(
        "--interval", type=_seconds, default=0.2, metavar="S", help=argparse.SUPPRESS
    )
    ready.set_defaults(handler=_wait_ready)

    health = commands.add_parser(
        "health",
        parents=[common],
        help="every component's health (GET /health): exit 0 healthy, 1 not",
    )
    health.set_defaults(handler=runner(_health))
