"""The lock that keeps a SQLite file to one service process (``store/sqlite_lock.py``).

``flock`` locks belong to an open file, so two holds in one process conflict as two processes
do; the real processes are in ``tests/e2e/test_sqlite_one_process.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from saga_orchestrator.errors import ConfigError
from saga_orchestrator.store.sqlite import SQLiteBackend
from saga_orchestrator.store.sqlite_lock import hold_sqlite_file, lock_path_of


def test_a_second_hold_of_the_same_file_is_refused_naming_it_and_what_to_change(
    tmp_path: Path,
) -> None:
    database = tmp_path / "data" / "store.db"
    with hold_sqlite_file(database):
        assert f"{os.getpid()}\n" == lock_path_of(database).read_text()
        with pytest.raises(ConfigError) as refused, hold_sqlite_file(database):
            pass
    message = str(refused.value)
    assert str(database) in message
    assert f"in use by process {os.getpid()}" in message
    assert "SQLite serves one process: run one instance, or use PostgreSQL for several" in message
    assert "DATABASE_URL" in message and "DATA_DIR" in message
    with hold_sqlite_file(database):  # released at the end of the first hold
        pass


def test_other_files_and_no_file_are_not_held(tmp_path: Path) -> None:
    with (
        hold_sqlite_file(tmp_path / "one.db"),
        hold_sqlite_file(tmp_path / "two.db"),
        hold_sqlite_file(None),
        hold_sqlite_file(None),  # PostgreSQL: nothing to hold
    ):
        pass
    assert (tmp_path / "one.db.lock").exists()


async def test_backends_may_open_a_held_file(tmp_path: Path) -> None:
    """The service process holds the lock, not the backends: tools and tests of that process
    (and ``saga-orchestrator migrate``, which takes no lock) open the file as before."""
    database = tmp_path / "store.db"
    with hold_sqlite_file(database):
        first, second = SQLiteBackend(database), SQLiteBackend(database)
        await first.open()
        await second.open()
        await second.ping()
        await second.close()
        await first.close()
