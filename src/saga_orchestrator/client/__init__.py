"""The client of a running service: a library for other services (:class:`SagaClient`, async
on trio or asyncio, and :class:`SyncSagaClient`; docs/client.md) and the command line
``saga-orchestrator sagas ...``, ``events ...``, ``health`` and ``wait-ready``.

The base URL comes from ``--url``, else ``SAGA_ORCHESTRATOR_URL``, else the service's own
``HOST`` and ``PORT`` (a wildcard ``HOST`` meaning ``127.0.0.1``); the API key from
``--api-key``, else ``SAGA_ORCHESTRATOR_API_KEY``, else ``API_KEY`` (all read from the
environment over ``./.env``). ``--limit N`` is the number of items printed, however many pages
that takes. Exit codes: 0 ok, 1 the service failed or cannot be reached, 2 bad usage
(arguments, request, API key), 3 not found, 4 conflict, 5 ``--wait``: the saga ended without
completing, 6 ``--wait``: gave up waiting, 130 interrupted. ``docs/operations.md`` describes
them for script writers.

Layout: the library is :mod:`._saga_client` (the two clients), :mod:`._operations` (each API
call, written once for both), :mod:`._sending` (the retry policy), :mod:`._models` (typed
results), :mod:`._errors` and :mod:`._where` (where the service is, which key). The command
line is built on :class:`SyncSagaClient` and makes no request of its own: :mod:`._command`
(connection options, the client, errors to exit codes), :mod:`._paging`, :mod:`._output`; the
``sagas`` group in :mod:`._sagas` (reads, start, operator actions: one module each),
``events`` in :mod:`._events` and :mod:`._event_reads`, ``health`` and ``wait-ready`` in
:mod:`._ready`.
"""

from __future__ import annotations

import typing

from . import _events, _ready, _sagas
from ._command import API_KEY_ENVS as API_KEY_ENVS
from ._command import URL_ENV as URL_ENV
from ._command import api_key_of as api_key_of
from ._command import connection_options as _connection_options
from ._command import service_url as service_url
from ._errors import EXIT_CONFLICT as EXIT_CONFLICT
from ._errors import EXIT_ERROR as EXIT_ERROR
from ._errors import EXIT_INTERRUPTED as EXIT_INTERRUPTED
from ._errors import EXIT_NOT_COMPLETED as EXIT_NOT_COMPLETED
from ._errors import EXIT_NOT_FOUND as EXIT_NOT_FOUND
from ._errors import EXIT_OK as EXIT_OK
from ._errors import EXIT_USAGE as EXIT_USAGE
from ._errors import EXIT_WAIT_TIMEOUT as EXIT_WAIT_TIMEOUT
from ._errors import ClientError as ClientError
from ._errors import Conflict as Conflict
from ._errors import NotFound as NotFound
from ._errors import SagaNotCompleted as SagaNotCompleted
from ._errors import ServiceError as ServiceError
from ._errors import UsageError as UsageError
from ._errors import WaitTimedOut as WaitTimedOut
from ._models import ENDED as ENDED
from ._models import TERMINAL as TERMINAL
from ._models import Accepted as Accepted
from ._models import Event as Event
from ._models import EventTypes as EventTypes
from ._models import Page as Page
from ._models import Replayed as Replayed
from ._models import Saga as Saga
from ._models import SagaStep as SagaStep
from ._models import SagaSteps as SagaSteps
from ._models import SagaType as SagaType
from ._models import StepType as StepType
from ._models import TypeVersion as TypeVersion
from ._ready import wait_until_ready as wait_until_ready
from ._saga_client import SagaClient as SagaClient
from ._saga_client import SyncSagaClient as SyncSagaClient

__all__ = [
    "API_KEY_ENVS",
    "ENDED",
    "EXIT_CONFLICT",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_COMPLETED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "EXIT_WAIT_TIMEOUT",
    "TERMINAL",
    "URL_ENV",
    "Accepted",
    "ClientError",
    "Conflict",
    "Event",
    "EventTypes",
    "NotFound",
    "Page",
    "Replayed",
    "Saga",
    "SagaClient",
    "SagaNotCompleted",
    "SagaStep",
    "SagaSteps",
    "SagaType",
    "ServiceError",
    "StepType",
    "SyncSagaClient",
    "TypeVersion",
    "UsageError",
    "WaitTimedOut",
    "api_key_of",
    "register",
    "service_url",
    "wait_until_ready",
]


def register(commands: typing.Any) -> None:
    """Add the ``sagas`` and ``events`` command groups, ``health`` and ``wait-ready`` to
    ``commands`` (the subparsers of the ``saga-orchestrator`` parser). Each leaf command sets
    ``handler``: ``args -> exit code``."""
    common = _connection_options()
    _sagas.register(commands, common)
    _events.register(commands, common)
    _ready.register(commands, common)
