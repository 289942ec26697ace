"""The log: JSON lines and readable lines, the log context, and no secret in any line."""

from __future__ import annotations

import io
import json
import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import trio

from saga_orchestrator.config import Settings
from saga_orchestrator.devservices import DevState, Fault, HttpAnnouncer, serve_devservices
from saga_orchestrator.devservices._app import SERVICE_PATHS
from saga_orchestrator.logging_setup import (
    ContextFilter,
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    configure_logging,
    current_log_context,
    log_context,
    secret_values,
)
from tests.support.redis_server import kill, redis_server_binary, start_redis
from tests.support.server import (
    API_KEY,
    free_port,
    server_log,
    server_process,
    wait_ready,
    wait_terminal,
)

from .conftest import wait_live

# --- formatters and the context -------------------------------------------------------------


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger of its own whose handler has the service's filters."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter(["s3cret-key", "pg-pass"]))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"tests.ops.logging.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_message_and_the_ids(capture: Any) -> None:
    logger, stream, _ = capture
    logger.info("outside %s", "any context")
    with log_context(correlation_id="corr-1"):
        logger.warning("in a request")
        with log_context(saga_id="saga-1"):
            logger.error("about a saga: %d steps", 3)
        logger.info("back in the request")
    logger.info("explicit", extra={"saga_id": "saga-2"})
    outside, request, saga, back, explicit = _lines(stream)
    assert ["time", "level", "logger", "message", "saga_id", "correlation_id"] == list(outside)
    assert outside["time"].endswith("Z") and "T" in outside["time"]
    assert ("INFO", logger.name, "outside any context") == (
        outside["level"],
        outside["logger"],
        outside["message"],
    )
    assert (None, None) == (outside["saga_id"], outside["correlation_id"])
    assert (None, "corr-1") == (request["saga_id"], request["correlation_id"])
    assert ("ERROR", "about a saga: 3 steps") == (saga["level"], saga["message"])
    assert ("saga-1", "corr-1") == (saga["saga_id"], saga["correlation_id"])
    assert (None, "corr-1") == (back["saga_id"], back["correlation_id"])
    assert ("saga-2", None) == (explicit["saga_id"], explicit["correlation_id"])


def test_a_traceback_goes_in_exc(capture: Any) -> None:
    logger, stream, _ = capture
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("it failed")
    (line,) = _lines(stream)
    assert "it failed" == line["message"]
    assert "Traceback" in line["exc"] and "ValueError: boom" in line["exc"]


def test_text_lines_end_with_the_known_ids() -> None:
    formatter = TextFormatter()
    record = logging.LogRecord("svc", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    ContextFilter().filter(record)
    assert formatter.format(record).endswith(" INFO    svc: hello you")
    with log_context(saga_id="s-1", correlation_id="c-1"):
        record = logging.LogRecord("svc", logging.INFO, __file__, 1, "hello", (), None)
        ContextFilter().filter(record)
    assert formatter.format(record).endswith("svc: hello [saga_id=s-1 correlation_id=c-1]")


async def test_the_context_reaches_tasks_started_after_it_is_set() -> None:
    seen: list[dict[str, str | None]] = []

    async def child() -> None:
        seen.append(current_log_context())

    with log_context(saga_id="s-9", correlation_id="c-9"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
    assert [{"saga_id": "s-9", "correlation_id": "c-9"}] == seen
    assert {"saga_id": None, "correlation_id": None} == current_log_context()


# --- redaction ------------------------------------------------------------------------------


def test_secrets_are_masked_in_messages_arguments_and_tracebacks(capture: Any) -> None:
    logger, stream, _ = capture
    logger.info("key is s3cret-key")
    logger.info("settings: %r", {"api_key": "s3cret-key", "url": "postgresql://u:pg-pass@db/x"})
    logger.info("percent %s and %%", "pg-pass")
    try:
        raise RuntimeError("cannot connect with pg-pass")
    except RuntimeError:
        logger.exception("connect failed for %s", "s3cret-key")
    text = stream.getvalue()
    assert "s3cret-key" not in text and "pg-pass" not in text
    messages = [line["message"] for line in _lines(stream)]
    assert [
        "key is ***",
        "settings: {'api_key': '***', 'url': 'postgresql://u:***@db/x'}",
        "percent *** and %",
        "connect failed for ***",
    ] == messages
    assert "RuntimeError: cannot connect with ***" in _lines(stream)[-1]["exc"]


def test_secret_values_of_the_settings() -> None:
    settings = Settings(
        api_key="the-api-key",
        service_auth_token="the-token",
        redis_password="redis-pw",
        database_url="postgresql://app:p%40ss@db:5432/sagas?sslmode=require",
        redis_url="redis://:url-pw@cache:6379/0",
    )
    assert {"the-api-key", "the-token", "redis-pw", "p%40ss", "p@ss", "url-pw"} == set(
        secret_values(settings)
    )
    assert [] == secret_values(Settings())
    services = Settings(
        auth_service_url="http://svc:auth-pw@auth:8001",
        airtable_connector_url="https://c:conn-pw@connector/base",
    )
    assert {"auth-pw", "conn-pw"} == set(secret_values(services))
    named = Settings(api_keys="ops:ops-key-0123456789ab,ci:ci-key-0123456789abc:read")
    assert {"ops-key-0123456789ab", "ci-key-0123456789abc"} == set(secret_values(named))


def test_a_url_password_is_masked_whatever_logged_it(capture: Any) -> None:
    logger, stream, handler = capture
    handler.filters[-1] = RedactingFilter()  # no known secret: the URL's shape is enough
    logger.info('HTTP Request: POST http://user:pw-1@svc:8001/users "HTTP/1.1 200 OK"')
    logger.info("%s and %s", "redis://:pw-2@cache:6379/0", "postgresql://app:p@w-3@db/x")
    logger.info("kept: http://user@svc/x, http://svc:8001/x?a=b, mailto a@b")
    messages = [line["message"] for line in _lines(stream)]
    assert [
        'HTTP Request: POST http://user:***@svc:8001/users "HTTP/1.1 200 OK"',
        "redis://:***@cache:6379/0 and postgresql://app:***@db/x",
        "kept: http://user@svc/x, http://svc:8001/x?a=b, mailto a@b",
    ] == messages


def test_the_loggers_that_log_every_url_stay_quiet_at_debug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    root = logging.getLogger()
    level = root.level
    configure_logging("DEBUG", stream=io.StringIO(), secrets=[])
    try:
        for name in ("httpx", "httpcore", "httpcore.connection"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
        assert logging.getLogger("saga_orchestrator").isEnabledFor(logging.DEBUG)
    finally:
        handler = next(h for h in root.handlers if h.get_name() == "saga_orchestrator")
        root.removeHandler(handler)
        root.setLevel(level)


def test_configure_logging_takes_the_secrets_of_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("API_KEY", "env-key-0123")
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("INFO", json_lines=True, stream=stream)
    try:
        logging.getLogger("tests.ops.configured").warning("the key env-key-0123 leaked?")
    finally:
        handler = next(h for h in root.handlers if h.get_name() == "saga_orchestrator")
        root.removeHandler(handler)
        root.setLevel(level)
    (line,) = _lines(stream)
    assert "the key *** leaked?" == line["message"]


# --- the real server ------------------------------------------------------------------------

SERVICE_TOKEN = "svc-token-0123456789"
REDIS_PASSWORD = "redis-password-0123"
REDIS_URL_PASSWORD = "redis-url-password-0123"
SECRETS = (API_KEY, SERVICE_TOKEN, REDIS_PASSWORD, REDIS_URL_PASSWORD)


@pytest.mark.e2e
async def test_production_logs_are_json_with_ids_and_without_secrets(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PORT": str(port),
        "ENVIRONMENT": "production",
        "LOG_LEVEL": "DEBUG",  # Hypercorn's access log too: it shows query strings
        "SERVICE_AUTH_TOKEN": SERVICE_TOKEN,
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "REDIS_URL": f"redis://:{REDIS_URL_PASSWORD}@127.0.0.1:1/0",
    }
    async with (
        server_process(tmp_path, **env) as process,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}, timeout=5
        ) as client,
    ):
        await wait_live(port, process, tmp_path)
        started = await client.post(
            "/sagas/start",
            json={"saga_type": "test_two_steps", "data": {"name": "logged"}},
            headers={"X-Correlation-ID": "corr-ops-1"},
        )
        assert 202 == started.status_code
        assert "corr-ops-1" == started.headers["X-Correlation-ID"]
        saga_id = started.json()["saga_id"]
        shown = await client.get(f"/sagas/{saga_id}")
        generated = shown.headers["X-Correlation-ID"]
        assert generated and generated != "corr-ops-1"
        # Secrets where a careless caller could put them; the User-Agent is in the access log:
        for secret in SECRETS:
            await client.get(f"/sagas/?token={secret}", headers={"User-Agent": secret})
        forged = "x correlation_id=forged level=ERROR"  # not an id: replaced by a new one
        rejected = await client.get(
            "/sagas/", headers={"X-API-Key": "wrong", "X-Correlation-ID": forged}
        )
        assert 401 == rejected.status_code
        assert rejected.headers["X-Correlation-ID"] not in ("", forged)
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert 0 == await process.wait()
    text = server_log(tmp_path)
    for secret in SECRETS:
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    masked = [
        line
        for line in lines
        if '"GET /sagas/ 1.1" 400' in line["message"] and line["message"].endswith('"***"')
    ]
    assert len(SECRETS) == len(masked), text  # the User-Agent, masked
    about_start = [line for line in lines if line["correlation_id"] == "corr-ops-1"]
    assert about_start, text
    assert all(line["logger"] == "hypercorn.access" for line in about_start)
    assert any(line["saga_id"] == saga_id and line["correlation_id"] == generated for line in lines)
    assert {"saga orchestrator stopped"} <= {line["message"] for line in lines}


@pytest.mark.e2e
async def test_a_database_password_never_reaches_the_output(tmp_path: Path) -> None:
    password = "db-pass-0123456789"
    async with server_process(
        tmp_path, DATABASE_URL=f"postgresql://app:{password}@127.0.0.1:1/sagas"
    ) as process:
        # the service starts without its database and keeps trying: it says so, masked
        with trio.fail_after(20):
            while "the store still cannot be reached" not in server_log(tmp_path):
                assert process.returncode is None, server_log(tmp_path)
                await trio.sleep(0.1)
        process.terminate()
        with trio.fail_after(10):
            await process.wait()
    text = server_log(tmp_path)
    assert "PostgreSQL at 127.0.0.1:1/sagas is unreachable" in text
    assert password not in text


@pytest.mark.e2e
@pytest.mark.integration
async def test_no_url_password_reaches_the_log_at_debug(
    tmp_path: Path,
    nursery: trio.Nursery,
    make_pg_database: Callable[[], AbstractAsyncContextManager[str]],
) -> None:
    """Every URL setting holds a password (PostgreSQL with trust auth ignores it; the private
    Redis requires it; the stand-in ignores the basic auth the service URLs imply); sagas call
    every downstream service, one call fails and is retried; nothing of it is in the log."""
    binary = redis_server_binary()
    assert binary is not None, "no redis-server binary (install Redis or the dev extras)"
    redis_password, redis_port = "redis-url-pass-0123", free_port()
    (tmp_path / "redis").mkdir()
    redis = await trio.to_thread.run_sync(
        partial(start_redis, binary, redis_port, tmp_path / "redis", password=redis_password)
    )
    port = free_port()
    state = DevState(sync_delay=0.05)
    state.announcer = HttpAnnouncer(orchestrator_url=f"http://127.0.0.1:{port}", api_key=API_KEY)
    state.faults.add(Fault(operation="notification.send", status=503, retry_after=0))
    stand_in = await nursery.start(partial(serve_devservices, state, port=0))
    service_passwords = {name: f"svc-pass-{i}-0123" for i, name in enumerate(SERVICE_PATHS)}
    env = {
        name: f"http://svc-user:{service_passwords[name]}@127.0.0.1:{stand_in}{path}"
        for name, path in SERVICE_PATHS.items()
    }
    try:
        async with make_pg_database() as dsn:
            parts = urlsplit(dsn)
            db_password = parts.password or "db-url-pass-0123"  # trust auth: any will do
            user = parts.username or "postgres"
            netloc = f"{user}:{db_password}@{parts.hostname}:{parts.port or 5432}"
            env.update(
                PORT=str(port),
                LOG_LEVEL="DEBUG",
                DATABASE_URL=urlunsplit(parts._replace(netloc=netloc)),
                USE_REDIS_EVENT_BUS="true",
                REDIS_URL=f"redis://:{redis_password}@127.0.0.1:{redis_port}/0",
                SAGA_RETRY_BACKOFF_SECONDS="0.05",
                SAGA_RETRY_BACKOFF_MAX_SECONDS="0.2",
            )
            async with (
                server_process(tmp_path, **env) as process,
                httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": API_KEY}, timeout=5
                ) as client,
            ):
                await wait_ready(client)
                user_data = {"user_id": "u-log", "email": "log@example.com", "name": "Log"}
                airtable = {"user_id": "u-log", "workspace_id": "ws-log", "base_id": "appLog"}
                ids = []
                for saga_type, data in [
                    ("user_onboarding", user_data),
                    ("airtable_integration", airtable),
                ]:
                    started = await client.post(
                        "/sagas/start", json={"saga_type": saga_type, "data": data}
                    )
                    assert 202 == started.status_code, started.text
                    ids.append(started.json()["saga_id"])
                final = await wait_terminal(client, ids, within=30)
                assert {"completed"} == {saga["status"] for saga in final.values()}, final
                process.send_signal(signal.SIGTERM)
                with trio.fail_after(10):
                    await process.wait()
    finally:
        await trio.to_thread.run_sync(kill, redis)
    text = server_log(tmp_path)
    assert "notification.send" in text or "notification service" in text, text  # the retry
    assert " DEBUG " in text  # the log was at DEBUG
    for secret in [db_password, redis_password, *service_passwords.values()]:
        assert secret not in text, secret
