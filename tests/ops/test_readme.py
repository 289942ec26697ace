"""The README's walkthrough of the built-in sagas, run as written: its bash block verbatim in
``bash``, on free ports (``8100`` replaced, ``PORT`` set), nothing added; what the block's
comments say comes out is compared with what comes out; nothing it started is left running."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from ..support.server import REPO_ROOT, free_port
from .doc_scripts import STATUS_WORDS, doc_env, run_script

README = REPO_ROOT / "README.md"
NUMBERS = {"no": 0, "one": 1, "two": 2, "three": 3}
_LIST_ROW = re.compile(r"^[0-9a-f-]{36}\s+\S+\s+(\w+)", re.MULTILINE)


def walkthrough() -> str:
    """The bash block of the README's "See the built-in sagas run" section."""
    section = README.read_text(encoding="utf-8").split("## See the built-in sagas run", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the walkthrough has a bash block"
    return match.group(1)


def listed_counts(script: str) -> Counter[str]:
    """What the comment of the block's ``sagas list`` says it prints: ``one completed, ...``."""
    [comment] = [line.split("#", 1)[1] for line in script.splitlines() if "sagas list" in line]
    said = re.findall(r"\b(\w+) (" + "|".join(STATUS_WORDS) + r")\b", comment)
    assert said, comment
    return Counter({status: NUMBERS.get(number, -1) for number, status in said})


@pytest.mark.e2e
def test_the_readme_walkthrough_completes_one_onboarding_and_compensates_the_other(
    tmp_path: Path,
) -> None:
    services, api = free_port(), free_port()
    script = walkthrough()
    ran = run_script(
        script.replace("8100", str(services)),
        tmp_path,
        doc_env(PORT=str(api)),
        timeout=120,
    )
    out = ran.output
    assert [] == ran.left_running, out
    assert 0 == ran.returncode, out  # the last command (curl) succeeded
    assert "Traceback" not in out and "cannot reach" not in out, out
    assert 2 == out.count(" is ready ("), out  # both wait-ready lines
    # "every step runs, the saga completes"; then "the completed steps are compensated"
    assert "status           completed" in out, out
    assert "status           compensated" in out, out
    # sagas list: "one completed, one compensated"
    assert listed_counts(script) == Counter(_LIST_ROW.findall(out)), out
    # "a follow-up notice, then the workspace and profile deleted"
    undo = re.findall(r'"operation":"(notification\.send|user\.delete_\w+)"', out)
    assert ["notification.send", "user.delete_workspace", "user.delete_profile"] == undo[-3:], out
