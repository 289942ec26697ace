"""Property-based tests of the running server against its own OpenAPI document (schemathesis).

The real service runs in a thread on a free loopback port (``live``, in conftest); schemathesis
reads its ``/openapi.json`` and sends generated requests, valid and invalid, to every operation:
once with the API key, once without. Every answer must be documented (status, content type,
headers and body schema), none may be a 5xx, and none may show a stack trace.

Bounded and deterministic: few examples per operation, derandomized, no example database.
Checks left out and why:

* ``positive_data_acceptance``: a body can fit the schema and still be refused for reasons a
  JSON schema does not say (an unknown saga type, input that fails its type's schema, a replay
  giving both or neither of ``stream_id`` and ``after_position``): those are documented 422s.
* ``use_after_free``, ``ensure_resource_availability``, ``ignored_auth``,
  ``object_level_authorization``: stateful or multi-user checks beyond this suite (auth has
  tests of its own in ``test_auth.py``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.support.live import LiveServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
]
LEAKS = ("Traceback (most recent call last)", 'File "/', "site-packages", "saga_orchestrator/")


def no_stack_trace(ctx: CheckContext, response: schemathesis.Response, case: Any) -> bool | None:
    """No answer shows a traceback or the service's source paths."""
    text = response.text or ""
    leaked = [marker for marker in LEAKS if marker in text and "/openapi.json" not in case.path]
    if leaked:
        raise AssertionError(f"the response leaks internals ({leaked}): {text[:500]}")
    return None


@pytest.fixture(scope="module")
def api_schema(live: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10"))
"""Examples per operation and mode; set ``SCHEMATHESIS_MAX_EXAMPLES`` for a longer run by hand."""

BOUNDS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def negatable(api_schema: Any, method: str, path: str) -> bool:
    """Whether an operation takes anything that can be made invalid (a path or query parameter,
    a body); the ``X-Correlation-ID`` header takes any string."""
    spec = api_schema.raw_schema["paths"][path][method.lower()]
    return "requestBody" in spec or any(p["in"] in ("path", "query") for p in spec["parameters"])


def check_every_operation(api_schema: Any, live: LiveServer, headers: dict[str, str]) -> None:
    """Valid and invalid requests to each operation; every failure is reported at the end."""
    failures: list[str] = []
    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        modes = [GenerationMode.POSITIVE]
        if negatable(api_schema, operation.method, operation.path):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @BOUNDS
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=live.url,
                    headers=headers,
                    checks=CHECKS,
                    additional_checks=[no_stack_trace],
                    timeout=10,
                )

            try:
                run()
            except Exception as exc:  # collected: one report for every operation
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    documented = [
        f"{method.upper()} {path}"
        for path, item in api_schema.raw_schema["paths"].items()
        for method in item
        if path != "/openapi.json"  # schemathesis leaves the document itself out
    ]
    assert sorted(documented) == sorted(labels)
    assert [] == failures, "\n\n".join(failures)


def test_with_the_key(api_schema: Any, live: LiveServer) -> None:
    check_every_operation(api_schema, live, live.key_headers)


def test_without_the_key(api_schema: Any, live: LiveServer) -> None:
    check_every_operation(api_schema, live, {})
