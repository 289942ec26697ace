"""Under ``CI=true`` nothing is skipped silently: every skip of the suite goes through
:func:`tests.support.required.unavailable`, which fails instead in CI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.required import in_ci, require_module, unavailable

TESTS = Path(__file__).resolve().parent
HELPER = TESTS / "support" / "required.py"
SKIPPING = re.compile(r"pytest\.(skip\(|importorskip\(|xfail\(|mark\.(skip|skipif|xfail)\b)")


def test_only_the_helper_skips() -> None:
    found = [
        f"{path.relative_to(TESTS)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in (HELPER, Path(__file__).resolve())
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if SKIPPING.search(line)
    ]
    assert [] == found


@pytest.mark.parametrize("ci", ["true", ""])
def test_what_is_missing_skips_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    assert in_ci() is bool(ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="no such tool"):
        unavailable("no such tool")
    with pytest.raises(expected, match="the dev extras: no module named 'no_such_module'"):
        require_module("no_such_module", "the dev extras")
    require_module("json", "the standard library")  # there: nothing happens
