"""What every client command shares: the connection options, JSON arguments, and turning a
:class:`~._api.ClientError` into a message on stderr and an exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._api import EXIT_INTERRUPTED, ApiClient, ClientError, UsageError

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_URL",
    "URL_ENV",
    "Handler",
    "connection_options",
    "json_argument",
    "runner",
]

DEFAULT_URL = "http://localhost:8008"
URL_ENV = "SAGA_ORCHESTRATOR_URL"
API_KEY_ENV = "API_KEY"

Handler = Callable[[ApiClient, argparse.Namespace], int]
"""A command: talks to the API, prints, returns the exit code (or raises ``ClientError``)."""


def connection_options() -> argparse.ArgumentParser:
    """A parent parser with the options every client command takes."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("connection and output")
    group.add_argument(
        "--url",
        help=f"base URL of the service (default: ${URL_ENV}, else {DEFAULT_URL})",
    )
    group.add_argument(
        "--api-key",
        help=f"API key to send (default: ${API_KEY_ENV}; prefer the variable, a command line "
        "is visible to other users of the machine)",
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


def _base_url(args: argparse.Namespace) -> str:
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url {url!r} is not valid: expected an http:// or https:// URL")
    return url


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


def runner(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """The command's entry point: connect, run ``handler``, map errors to exit codes."""

    def run(args: argparse.Namespace) -> int:
        try:
            api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
            with ApiClient(_base_url(args), api_key=api_key, timeout=args.timeout) as api:
                return handler(api, args)
        except ClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run
