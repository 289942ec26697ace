"""The ``saga-orchestrator`` command.

    saga-orchestrator serve [--host H] [--port P]   run the service (as ``python -m
                                 saga_orchestrator.main``); the options win over HOST and PORT
    saga-orchestrator migrate    apply pending schema migrations to the store and say which
    saga-orchestrator config     print the effective settings as NAME=value, secrets masked
    saga-orchestrator sagas ...  list|show|steps|events|types|start|cancel|retry sagas of a
                                 running service
    saga-orchestrator events ... publish|stream|all|types|replay events
    saga-orchestrator health     a running service's health, by component
    saga-orchestrator wait-ready [URL] [--timeout S]  wait until a service (or devservices)
                                 is ready
    saga-orchestrator devservices  an in-memory stand-in of the downstream services

Exit codes: 0 success, 1 failure, 2 bad usage or bad configuration; the client commands add
3 not found, 4 conflict and more (``saga_orchestrator.client``, docs/operations.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

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
    _register_serve(commands)
    commands.add_parser("migrate", help="apply pending schema migrations to the store")
    commands.add_parser("config", help="print the effective settings (secrets masked)")
    bench.register(commands)
    client.register(commands)  # sagas ..., events ...: each leaf sets `handler`
    devservices.register(commands)
    return parser


_SERVE_SETTINGS = """\
settings that matter (environment variables, also read from ./.env; every one is in
docs/configuration.md, and `saga-orchestrator config` prints them as they are):
  HOST, PORT            where to listen (default 0.0.0.0:8008; --host and --port win)
  ENVIRONMENT           development (default), test, staging or production
  API_KEY, API_KEYS     the keys callers must send; without one, development and test
                        listen on 127.0.0.1 only and staging and production refuse to start
  DATABASE_URL          unset: SQLite in DATA_DIR (./data); or postgresql://...
  USE_REDIS_EVENT_BUS   true: the event bus is Redis at REDIS_URL; false: in-process
  SAGA_MODULES          modules with saga types of your own (docs/sagas.md)
  *_SERVICE_URL, AIRTABLE_CONNECTOR_URL   the downstream services (docs/services.md)
  LOG_LEVEL             INFO (default); DEBUG adds one access log line per request

Stop it with SIGTERM or Ctrl-C: HTTP first, then the sagas (durable: they resume at the next
start), then the store. Exit codes: 0 clean stop, 1 failure, 2 bad configuration."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port between 0 and 65535, got {text}")
    return value


def _register_serve(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the service until SIGTERM or SIGINT",
        description="Run the saga orchestrator: the HTTP API, the sagas and the event bus, "
        "until SIGTERM or SIGINT.",
        epilog=_SERVE_SETTINGS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", help="address to listen on (default: HOST, else 0.0.0.0; see API_KEY below)"
    )
    serve.add_argument(
        "--port", type=_port, help="port to listen on (default: PORT, else 8008; 0: any free)"
    )


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

        return serve(host=args.host, port=args.port)
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
