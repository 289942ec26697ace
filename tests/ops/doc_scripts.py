"""Running the shell blocks of the docs as written: in ``bash``, in a process group of their
own, every process they leave behind (servers started with ``&``) stopped by group afterwards;
and reading what the docs say their output is."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs

from saga_orchestrator.coordinator.state import SagaStatus

__all__ = ["STATUS_WORDS", "Ran", "doc_env", "live_members", "run_script", "status_words"]

STATUS_WORDS = (*(status.value for status in SagaStatus), "ready")
"""The words that say how a saga (or a server) is: what a doc's shown output is checked on."""
_STATUS_RE = re.compile(r"\b(" + "|".join(STATUS_WORDS) + r")\b")


def status_words(text: str) -> list[str]:
    """The status words of ``text``, in order, a word that repeats the one before counted once:
    how many progress lines a running saga gets depends on timing (a fast saga may pass two
    steps between two answers of the long poll), the order of its statuses does not."""
    words: list[str] = []
    for word in _STATUS_RE.findall(text):
        if not words or words[-1] != word:
            words.append(word)
    return words


def doc_env(**extra: str) -> dict[str, str]:
    """A plain environment: the virtualenv's ``bin`` first on ``PATH``, and ``extra``."""
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR")}
    env["PATH"] = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    env.update(extra)
    return env


def live_members(group: int) -> list[int]:
    """The processes of process group ``group`` that still run (zombies left out)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _stop_group(group: int, within: float = 15.0) -> list[int]:
    """SIGTERM the group, then SIGKILL what is left after ``within`` s; what still runs."""
    for sig, wait in ((signal.SIGTERM, within), (signal.SIGKILL, 5.0)):
        if not live_members(group):
            return []
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            return []
        deadline = time.monotonic() + wait
        while live_members(group) and time.monotonic() < deadline:
            time.sleep(0.1)
    return live_members(group)


@attrs.frozen
class Ran:
    returncode: int | None
    """``None``: it did not end within the timeout (it was stopped)."""
    output: str
    """stdout and stderr, in the order they were written."""
    left_running: list[int]
    """Processes of its group still running after the group was stopped (should be none)."""


def run_script(script: str, cwd: Path, env: dict[str, str], timeout: float) -> Ran:
    """``bash -c script`` in a new session; once it ends, stop every process of its group."""
    log_path = cwd / ".script-output"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: what it starts is stopped with it
        )
        try:
            returncode: int | None = process.wait(timeout)
        except subprocess.TimeoutExpired:
            returncode = None
        finally:
            left = _stop_group(process.pid)
            process.wait(5)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    return Ran(returncode, output, left)
