"""The command line's client: the library's :class:`SyncSagaClient` with raw JSON requests for
printing. Its errors are those of :mod:`._errors` (re-exported here)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import httpx

from . import _errors
from . import _operations as ops
from ._errors import *  # noqa: F403 (the command modules import the errors from here too)
from ._saga_client import SyncSagaClient

__all__ = ["ApiClient", *_errors.__all__]


class ApiClient:
    """The REST API at ``base_url`` for the command line: requests answered with their decoded
    JSON, sent by the library's client (:attr:`sagas`: its pool, its retries, its errors),
    whose typed methods the commands use too. The API key is sent as ``X-API-Key`` and
    appears in no message this class makes."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.sagas = SyncSagaClient(base_url, api_key=api_key or "", timeout=timeout,
                                    retries=retries, transport=transport)  # fmt: skip
        self.base_url = self.sagas.base_url

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sagas.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        also_ok: Collection[int] = (),
    ) -> Any:
        """Send one request; raises :class:`ClientError` unless the answer is a 2xx (or its
        status is in ``also_ok``: a body that says something, such as ``/health``'s 503)."""
        return self.sagas._run(ops.raw(method, path, body=body, params=params, accept=also_ok))

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body)
