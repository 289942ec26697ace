"""docs/sagas.md's worked example of a parked saga, run: its blocks marked ``<!-- tested -->``
run verbatim, in order, as one ``bash`` script in an empty directory against the stand-in and
the service (``8100`` and ``8008`` replaced by free ports, ``PORT`` set); each line of the
output the page shows after a block is a line that block printed, and nothing the script
started is left running."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.required import unavailable
from tests.support.server import REPO_ROOT, free_port

from .doc_scripts import doc_env, run_script, status_words
from .test_docs import _MARK, blocks, outputs

SAGAS_MD = REPO_ROOT / "docs" / "sagas.md"


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


@pytest.mark.e2e
def test_the_parked_saga_example_runs_and_prints_what_it_shows(tmp_path: Path) -> None:
    # the sources under test, when they are not the installed ones (a checkout beside it)
    source = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    env = doc_env(**source)
    if shutil.which("saga-orchestrator", path=env["PATH"]) is None:
        unavailable("the project is not installed here (pip install -e .)")
    if shutil.which("curl") is None:
        unavailable("curl is not installed")
    services, api = free_port(), free_port()
    tested = [block for block in blocks(SAGAS_MD) if block.marker == "tested"]
    assert 2 == len(tested)
    script = "set -euo pipefail\n" + "\n".join(
        f"printf '\\n{_MARK.format(index)}\\n'\n"
        + block.code.replace("8100", str(services)).replace("8008", str(api))
        for index, block in enumerate(tested)
    )
    ran = run_script(script, tmp_path, {**env, "PORT": str(api)}, timeout=120)
    log = (tmp_path / "service.log").read_text(errors="replace")
    assert [] == ran.left_running, ran.output
    assert 0 == ran.returncode, f"{ran.output}\n--- service.log:\n{log}"
    for block, out in zip(tested, outputs(ran.output, len(tested)), strict=True):
        assert block.shown is not None, block.code
        printed = _lines(out)
        missing = [line for line in _lines(block.shown) if line not in printed]
        assert [] == missing, f"{block.code}\n--- printed:\n{out}"
        words = iter(status_words(out))  # the shown statuses, in the order printed
        assert all(word in words for word in status_words(block.shown)), out
    assert "Traceback" not in log
