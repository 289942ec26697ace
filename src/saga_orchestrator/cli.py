"""The ``saga-orchestrator`` command.

    saga-orchestrator serve      run the service (as ``python -m saga_orchestrator.main``)
    saga-orchestrator migrate    apply pending schema migrations to the store and say which
    saga-orchestrator config     print the effective settings as NAME=value, secrets masked
    saga-orchestrator sagas ...  list|show|types|start|cancel|retry sagas of a running service
    saga-orchestrator events ... publish|tail events (the event bus API)
    saga-orchestrator devservices  an in-memory stand-in of the downstream services

Exit codes: 0 success, 1 failure, 2 bad usage or bad configuration; the client commands add
3 not found, 4 conflict and more (``saga_orchestrator.client``, docs/operations.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from saga_orchestrator import __version__, bench, client, devservices
from saga_orchestrator.config import describe_settings, load_settings
from saga_orchestrator.errors import ConfigError, SagaOrchestratorError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saga-orchestrator",
        description="A durable saga coordinator for microservices. Settings come from the "
        "environment and ./.env (see docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the service until SIGTERM or SIGINT")
    commands.add_parser("migrate", help="apply pending schema migrations to the store")
    commands.add_parser("config", help="print the effective settings (secrets masked)")
    bench.register(commands)
    client.register(commands)  # sagas ..., events ...: each leaf sets `handler`
    devservices.register(commands)
    return parser


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _config() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    lines = [f"{name}={_format(value)}" for name, value in describe_settings(settings).items()]
    try:
        print("\n".join(lines))
        sys.stdout.flush()
    except BrokenPipeError:  # `saga-orchestrator config | head`: the reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


def _migrate() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from saga_orchestrator.service import describe_store
    from saga_orchestrator.store.migrate import migrate_sync

    try:
        applied = migrate_sync(settings.database_url, settings.data_dir)
    except SagaOrchestratorError as problem:  # ConfigError or StoreError, never in a group
        print(f"migration failed: {problem}", file=sys.stderr)
        return 2 if isinstance(problem, ConfigError) else 1
    where = describe_store(settings)
    if applied:
        print(f"applied {len(applied)} migration(s) to {where}:")
        for name in applied:
            print(f"  {name}")
    else:
        print(f"nothing to apply: {where} is up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from saga_orchestrator.main import serve

        return serve()
    if args.command == "migrate":
        return _migrate()
    if args.command == "config":
        return _config()
    if args.command == "bench":
        return bench.run(args)
    if args.command == "devservices":
        return devservices.run(args)
    handler = getattr(args, "handler", None)
    if handler is not None:
        return handler(args)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
