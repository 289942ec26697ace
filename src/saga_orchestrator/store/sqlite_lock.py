"""One service process per SQLite file: an OS lock on ``<file>.lock``, held while it runs.

SQLite itself lets several processes open a file (WAL mode), and the service would run: each
process resuming the same sagas, each relaying the same outbox. The service process therefore
takes an exclusive ``flock`` on ``<database file>.lock`` beside the database before it starts,
and a second process on the same file stops at once with a :class:`ConfigError` naming the file
and what to change. The lock belongs to the open file: the OS releases it when the process
exits, however it exits (SIGKILL included), so a new process starts at once after a crash. The
lock file itself stays (it holds the pid of the last holder, for the error message).

``flock`` rather than SQLite's ``locking_mode=EXCLUSIVE``: that mode would also lock out the
service's own reader connections and ``saga-orchestrator migrate``, and a second process would
only see "database is locked" at its first write. Only the service process takes the lock (not
each backend object), so tests and tools may open the file more than once in one process.
POSIX only: where ``fcntl`` is missing (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from saga_orchestrator.errors import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX: nothing is locked
    fcntl = None  # type: ignore[assignment]

__all__ = ["hold_sqlite_file", "lock_path_of"]


def lock_path_of(database: Path) -> Path:
    """The lock file of the SQLite file ``database``: ``<database>.lock`` beside it."""
    return database.with_name(database.name + ".lock")


@contextlib.contextmanager
def hold_sqlite_file(database: Path | None) -> Iterator[None]:
    """Hold the lock of the SQLite file ``database`` for the body (``None``: no SQLite file,
    nothing to hold).

    Raises:
        ConfigError: another process holds it, or the lock file cannot be opened.
    """
    if database is None or fcntl is None:
        yield
        return
    path = lock_path_of(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    except OSError as exc:
        raise ConfigError(
            f"cannot open the lock file {path} of the SQLite database {database}: {exc}; check "
            "that its directory is writable (DATA_DIR / DATABASE_URL)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(_in_use(database, path, _holder(fd))) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """The pid the lock file names, as text ("" when unreadable)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _in_use(database: Path, lock: Path, holder: str) -> str:
    by = f"process {holder}" if holder else "another process"
    return (
        f"the SQLite database {database} is in use by {by} (it holds {lock}). SQLite serves one "
        "process: run one instance, or use PostgreSQL for several (DATABASE_URL="
        "postgresql://...); a separate instance needs a file of its own (DATA_DIR or "
        "DATABASE_URL=sqlite:///...)"
    )
