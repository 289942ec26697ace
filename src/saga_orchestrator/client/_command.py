"""What every client command shares: where the service is and which key to send, the
connection options, JSON arguments, and turning a :class:`~._errors.ClientError` into a
message on stderr and an exit code. A command's handler gets the library's
:class:`~._saga_client.SyncSagaClient` and calls its typed methods: the command line has no
requests of its own.

Variables are read from the environment over ``./.env`` (as ``serve`` reads its settings):

- the service: ``--url``, else ``SAGA_ORCHESTRATOR_URL``, else ``http://HOST:PORT`` from the
  service's own ``HOST`` and ``PORT`` (default ``0.0.0.0`` and ``8008``), a wildcard ``HOST``
  (``0.0.0.0``, ``::``) meaning this machine (``127.0.0.1``);
- the key, sent as ``X-API-Key``: ``--api-key``, else ``SAGA_ORCHESTRATOR_API_KEY``, else
  ``API_KEY`` (the service's own key, named ``default``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from saga_orchestrator.config import read_environment

from ._errors import EXIT_INTERRUPTED, ClientError, UsageError
from ._saga_client import SyncSagaClient
from ._where import API_KEY_ENVS, DEFAULT_PORT, URL_ENV, api_key_of, service_url

__all__ = [
    "API_KEY_ENVS",
    "DEFAULT_PORT",
    "URL_ENV",
    "ClientOptions",
    "Handler",
    "api_key_of",
    "connection_options",
    "json_argument",
    "runner",
    "service_url",
]

Handler = Callable[[SyncSagaClient, argparse.Namespace], int]
"""A command: calls the client, prints, returns the exit code (or raises ``ClientError``)."""
ClientOptions = Callable[[argparse.Namespace], dict[str, Any]]
"""A command's own arguments of :class:`SyncSagaClient` (``retries``, ``on_retry``)."""


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with the options every client command takes."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        help=f"base URL of the service (default: ${URL_ENV}, else http://$HOST:$PORT, "
        f"a wildcard HOST meaning 127.0.0.1; HOST and PORT as the service reads them, "
        f"default 127.0.0.1 and {DEFAULT_PORT})",
    )
    group.add_argument(
        "--api-key",
        help=f"API key to send (default: ${API_KEY_ENVS[0]}, else ${API_KEY_ENVS[1]}; prefer a "
        "variable, a command line is visible to other users of the machine)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="time allowed for each request (default: %(default)s)",
    )
    group.add_argument(
        "--json", action="store_true", help="print JSON for scripts instead of a table"
    )
    return options


def json_argument(text: str | None, name: str) -> Any:
    """The JSON value of an option: inline JSON, ``@path`` for a file, ``-`` for stdin."""
    if text is None:
        return None
    source = "standard input" if text == "-" else text
    try:
        if text == "-":
            text = sys.stdin.read()
        elif text.startswith("@"):
            source = text[1:]
            text = Path(source).read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as exc:
        raise UsageError(f"{name}: cannot read {source}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: not valid JSON ({exc})") from None


def runner(
    handler: Handler, options: ClientOptions | None = None
) -> Callable[[argparse.Namespace], int]:
    """The command's entry point: make the client (with ``options(args)`` besides the
    connection options), run ``handler``, map errors to exit codes."""

    def run(args: argparse.Namespace) -> int:
        try:
            environ = read_environment()
            url = service_url({**environ, URL_ENV: args.url} if args.url else environ)
            api_key = args.api_key or api_key_of(environ) or ""
            more = options(args) if options is not None else {}
            with SyncSagaClient(url, api_key=api_key, timeout=args.timeout, **more) as sagas:
                return handler(sagas, args)
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run
