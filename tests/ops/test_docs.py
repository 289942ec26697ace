"""docs/getting-started.md, run: every ``bash`` block is marked, and the ones marked
``<!-- tested -->`` run in an empty directory, in the page's order, against the server that the
block marked ``<!-- tested: server -->`` starts (on a free port instead of 8008)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from tests.support.required import unavailable
from tests.support.server import REPO_ROOT, free_port

from .conftest import stop, wait_ready

GETTING_STARTED = REPO_ROOT / "docs" / "getting-started.md"
_BLOCK = re.compile(r"(?:<!-- (?P<marker>[^>]*?) -->\n)?```bash\n(?P<code>.*?)```", re.S)

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


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(m["marker"], m["code"].rstrip("\n")) for m in _BLOCK.finditer(text)]


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
            assert block.marker in ("tested", "tested: server"), block.marker
    assert 1 == [block.marker for block in found].count("tested: server")


def _bash(script: str, cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert 0 == done.returncode, f"{script}\n--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.e2e
def test_getting_started_runs(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "saga-orchestrator").exists():
        unavailable(f"the project is not installed in {bin_dir} (pip install -e .)")
    if shutil.which("curl") is None:
        unavailable("curl is not installed")
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    }
    env.update(
        PATH=os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
        PORT=str(port),
        HOST="127.0.0.1",
        SAGA_ORCHESTRATOR_URL=f"http://127.0.0.1:{port}",
    )
    found = [block for block in blocks(GETTING_STARTED) if block.marker.startswith("tested")]
    split = [block.marker for block in found].index("tested: server")
    before = "\n".join(block.code for block in found[:split])
    after = "\n".join(block.code for block in found[split + 1 :])
    after = after.replace("localhost:8008", f"127.0.0.1:{port}")

    output = _bash(before, tmp_path, env, timeout=60)
    assert "ENVIRONMENT=development" in output
    assert (tmp_path / "hello_sagas.py").exists()

    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            ["bash", "-c", found[split].code],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its children
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", server, log_path)
            output = _bash(after, tmp_path, env, timeout=120)
        finally:
            stop(server)
    assert '{"status": "ready"}' in output
    assert "Hello, Grace!" in output and "Hello, Ada!" in output
    assert "data.name" in output  # the refused input
    assert "status           compensated" in output
    for code in (5, 4, 3):
        assert f"exit code {code}" in output
    assert "status           cancelled" in output
    log = log_path.read_text()
    assert "released Bob" in log  # the compensation ran
    assert "Traceback" not in log


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
