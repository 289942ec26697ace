"""The real service on a free loopback port, shared by the tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.live import LiveServer, live_server_thread
from tests.support.sagas import PARKS, SAGAS


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``run_service`` (Hypercorn, SQLite, the in-process bus) with the API key
    ``tests.support.server.API_KEY``, the test saga types and ``test_parks``; one compensation
    attempt and short backoffs."""
    with live_server_thread(
        tmp_path_factory.mktemp("live"),
        sagas=[*SAGAS, PARKS],
        compensation_retry_attempts=1,
        saga_retry_backoff_seconds=0.01,
        saga_retry_backoff_max_seconds=0.01,
    ) as server:
        yield server
