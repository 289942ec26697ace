"""The README's walkthrough of the built-in sagas, run as written (on free ports)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..support.server import REPO_ROOT, free_port

README = REPO_ROOT / "README.md"


def walkthrough() -> str:
    """The bash block of the README's "See the built-in sagas run" section."""
    section = README.read_text(encoding="utf-8").split("## See the built-in sagas run", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the walkthrough has a bash block"
    return match.group(1)


@pytest.mark.e2e
def test_the_readme_walkthrough_completes_one_onboarding_and_compensates_the_other(
    tmp_path: Path,
) -> None:
    services, api = free_port(), free_port()
    script = walkthrough().replace("8100", str(services)).replace("8008", str(api))
    # wait for the servers the block starts in the background, and stop them at the end
    script = script.replace(
        "saga-orchestrator serve &",
        "saga-orchestrator serve &\n"
        f"for _ in $(seq 100); do curl -sf localhost:{api}/health/ready >/dev/null && break; "
        "sleep 0.1; done",
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **{k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PORT": str(api),
        "SAGA_ORCHESTRATOR_URL": f"http://127.0.0.1:{api}",
        "ORCHESTRATOR_URL": f"http://127.0.0.1:{api}",
    }
    done = subprocess.run(
        ["bash", "-c", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n" + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout + done.stderr
    assert "status           completed" in out, out
    assert "status           compensated" in out, out
    # the compensated onboarding undid its completed steps in reverse order
    undo = re.findall(r'"operation":"(notification\.send|user\.delete_\w+)"', out)
    assert ["notification.send", "user.delete_workspace", "user.delete_profile"] == undo[-3:], out
    assert "Traceback" not in out
