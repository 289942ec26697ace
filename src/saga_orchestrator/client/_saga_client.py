"""``SagaClient`` (async: trio or asyncio) and ``SyncSagaClient``: the service's API for other
services, over one reused httpx connection pool.

    async with SagaClient("http://orchestrator:8008") as sagas:  # key: SAGA_ORCHESTRATOR_API_KEY
        saga = await sagas.start("user_onboarding", {"user_id": "u-1", ...})
        done = await sagas.wait(saga.saga_id, timeout=60)

Both run the operations of :mod:`._operations`; errors are the :class:`~._errors.ClientError`
family (``NotFound``, ``Conflict``, ``UsageError``, ``ServiceError``, ``WaitTimedOut``), each
with the answer's ``status`` and the API's ``code``.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx

from saga_orchestrator import __version__

from . import _operations as ops
from ._errors import API_KEY_HEADER, ClientError
from ._models import Saga
from ._operations import Call, Operation, Pause
from ._sending import Retry, settle
from ._where import api_key_of, service_url

__all__ = ["SagaClient", "SyncSagaClient"]

PAGE = 100


class _Base:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: Any = None,
        on_retry: Callable[[ClientError, float], None] | None = None,
    ) -> None:
        self.base_url = (base_url or service_url(os.environ)).rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.on_retry = on_retry
        key = api_key if api_key is not None else api_key_of(os.environ)
        self._headers = {"User-Agent": f"saga-orchestrator-client/{__version__}"}
        if key:
            self._headers[API_KEY_HEADER] = key
        self._http = self._pool(transport)

    def _pool(self, transport: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.base_url!r})"

    def _settle(self, call: Call, outcome: httpx.Response | httpx.HTTPError, attempt: int) -> Any:
        verdict = settle(call, outcome, attempt, retries=self.retries, backoff=self.backoff,
                         base_url=self.base_url)  # fmt: skip
        if isinstance(verdict, Retry) and self.on_retry is not None:
            self.on_retry(verdict.error, verdict.after)
        return verdict

    def _request(self, call: Call) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": call.path,
            "params": call.params,
            "json": call.body,
            "timeout": call.timeout if call.timeout is not None else self.timeout,
        }


def _async(operation: Callable[..., Operation]) -> Any:
    @functools.wraps(operation)
    async def method(self: SagaClient, *args: Any, **kwargs: Any) -> Any:
        return await self._run(operation(*args, **kwargs))

    return method


def _sync(operation: Callable[..., Operation]) -> Any:
    @functools.wraps(operation)
    def method(self: SyncSagaClient, *args: Any, **kwargs: Any) -> Any:
        return self._run(operation(*args, **kwargs))

    return method


class SagaClient(_Base):
    """The API, async (trio or asyncio). Use it as ``async with``, or call :meth:`aclose`.

    Args:
        base_url: the service; default ``SAGA_ORCHESTRATOR_URL``, else ``HOST``/``PORT``.
        api_key: default ``SAGA_ORCHESTRATOR_API_KEY``, else ``API_KEY``.
        timeout: seconds per request.
        retries: how often a request that may safely be sent again is (see ``_sending``).
        backoff: the first retry's delay in seconds, doubling, at most 5 s.
        transport: an httpx transport (tests: ``httpx.ASGITransport`` or a mock).
        on_retry: called with the error and the seconds until the request is sent again,
            before each retry (to say so, or log it).
    """

    def _pool(self, transport: httpx.AsyncBaseTransport | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                 transport=transport)  # fmt: skip

    async def __aenter__(self) -> SagaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, operation: Operation) -> Any:
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = operation.throw(error) if error is not None else operation.send(answer)
            except StopIteration as done:
                return done.value
            answer, error = None, None
            if isinstance(step, Pause):
                await anyio.sleep(step.seconds)
                continue
            try:
                answer = await self._send(step)
            except Exception as exc:  # handed to the operation, which may handle it
                error = exc

    async def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome: httpx.Response | httpx.HTTPError = await self._http.request(
                    **self._request(call)
                )
            except httpx.HTTPError as exc:
                outcome = exc
            verdict = self._settle(call, outcome, attempt)
            if not isinstance(verdict, Retry):
                return verdict.value
            await anyio.sleep(verdict.after)

    start = _async(ops.start)
    get = _async(ops.get)
    steps = _async(ops.steps)
    history = _async(ops.history)
    cancel = _async(ops.cancel)
    wait = _async(ops.wait)
    publish = _async(ops.publish)
    health = _async(ops.health)
    retry = _async(ops.retry)
    resolve = _async(ops.resolve)
    skip_compensation = _async(ops.skip_compensation)
    resume = _async(ops.resume)
    list_page = _async(ops.list_page)
    history_page = _async(ops.history_page)
    saga_types = _async(ops.saga_types)
    read_stream = _async(ops.read_stream)
    read_all = _async(ops.read_all)
    event_types = _async(ops.event_types)
    replay_stream = _async(ops.replay_stream)
    replay_range = _async(ops.replay_range)

    async def list(self, *, limit: int | None = None, **filters: Any) -> AsyncIterator[Saga]:
        """Sagas newest first, every page (or ``limit`` in all); ``filters`` are the query
        parameters of ``GET /sagas/`` (``status``, ``saga_type``, ``saga_version``,
        ``active=True``, ``created_after``, …)."""
        cursor, left = None, limit
        while left is None or left > 0:
            page = min(PAGE, left) if left is not None else PAGE
            found = await self._run(ops.list_page(cursor=cursor, limit=page, **filters))
            for saga in found.items:
                yield saga
            left = None if left is None else left - len(found.items)
            cursor = found.next
            if cursor is None:
                return


class SyncSagaClient(_Base):
    """The API, blocking: the same methods as :class:`SagaClient`, for scripts and threads.
    Use it as ``with``, or call :meth:`close`."""

    def _pool(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self._headers, transport=transport)

    def __enter__(self) -> SyncSagaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, operation: Operation) -> Any:
        answer: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = operation.throw(error) if error is not None else operation.send(answer)
            except StopIteration as done:
                return done.value
            answer, error = None, None
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                continue
            try:
                answer = self._send(step)
            except Exception as exc:  # handed to the operation, which may handle it
                error = exc

    def _send(self, call: Call) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome: httpx.Response | httpx.HTTPError = self._http.request(
                    **self._request(call)
                )
            except httpx.HTTPError as exc:
                outcome = exc
            verdict = self._settle(call, outcome, attempt)
            if not isinstance(verdict, Retry):
                return verdict.value
            time.sleep(verdict.after)

    start = _sync(ops.start)
    get = _sync(ops.get)
    steps = _sync(ops.steps)
    history = _sync(ops.history)
    cancel = _sync(ops.cancel)
    wait = _sync(ops.wait)
    publish = _sync(ops.publish)
    health = _sync(ops.health)
    retry = _sync(ops.retry)
    resolve = _sync(ops.resolve)
    skip_compensation = _sync(ops.skip_compensation)
    resume = _sync(ops.resume)
    list_page = _sync(ops.list_page)
    history_page = _sync(ops.history_page)
    saga_types = _sync(ops.saga_types)
    read_stream = _sync(ops.read_stream)
    read_all = _sync(ops.read_all)
    event_types = _sync(ops.event_types)
    replay_stream = _sync(ops.replay_stream)
    replay_range = _sync(ops.replay_range)

    def list(self, *, limit: int | None = None, **filters: Any) -> Iterator[Saga]:
        """Sagas newest first, every page (or ``limit`` in all); see :meth:`SagaClient.list`."""
        cursor, left = None, limit
        while left is None or left > 0:
            page = min(PAGE, left) if left is not None else PAGE
            found = self._run(ops.list_page(cursor=cursor, limit=page, **filters))
            yield from found.items
            left = None if left is None else left - len(found.items)
            cursor = found.next
            if cursor is None:
                return
