"""docs/getting-started.md, run: every ``bash`` block is marked, and the ones marked
``<!-- tested -->`` run verbatim, in the page's order, as one ``bash`` script in an empty
directory (``8008`` replaced by a free port, ``PORT`` set to it); the output the page shows
after a block (its status words) is compared with what that block printed, and nothing the
script started is left running."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import attrs
import pytest

from tests.support.required import unavailable
from tests.support.server import REPO_ROOT, free_port

from .doc_scripts import doc_env, run_script, status_words

GETTING_STARTED = REPO_ROOT / "docs" / "getting-started.md"
_FENCE = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)
_MARK = "@@ block {} @@"

EXERCISED_ELSEWHERE = {
    # The block's text -> what makes sure it works, checked below.
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"': (
        'python -m pip install --quiet -e ".[dev]"'
    ),
    "pytest": "\npytest\n",
}
"""Blocks marked ``not run``: each is a line of ``.ci/run``, which CI runs."""


@attrs.frozen
class Block:
    marker: str | None
    code: str
    shown: str | None
    """The output the page shows for it: the ``json``/``text`` block right after it."""


def blocks(path: Path) -> list[Block]:
    """The page's ``bash`` blocks, each with the output block that follows it (if any)."""
    found: list[Block] = []
    for match in _FENCE.finditer(path.read_text(encoding="utf-8")):
        code = match["code"].rstrip("\n")
        if match["lang"] == "bash":
            found.append(Block(match["marker"], code, None))
        elif match["lang"] in ("json", "text") and found and found[-1].shown is None:
            found[-1] = attrs.evolve(found[-1], shown=code)
    return found


def test_every_command_block_is_run_here_or_by_ci() -> None:
    found = blocks(GETTING_STARTED)
    assert GETTING_STARTED.read_text().count("```bash") == len(found)
    unmarked = [block.code for block in found if block.marker is None]
    assert [] == unmarked, "mark each bash block <!-- tested --> or <!-- not run: why -->"
    ci_run = (REPO_ROOT / ".ci" / "run").read_text()
    for block in found:
        if block.marker.startswith("not run"):
            assert block.code in EXERCISED_ELSEWHERE, block.code
            assert EXERCISED_ELSEWHERE[block.code] in ci_run, block.code
        else:
            assert "tested" == block.marker, block.marker


def outputs(output: str, count: int) -> list[str]:
    """The output of each of ``count`` blocks, cut at the markers between them."""
    parts = re.split(r"^@@ block (\d+) @@$", output, flags=re.M)
    found = {int(number): text for number, text in zip(parts[1::2], parts[2::2], strict=True)}
    return [found.get(index, "") for index in range(count)]


@pytest.mark.e2e
def test_getting_started_runs_and_prints_what_it_shows(tmp_path: Path) -> None:
    env = doc_env()
    if shutil.which("saga-orchestrator", path=env["PATH"]) is None:
        unavailable("the project is not installed here (pip install -e .)")
    if shutil.which("curl") is None:
        unavailable("curl is not installed")
    port = free_port()
    tested = [block for block in blocks(GETTING_STARTED) if block.marker == "tested"]
    script = "set -euo pipefail\n" + "\n".join(
        f"printf '\\n{_MARK.format(index)}\\n'\n{block.code.replace('8008', str(port))}"
        for index, block in enumerate(tested)
    )
    ran = run_script(script, tmp_path, {**env, "PORT": str(port)}, timeout=180)
    log = (tmp_path / "service.log").read_text(errors="replace")
    assert [] == ran.left_running, ran.output
    assert 0 == ran.returncode, f"{ran.output}\n--- service.log:\n{log}"
    printed = outputs(ran.output, len(tested))
    for block, out in zip(tested, printed, strict=True):
        if block.shown is None:
            continue
        shown = status_words(block.shown)
        assert shown == status_words(out)[: len(shown)], f"{block.code}\n--- printed:\n{out}"
    output = ran.output
    # What the prose says about the output:
    assert "ENVIRONMENT=development" in output
    assert "Hello, Grace!" in output and "Hello, Ada!" in output
    assert "data.name" in output  # the refused input
    assert "status           compensated" in output
    for code in (5, 4, 3):
        assert f"exit code {code}" in output
    assert "status           cancelled" in output
    [same_key] = [
        out for block, out in zip(tested, printed, strict=True) if "signup-42" in block.code
    ]
    first, again = same_key.split()
    assert first == again  # "Both lines print the same saga id"
    [events] = [
        out for block, out in zip(tested, printed, strict=True) if "--limit 2" in block.code
    ]
    assert ["SagaStarted", "StepStarted"] == re.findall(r"^\d+\s+(\w+)", events, re.M)[-2:]
    assert "more: --from-version 3" in events
    assert "released Bob" in log  # the compensation ran
    assert "Traceback" not in log
    assert log.rstrip().endswith("saga orchestrator stopped")


# --- links between the pages ----------------------------------------------------------------

PAGES = ("getting-started.md", "api.md", "sagas.md", "operations.md")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of the page's headings."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES)
def test_links_lead_somewhere(page: str) -> None:
    path = REPO_ROOT / "docs" / page
    broken = []
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part) if file_part else path
        if not linked.exists() or (anchor and anchor not in _anchors(linked)):
            broken.append(target)
    assert [] == broken
