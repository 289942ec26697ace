"""Property-based tests of the real server against its own OpenAPI document (schemathesis).

The service runs (Hypercorn on a free loopback port) on PostgreSQL, the strictest store: a
text it cannot keep (a NUL character in a path or a query) would be a 500 there and nowhere
else. Schemathesis reads ``/openapi.json`` and generates requests, valid and invalid, for every
operation, once with the API key, once without: first the cases of its coverage phase (each
parameter and field at its bounds and past them, each value its pattern refuses: a NUL in a
query parameter), then :data:`MAX_EXAMPLES` generated ones per operation and mode (valid,
invalid). Every check it has runs on every answer (no
5xx, every answer documented: status, content type, headers, body schema; invalid requests
refused; valid ones accepted; the key really required; ...) plus one of ours: no stack trace.

One check is narrowed: a request that fits the schema must be accepted, except where
acceptance depends on a rule the schema cannot state (:data:`BEYOND_THE_SCHEMA`: a saga type's
input, the two forms of a replay, an opaque cursor or a time, a stream of saga transitions);
there only a 400 or 422 that names a field of that rule is allowed.

The requests go out over ONE ``requests`` session, so connections are reused the way clients
reuse them, and are sent here rather than by schemathesis (which sends a request again when
its connection was dropped): a network error (a connection the server dropped, or left open
without an answer) fails the run like a wrong answer.

Bounded and deterministic: the coverage cases are fixed, the generated ones derandomized, no
example database; ``SCHEMATHESIS_MAX_EXAMPLES`` sets the generated examples per operation and
mode (default :data:`MAX_EXAMPLES`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, CheckContext
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.overrides import Override
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.live import open_live_server

LEAKS = ("Traceback (most recent call last)", 'File "/', "site-packages", "saga_orchestrator/")
REQUEST_TIMEOUT = 5.0
"""Seconds a request may take; beyond, the connection is taken to hang."""

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
"""Generated examples per operation and mode, after the coverage cases."""

BOUNDS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def no_stack_trace(ctx: CheckContext, response: schemathesis.Response, case: Any) -> bool | None:
    """No answer shows a traceback or the service's source paths."""
    text = response.text or ""
    leaked = [marker for marker in LEAKS if marker in text and "/openapi.json" not in case.path]
    if leaked:
        raise AssertionError(f"the response leaks internals ({leaked}): {text[:500]}")
    return None


BEYOND_THE_SCHEMA: dict[str, tuple[int, tuple[str, ...]]] = {
    "POST /sagas/start": (422, ("saga_type", "data", "version")),  # known; its input fits it
    "GET /sagas/": (
        400,
        ("created_after", "created_before", "updated_after", "updated_before", "cursor", "active"),
    ),  # times; ours only; `active` with statuses of the other kind
    "POST /events/publish": (422, ("stream_id",)),  # not a stream of saga transitions
    "POST /events/replay": (
        422,
        ("body", "stream_id", "from_version", "after_position", "to_position", "event_type"),
    ),  # one of two forms, not a stream of saga transitions
    "POST /events/replay/{stream_id}": (422, ("stream_id",)),
}
"""Operation -> the status and the fields of the rules a JSON schema does not state."""


def positive_data_accepted(
    ctx: CheckContext, response: schemathesis.Response, case: Any
) -> bool | None:
    """``positive_data_acceptance``, but for :data:`BEYOND_THE_SCHEMA`."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        status, names = BEYOND_THE_SCHEMA.get(case.operation.label, (0, ()))
        if response.status_code != status:
            raise
        details = (response.json().get("error") or {}).get("details") or [{"field": ""}]
        fields = [str(detail.get("field", "")) for detail in details]
        if not all(f in names or f.split(".")[0] in names for f in fields):
            raise
        return None


def negatable(api_schema: Any, method: str, path: str) -> bool:
    """Whether an operation takes anything that can be made invalid (a path or query parameter,
    a body); the ``X-Correlation-ID`` header takes any string."""
    spec = api_schema.raw_schema["paths"][path][method.lower()]
    return "requestBody" in spec or any(p["in"] in ("path", "query") for p in spec["parameters"])


def send(
    session: requests.Session, case: schemathesis.Case, url: str, headers: dict[str, str]
) -> requests.Response:
    """Send ``case`` over ``session``; a network error is a failure of the run."""
    kwargs = case.as_transport_kwargs(base_url=url, headers=headers)
    try:
        return session.request(**kwargs, timeout=REQUEST_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        raise AssertionError(
            f"network error on a reused connection: {type(exc).__name__}: {exc}\n"
            f"{case.as_curl_command(headers=headers)}"
        ) from None


def _describe(error: BaseException) -> str:
    """An error with the errors inside it (Hypothesis wraps a flaky failure in a group)."""
    inner = getattr(error, "exceptions", ())
    return "\n".join([str(error), *(f"  {_describe(e)}" for e in inner)])


def coverage_cases(api_schema: Any, operation: Any) -> list[schemathesis.Case]:
    """The cases of schemathesis's coverage phase for ``operation`` (as its own runner makes
    them: ``schemathesis.generation.drivers`` is not a documented API)."""
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=api_schema.config.generation_for(operation=operation, phase="coverage"),
        auth_storage=None,
        override=Override(),
        feedback=FeedbackSources(),
    )
    return list(generator)


def check_every_operation(url: str, headers: dict[str, str]) -> None:
    """The coverage cases and generated requests of each operation; every failure is reported
    at the end (the first of each operation and phase)."""
    api_schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    checks = [
        positive_data_accepted if c is positive_data_acceptance else c for c in CHECKS.get_all()
    ]
    failures: list[str] = []
    labels = []
    with requests.Session() as session:

        def check(case: schemathesis.Case) -> None:
            response = send(session, case, url, headers)
            case.validate_response(
                response,
                checks=checks,
                additional_checks=[no_stack_trace],
                headers=headers,
                transport_kwargs={"base_url": url, "headers": headers},
            )

        for result in api_schema.get_all_operations():
            operation = result.ok()
            labels.append(operation.label)
            try:
                for case in coverage_cases(api_schema, operation):
                    check(case)
            except (Exception, BaseExceptionGroup) as exc:  # one report for every operation
                failures.append(f"{operation.label} (coverage): {_describe(exc)}")
            modes = [GenerationMode.POSITIVE]
            if negatable(api_schema, operation.method, operation.path):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                run = BOUNDS(given(case=operation.as_strategy(generation_mode=mode))(check))
                try:
                    run()
                except (Exception, BaseExceptionGroup) as exc:
                    failures.append(f"{operation.label} ({mode.value}): {_describe(exc)}")
    documented = [
        f"{method.upper()} {path}"
        for path, item in api_schema.raw_schema["paths"].items()
        for method in item
        if path != "/openapi.json"  # schemathesis leaves the document itself out
    ]
    assert sorted(documented) == sorted(labels)
    assert [] == failures, "\n\n".join(failures)


async def check_live(tmp_path: Path, pg_dsn: str, *, key: bool) -> None:
    async with open_live_server(tmp_path, database_url=pg_dsn) as live:
        headers = live.key_headers if key else {}
        await trio.to_thread.run_sync(check_every_operation, live.url, headers)


@pytest.mark.integration
async def test_with_the_key(tmp_path: Path, pg_dsn: str) -> None:
    await check_live(tmp_path, pg_dsn, key=True)


@pytest.mark.integration
async def test_without_the_key(tmp_path: Path, pg_dsn: str) -> None:
    await check_live(tmp_path, pg_dsn, key=False)
