"""The command-line client of a running service: ``saga-orchestrator sagas ...`` and
``saga-orchestrator events ...``.

The base URL comes from ``--url`` or ``SAGA_ORCHESTRATOR_URL`` (default
``http://localhost:8008``), the API key from ``API_KEY`` (or ``--api-key``). Exit codes:
0 ok, 1 the service failed or cannot be reached, 2 bad usage (arguments, request, API key),
3 not found, 4 conflict, 5 ``--wait``: the saga ended without completing, 6 ``--wait``: gave up
waiting, 130 interrupted. ``docs/operations.md`` describes them for script writers.
"""

from __future__ import annotations

from typing import Any

from . import _events, _sagas
from ._api import EXIT_CONFLICT as EXIT_CONFLICT
from ._api import EXIT_ERROR as EXIT_ERROR
from ._api import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from ._api import EXIT_NOT_COMPLETED as EXIT_NOT_COMPLETED
from ._api import EXIT_NOT_FOUND as EXIT_NOT_FOUND
from ._api import EXIT_OK as EXIT_OK
from ._api import EXIT_USAGE as EXIT_USAGE
from ._api import EXIT_WAIT_TIMEOUT as EXIT_WAIT_TIMEOUT
from ._api import ApiClient as ApiClient
from ._api import ClientError as ClientError
from ._command import DEFAULT_URL as DEFAULT_URL
from ._command import URL_ENV as URL_ENV
from ._command import connection_options
from ._sagas import start_saga as start_saga
from ._sagas import wait_for_end as wait_for_end

__all__ = [
    "DEFAULT_URL",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_COMPLETED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WAIT_TIMEOUT",
    "URL_ENV",
    "ApiClient",
    "ClientError",
    "register",
    "start_saga",
    "wait_for_end",
]


def register(commands: Any) -> None:
    """Add the ``sagas`` and ``events`` command groups to ``commands`` (the subparsers of the
    ``saga-orchestrator`` parser). Each leaf command sets ``handler``: ``args -> exit code``."""
    common = connection_options()
    _sagas.register(commands, common)
    _events.register(commands, common)
