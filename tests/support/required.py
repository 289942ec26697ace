"""What a test needs that this machine may lack (a server, a tool, a package of the dev
extras): without it the test is skipped with the reason, except with ``CI=true`` in the
environment, where it fails instead, so that nothing is skipped silently in CI."""

from __future__ import annotations

import importlib.util
import os
from typing import NoReturn

import pytest

__all__ = ["in_ci", "require_module", "unavailable"]


def in_ci() -> bool:
    """``CI`` is ``true`` (or ``1``, ``yes``)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(message: str) -> NoReturn:
    """Skip the test (fail it under ``CI=true``): what it needs is not there, and why."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: nothing may be skipped)", pytrace=False)
    pytest.skip(message)


def require_module(name: str, why: str) -> None:
    """:func:`unavailable` with ``why`` (e.g. which extras bring it) unless the top-level
    module ``name`` is installed (found, not imported: importing may warn)."""
    if importlib.util.find_spec(name) is None:
        unavailable(f"{why}: no module named {name!r}")
