"""Headless Chromium for the dashboard's end-to-end tests (Selenium with Debian's ``chromium``
and ``chromium-driver``; ``.ci/run`` installs them).

Without them the tests skip (fail under ``CI=true``: :mod:`.required`). Screenshots go to
:data:`SCREENSHOTS` (``artifacts/screenshots/`` at the repository's root; ``SCREENSHOT_DIR``
overrides it), the folder the README names.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .required import require_module, unavailable
from .server import REPO_ROOT

__all__ = ["SCREENSHOTS", "chromium", "screenshot", "wait_until"]

SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or REPO_ROOT / "artifacts" / "screenshots")
_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_DRIVERS = ("chromedriver",)


def _find(names: tuple[str, ...], extra: tuple[str, ...] = ()) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((path for path in extra if Path(path).exists()), None)


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium (a Selenium ``WebDriver``), quit at the end."""
    require_module("selenium", "the dev extras (pip install -e '.[dev]')")
    binary = _find(_BROWSERS)
    driver_path = _find(_DRIVERS, ("/usr/lib/chromium/chromedriver",))
    if binary is None or driver_path is None:
        unavailable("Chromium and its driver are not installed (apt-get install chromium "
                    "chromium-driver; .ci/run does)")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str, width: int) -> Path:
    """The whole page at ``width`` px as ``<name>-<width>.png`` in :data:`SCREENSHOTS` (the
    window gets its size back afterwards)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    before = driver.get_window_size()
    driver.set_window_size(width, 900)  # the page's height at this width
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(max(int(height), 600), 4000))
    path = SCREENSHOTS / f"{name}-{width}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(before["width"], before["height"])
    return path


def wait_until(driver: Any, check: Callable[[Any], Any], within: float = 15.0) -> Any:
    """What ``check(driver)`` gives once it is truthy (polled by Selenium), within a bound; an
    element replaced meanwhile (a live update) is looked for again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, within, poll_frequency=0.05, ignored_exceptions=ignored).until(
        check
    )
