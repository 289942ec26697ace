"""``python -m saga_orchestrator.main``: run the service until SIGTERM or SIGINT.

Exit codes: 0 after a clean shutdown; 2 when the configuration is bad (one line per problem on
stderr, no traceback); 1 when the service failed, or was stopped hard by a second signal.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from functools import partial

import trio

from saga_orchestrator import __version__
from saga_orchestrator.config import Settings, load_settings
from saga_orchestrator.coordinator.catalog import SagaCatalog
from saga_orchestrator.errors import ConfigError, StoreError, find_error
from saga_orchestrator.logging_setup import configure_logging, secret_values
from saga_orchestrator.service import build_catalog, run_service
from saga_orchestrator.store.sqlite_lock import hold_sqlite_file

__all__ = ["main", "serve", "serve_until_signalled"]

log = logging.getLogger("saga_orchestrator")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def serve_until_signalled(settings: Settings, *, catalog: SagaCatalog | None = None) -> bool:
    """Run the service; the first SIGINT/SIGTERM stops it in order, a second one at once.

    Returns False when it was stopped by a second signal.
    """
    shutdown = trio.Event()
    forced = False
    with trio.open_signal_receiver(*_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal forced
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not shutdown.is_set():
                        log.info("%s received: shutting down (again to stop at once)", name)
                        shutdown.set()
                    else:
                        log.warning("%s received again: stopping at once", name)
                        forced = True
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(watch)
            await run_service(settings, shutdown=shutdown, catalog=catalog)
            nursery.cancel_scope.cancel()
    return not forced


def serve(
    environ: Mapping[str, str] | None = None, *, host: str | None = None, port: int | None = None
) -> int:
    """Load the settings (``host`` and ``port``, when given, win over ``HOST`` and ``PORT``),
    set up logging, run the service; returns the exit code."""
    source = dict(os.environ if environ is None else environ)
    if host is not None:
        source["HOST"] = host
    if port is not None:
        source["PORT"] = str(port)
    try:
        settings = load_settings(source)
        catalog = build_catalog(settings)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(
        settings.log_level, json_lines=settings.is_production, secrets=secret_values(settings)
    )
    try:
        with hold_sqlite_file(settings.sqlite_path):  # one process per SQLite file
            clean = trio.run(partial(serve_until_signalled, settings, catalog=catalog))
    except BaseException as exc:
        problem = find_error(exc, ConfigError)
        if problem is not None:
            print(str(problem), file=sys.stderr)
            return EXIT_CONFIG
        if isinstance(exc, KeyboardInterrupt):
            log.warning("interrupted")
            return EXIT_FAILED
        if not isinstance(exc, Exception):  # SystemExit and the like
            raise
        store_problem = find_error(exc, StoreError)
        if store_problem is not None:  # says what to check; a traceback would not help
            log.critical("the service stopped: %s", store_problem)
        else:
            log.critical("the service stopped with an error", exc_info=exc)
        return EXIT_FAILED
    return EXIT_OK if clean else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m saga_orchestrator.main``; the settings come from the
    environment (and ``.env``), see ``docs/configuration.md``."""
    parser = argparse.ArgumentParser(
        prog="python -m saga_orchestrator.main",
        description="Run the saga orchestrator until SIGTERM or SIGINT. "
        "Settings come from the environment and ./.env (see docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.parse_args(argv)
    return serve()


if __name__ == "__main__":
    sys.exit(main())
