"""API-key authentication over a real server: no key, a wrong key, the right key in either
header; the health, metrics and documentation routes stay open. And the development rule: an
API without its key listens on loopback only."""

from __future__ import annotations

import logging

import pytest

from saga_orchestrator.config import Settings
from saga_orchestrator.http.auth import bearer_token, key_matches, log_auth_mode
from saga_orchestrator.service import hypercorn_config
from tests.support.live import LiveServer

PROTECTED = [
    ("GET", "/sagas/"),
    ("GET", "/sagas/types/available"),
    ("POST", "/sagas/start"),
    ("GET", "/sagas/00000000-0000-0000-0000-000000000000"),
    ("POST", "/sagas/00000000-0000-0000-0000-000000000000/cancel"),
    ("GET", "/events/all"),
    ("GET", "/events/types"),
    ("POST", "/events/publish"),
    ("GET", "/nowhere"),  # an unknown route does not tell that it is unknown
]
PUBLIC = ["/health", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs"]


def wrong_keys(key: str) -> list[dict[str, str]]:
    return [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "wrong"},
        {"X-API-Key": key + "x"},
        {"X-API-Key": key[:-1]},
        {"X-API-Key": key.upper()},
        {"Authorization": f"Basic {key}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {key[:-1]}"},
        {"Authorization": key},
    ]


async def test_no_key_or_a_wrong_key_is_401(live: LiveServer) -> None:
    assert live.api_key is not None
    async with live.client(key=False) as client:
        for headers in wrong_keys(live.api_key):
            for method, path in PROTECTED:
                response = await client.request(method, path, headers=headers)
                assert 401 == response.status_code, (headers, method, path, response.text)
                error = response.json()["error"]
                assert ("unauthorized", []) == (error["code"], error["details"])
                assert "X-API-Key" in error["message"] and "Bearer" in error["message"]
                assert live.api_key not in response.text
                assert response.headers["X-Correlation-ID"]


@pytest.mark.parametrize(
    "style", ["X-API-Key", "Bearer", "bearer", "Bearer, padded", "Bearer with a wrong X-API-Key"]
)
async def test_the_right_key_in_either_header(live: LiveServer, style: str) -> None:
    key = live.api_key
    headers = {
        "X-API-Key": {"X-API-Key": key},
        "Bearer": {"Authorization": f"Bearer {key}"},
        "bearer": {"Authorization": f"bearer {key}"},
        "Bearer, padded": {"Authorization": f"Bearer   {key}"},
        "Bearer with a wrong X-API-Key": {"Authorization": f"Bearer {key}", "X-API-Key": "no"},
    }[style]
    async with live.client(key=False, headers=headers) as client:
        assert 200 == (await client.get("/sagas/")).status_code
        assert 404 == (await client.get("/nowhere")).status_code


async def test_health_metrics_and_documentation_are_open(live: LiveServer) -> None:
    async with live.client(key=False) as client:
        for path in PUBLIC:
            for headers in ({}, {"X-API-Key": "wrong"}):
                response = await client.get(path, headers=headers)
                assert 200 == response.status_code, (path, response.text)
        # A wrong method on an open route is told as such, not as 401.
        response = await client.post("/health/live")
        assert 405 == response.status_code
        assert "GET" in response.headers["Allow"]


def test_keys_are_compared_whole() -> None:
    assert key_matches("s3cret", "s3cret")
    for given in (None, "", "s3cre", "s3cret ", "S3CRET", "s3cret\x00"):
        assert not key_matches(given, "s3cret")
    assert key_matches("\udcff", "\udcff")  # a header decoded with surrogateescape


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("Bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert token == bearer_token(header)


# --- without a key: loopback only -----------------------------------------------------------


def test_without_the_required_key_the_api_listens_on_loopback_only() -> None:
    settings = Settings(environment="development", host="0.0.0.0", port=8008)
    assert ["127.0.0.1:8008"] == hypercorn_config(settings).bind
    keyed = Settings(environment="development", host="0.0.0.0", port=8008, api_key="k")
    assert ["0.0.0.0:8008"] == hypercorn_config(keyed).bind
    fronted = Settings(environment="development", host="::", port=8008, require_api_key=False)
    assert ["[::]:8008"] == hypercorn_config(fronted).bind


def test_start_up_says_how_callers_are_authenticated(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="saga_orchestrator.http.auth"):
        log_auth_mode(Settings(environment="development"))
        log_auth_mode(Settings(api_key="k"))
        log_auth_mode(Settings(require_api_key=False))
    loud, keyed, fronted = caplog.records
    assert logging.WARNING == loud.levelno
    assert "listens on 127.0.0.1 only" in loud.getMessage()
    assert "HOST=0.0.0.0 ignored" in loud.getMessage()
    assert "API key authentication is on" in keyed.getMessage()
    assert "REQUIRE_API_KEY=false" in fronted.getMessage()
