"""The dashboard end to end: the real service and headless Chromium (one of each for the
module). Screenshots of each page at 1280 and 375 px go to ``artifacts/screenshots/``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from saga_orchestrator.coordinator.definition import RetryPolicy, SagaDefinition, Step, StepContext
from tests.support.browser import chromium, screenshot, wait_until
from tests.support.live import LiveServer, live_server_thread
from tests.support.sagas import PARKS, SAGAS, ParkInput

pytestmark = pytest.mark.e2e


_failed_once: set[str] = set()


async def _reserve_second_time(ctx: StepContext) -> dict[str, Any]:
    if ctx.saga_id not in _failed_once:
        _failed_once.add(ctx.saga_id)
        raise RuntimeError("the stock service is busy")  # retried after a backoff
    return {"reserved": ctx.input.name}


async def _undo(ctx: StepContext) -> None:
    return None


async def _charge_slowly(ctx: StepContext) -> None:
    await trio.sleep(30)  # past its timeout: whether it charged is not known


IN_DOUBT = SagaDefinition(
    name="test_in_doubt",
    version=1,
    input_type=ParkInput,
    description="Its first step completes at its second attempt; its second step times out "
    "(in doubt) and its compensation cannot safely run, so the saga parks until an operator says "
    "whether the charge was applied.",
    steps=[
        Step(
            name="reserve",
            action=_reserve_second_time,
            compensation=_undo,
            retry=RetryPolicy(max_attempts=2, initial_backoff=0.2),
        ),
        Step(name="charge", action=_charge_slowly, compensation=_undo, timeout=0.3),
    ],
)
READER_KEY = "reader-0123456789abcdef"
SECRET = "s" * 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server_thread(
        tmp_path_factory.mktemp("ui"),
        sagas=[*SAGAS, PARKS, IN_DOUBT],
        api_keys=f"reader:{READER_KEY}:read",
        secret_key=SECRET,
        compensation_retry_attempts=1,
        saga_retry_backoff_seconds=0.01,
        saga_retry_backoff_max_seconds=0.01,
    ) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def start(server: LiveServer, saga_type: str, data: dict[str, Any]) -> str:
    with httpx.Client(base_url=server.url, headers=server.key_headers, timeout=10) as client:
        answer = client.post("/sagas/start", json={"saga_type": saga_type, "data": data})
        assert answer.status_code == 202, answer.text
        return answer.json()["saga_id"]


def sign_in(browser: Any, server: LiveServer, key: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{server.url}/ui/login")
    browser.find_element("id", "api_key").send_keys(key)
    browser.find_element("css selector", "form button[type=submit]").click()
    wait_until(browser, lambda d: d.current_url.rstrip("/").endswith("/ui"))


def status_of(browser: Any) -> str:
    return browser.find_element("id", "saga-status").get_attribute("data-status")


def caught_up(browser: Any) -> None:
    """Wait until the page has caught up with the live stream once (it then changes only on
    a transition)."""
    wait_until(
        browser, lambda d: d.find_element("tag name", "body").get_attribute("data-refreshed")
    )


def act(browser: Any, action: str, reason: str) -> None:
    caught_up(browser)
    form = browser.find_element("css selector", f"form[action$='/{action}']")
    form.find_element("name", "reason").send_keys(reason)
    form.find_element("name", "confirm").click()
    form.find_element("css selector", "button[type=submit]").click()
    wait_until(browser, lambda d: d.switch_to.alert).accept()  # the confirmation dialog


def test_a_page_without_the_session_cookie_redirects_to_sign_in(
    server: LiveServer, browser: Any
) -> None:
    browser.delete_all_cookies()
    saga_id = str(uuid.uuid4())
    browser.get(f"{server.url}/ui/sagas/{saga_id}")
    assert f"/ui/login?next=/ui/sagas/{saga_id}" in browser.current_url
    assert browser.find_element("id", "api_key").get_attribute("type") == "password"
    for width in (1280, 375):
        screenshot(browser, "login", width)
    browser.set_window_size(1280, 900)


def test_signed_in_a_saga_is_seen_completing_without_a_reload(
    server: LiveServer, browser: Any
) -> None:
    sign_in(browser, server, server.api_key or "")
    cookie = browser.get_cookie("saga_ui")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    saga_id = start(server, "test_slow", {"seconds": 1.5})
    browser.get(f"{server.url}/ui/sagas/{saga_id}")
    assert status_of(browser) in ("pending", "running")
    browser.execute_script("window.notReloaded = true")
    wait_until(browser, lambda d: status_of(d) == "completed")
    assert browser.execute_script("return window.notReloaded") is True
    history = browser.find_element("css selector", "table.history").text
    assert "SagaCompleted" in history and "wait" in history
    bars = browser.find_elements("css selector", "svg.timeline .bar.b-attempt")
    assert 2 == len(bars)
    browser.execute_script("arguments[0].focus()", bars[1])  # bars are in the tab order
    info = browser.find_element("id", "bar-info").text
    assert info.startswith("wait: attempt 1 — completed; start ") and info.endswith(" ms")
    for width in (1280, 375):
        screenshot(browser, "saga", width)


def test_a_saga_cancelled_from_its_page_compensates(server: LiveServer, browser: Any) -> None:
    sign_in(browser, server, server.api_key or "")
    saga_id = start(server, "test_slow", {"seconds": 60})
    browser.get(f"{server.url}/ui/sagas/{saga_id}")
    wait_until(browser, lambda d: status_of(d) == "running")
    act(browser, "cancel", "wrong customer")
    notice = wait_until(browser, lambda d: d.find_elements("css selector", ".alert.ok"))
    assert "cancel: accepted" in notice[0].text
    wait_until(browser, lambda d: status_of(d) == "cancelled")
    assert "wrong customer" in browser.find_element("css selector", "table.history").text


def test_a_parked_saga_is_retried_from_its_page(server: LiveServer, browser: Any) -> None:
    sign_in(browser, server, server.api_key or "")
    saga_id = start(server, "test_parks", {})
    browser.get(f"{server.url}/ui/sagas/{saga_id}")
    wait_until(browser, lambda d: status_of(d) == "compensation_failed")
    browser.refresh()  # the actions of a parked saga
    unlabelled = browser.execute_script(
        "return Array.from(document.querySelectorAll("
        "'input:not([type=hidden]), select, textarea'))"
        ".filter(e => !(e.labels && e.labels.length)).map(e => e.name)"
    )
    assert [] == unlabelled
    for width in (1280, 375):
        screenshot(browser, "saga-parked", width)
    act(browser, "retry", "the release works now")
    wait_until(browser, lambda d: status_of(d) == "compensated")
    history = browser.find_element("css selector", "table.history").text
    assert "OperatorRetried" in history and "by: default" in history


def test_a_step_in_doubt_is_resolved_from_its_page(server: LiveServer, browser: Any) -> None:
    sign_in(browser, server, server.api_key or "")
    saga_id = start(server, "test_in_doubt", {})
    browser.get(f"{server.url}/ui/sagas/{saga_id}")
    wait_until(browser, lambda d: status_of(d) == "compensation_failed")
    browser.refresh()
    timeline = browser.find_element("css selector", "svg.timeline").text
    assert "charge (in doubt ?)" in timeline and "? in doubt" in timeline
    assert browser.find_elements("css selector", ".bar.b-backoff")  # the retry's pause
    for width in (1280, 375):
        screenshot(browser, "saga-in-doubt", width)
    caught_up(browser)
    form = browser.find_element("css selector", "form[action$='/resolve']")
    form.find_element("css selector", "input[value=not_applied]").click()
    act(browser, "resolve", "the payment provider has no such charge")
    wait_until(browser, lambda d: status_of(d) == "compensated")
    history = browser.find_element("css selector", "table.history").text
    assert "StepResolved" in history and "resolution: not_applied" in history


def test_a_read_only_key_sees_no_action_and_a_forged_form_gets_403(
    server: LiveServer, browser: Any
) -> None:
    saga_id = start(server, "test_slow", {"seconds": 60})
    sign_in(browser, server, READER_KEY)
    browser.get(f"{server.url}/ui/sagas/{saga_id}")
    assert [] == browser.find_elements("css selector", "form.action")
    assert "read-only" in browser.find_element("id", "actions").text
    posted = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', body: new URLSearchParams("
        "{reason: 'x', confirm: 'yes', csrf_token: arguments[1]})}).then(r => done(r.status));",
        f"{server.url}/ui/sagas/{saga_id}/cancel",
        "",
    )
    assert 403 == posted
    sign_in(browser, server, server.api_key or "")
    forged = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', body: new URLSearchParams("
        "{reason: 'x', confirm: 'yes'})}).then(r => done(r.status));",
        f"{server.url}/ui/sagas/{saga_id}/cancel",
    )
    assert 403 == forged


def test_every_page_renders_at_both_widths(server: LiveServer, browser: Any) -> None:
    sign_in(browser, server, server.api_key or "")
    start(server, "test_two_steps", {"name": "shot"})
    for name, path in (("sagas", "/ui/"), ("events", "/ui/events"), ("metrics", "/ui/metrics")):
        browser.get(f"{server.url}{path}")
        assert browser.find_element("tag name", "h1").text
        for width in (1280, 375):
            shot = screenshot(browser, name, width)
            assert shot.stat().st_size > 1000
        browser.set_window_size(1280, 900)
    # At 375 px nothing is wider than the window but the tables' own scroll boxes.
    browser.set_window_size(375, 800)
    browser.get(f"{server.url}/ui/")
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1"
    )
    assert Path(shot).parent.is_dir()
