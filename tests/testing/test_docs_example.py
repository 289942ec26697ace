"""docs/testing-sagas.md runs as written: its test module, against the ``open_account`` saga of
docs/sagas.md, passes under a plain pytest with pytest-trio in a project of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def python_blocks(doc: str) -> list[str]:
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_documented_tests_pass_in_a_project_of_their_own(tmp_path: Path):
    saga_module = python_blocks("sagas.md")[0]
    [test_module] = [b for b in python_blocks("testing-sagas.md") if "SagaTestKit" in b]
    (tmp_path / "my_company").mkdir()
    (tmp_path / "my_company" / "__init__.py").write_text("")
    (tmp_path / "my_company" / "sagas.py").write_text(saga_module)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_open_account.py").write_text(test_module)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of this repository's settings
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path[1:]])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert 0 == run.returncode, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\b7 passed\b", run.stdout), run.stdout[-2000:]
