"""The client library's retries: what is sent again (and under which key), what is not, and
how long it waits first; and its wait on a service without long polls. A scripted transport,
in virtual time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

from saga_orchestrator.client import ClientError, SagaClient, ServiceError

SAGA_ID = "7d9f1c0e-5d7e-4c1e-9a8a-0b6c2f7d1e11"


def saga(status: str = "running", version: int = 2, **extra: Any) -> dict[str, Any]:
    return {"saga_id": SAGA_ID, "saga_type": "t", "status": status, "version": version, **extra}


def error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    body = {"error": {"code": code, "message": code}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers requests in turn from a list of responses or exceptions; records each request
    with the virtual time it came."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[], httpx.Response]):
        self.answers = list(answers)
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((trio.current_time(), request))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, httpx.Response) else answer()

    def client(self, **options: Any) -> SagaClient:
        return SagaClient("http://svc", api_key="k", transport=httpx.MockTransport(self),
                          **options)  # fmt: skip

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for _, r in self.requests]


async def test_a_start_whose_answer_was_lost_is_sent_again_under_the_same_key(autojump_clock):
    script = Script(
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("lost"),
        httpx.Response(202, json=saga(created=True)),
    )
    async with script.client() as sagas:
        started = await sagas.start("t", {"a": 1})
    keys = {body["idempotency_key"] for body in script.bodies()}
    assert (3, 1, SAGA_ID) == (len(script.requests), len(keys), started.saga_id)
    [(t1, _), (t2, _), (t3, _)] = script.requests
    assert (0.2, 0.4) == (pytest.approx(t2 - t1), pytest.approx(t3 - t2))  # backoff doubles


async def test_on_retry_hears_of_each_retry_before_it_is_sent(autojump_clock):
    script = Script(
        error(503, "overloaded", retry_after="3"),
        httpx.ConnectError("refused"),
        httpx.Response(202, json=saga(created=True)),
    )
    heard: list[tuple[int | None, float, float]] = []

    def on_retry(failure: ClientError, seconds: float) -> None:
        heard.append((failure.status, seconds, trio.current_time()))

    async with script.client(on_retry=on_retry) as sagas:
        await sagas.start("t", {})
    [(t1, _), (t2, _), _] = script.requests
    assert [(503, 3.0, t1), (None, 0.4, t2)] == [
        (status, pytest.approx(seconds), pytest.approx(at)) for status, seconds, at in heard
    ]


async def test_a_cancel_whose_answer_was_lost_is_not_sent_again(autojump_clock):
    script = Script(httpx.ReadTimeout("lost"))
    async with script.client() as sagas:
        with pytest.raises(ServiceError, match="did not answer POST"):
            await sagas.cancel(SAGA_ID)
    assert 1 == len(script.requests)


async def test_a_cancel_refused_as_overloaded_is_sent_again_after_retry_after(autojump_clock):
    script = Script(
        error(503, "overloaded", retry_after="3"),
        httpx.Response(202, json={"saga_id": SAGA_ID, "status": "compensating"}),
    )
    async with script.client() as sagas:
        accepted = await sagas.cancel(SAGA_ID, reason="r")
    [(t1, _), (t2, _)] = script.requests
    assert ("compensating", 3.0) == (accepted.status, pytest.approx(t2 - t1))


async def test_a_cancel_that_timed_out_at_the_service_is_not_sent_again(autojump_clock):
    script = Script(error(503, "timeout"))
    async with script.client() as sagas:
        with pytest.raises(ServiceError) as failed:
            await sagas.cancel(SAGA_ID)
    assert (1, 503, "timeout") == (len(script.requests), failed.value.status, failed.value.code)


async def test_retries_end_with_the_last_error(autojump_clock):
    script = Script(*[error(503, "unavailable") for _ in range(4)])
    async with script.client() as sagas:
        with pytest.raises(ServiceError) as failed:
            await sagas.get(SAGA_ID)
    assert (4, 503) == (len(script.requests), failed.value.status)


async def test_a_wait_on_a_service_without_long_polls_polls_with_backoff(autojump_clock):
    script = Script(
        httpx.Response(200, json=saga()),
        error(404, "not_found"),  # no /wait route
        httpx.Response(200, json=saga(version=3)),
        httpx.Response(200, json=saga(version=4)),
        httpx.Response(200, json=saga("completed", version=5)),
    )
    async with script.client() as sagas:
        done = await sagas.wait(SAGA_ID, timeout=60)
    paths = [r.url.path.rsplit("/", 1)[-1] for _, r in script.requests]
    assert ("completed", [SAGA_ID, "wait", SAGA_ID, SAGA_ID, SAGA_ID]) == (done.status, paths)
    times = [t for t, _ in script.requests]
    gaps = [times[i + 1] - times[i] for i in (1, 2, 3)]
    assert [0.1, 0.2, 0.4] == [pytest.approx(gap) for gap in gaps]
