"""Instances and saga ownership on SQLite: the statements behind the lease methods of
:class:`~.sqlite.SQLiteBackend`, each run in one transaction of its writer (or a reader).

SQLite serves one process, so one instance owns everything; these keep the contract of every
backend the same (and a restarted process takes back the sagas of the one before it).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ._command_wakers import CommandWakers
from ._sqlite_tx import transaction
from .records import ACTIVE_STATUSES, ClaimedSaga, InstanceRecord, Loaded, SagaCommand

T = TypeVar("T")

_ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
_LIVE = "SELECT instance_id FROM instances WHERE expires_at > ?"


def register(conn: sqlite3.Connection, instance_id: str, info: str, ttl: float) -> InstanceRecord:
    now = time.time()
    conn.execute(
        "INSERT INTO instances (instance_id, started_at, heartbeat_at, expires_at, info) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET "
        "heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, "
        "info = excluded.info",
        (instance_id, now, now, now + ttl, info),
    )
    row = conn.execute(
        "SELECT instance_id, started_at, heartbeat_at, expires_at, info FROM instances "
        "WHERE instance_id = ?",
        (instance_id,),
    ).fetchone()
    return instance_from_row(row)


def renew(conn: sqlite3.Connection, instance_id: str, ttl: float) -> bool:
    now = time.time()
    cursor = conn.execute(
        "UPDATE instances SET heartbeat_at = ?, expires_at = ? "
        "WHERE instance_id = ? AND expires_at > ?",
        (now, now + ttl, instance_id, now),
    )
    return cursor.rowcount == 1


def deregister(conn: sqlite3.Connection, instance_id: str) -> int:
    cursor = conn.execute("UPDATE sagas SET owner = NULL WHERE owner = ?", (instance_id,))
    conn.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
    return cursor.rowcount


def live(conn: sqlite3.Connection) -> list[InstanceRecord]:
    rows = conn.execute(
        "SELECT instance_id, started_at, heartbeat_at, expires_at, info FROM instances "
        "WHERE expires_at > ? ORDER BY started_at, instance_id",
        (time.time(),),
    ).fetchall()
    return [instance_from_row(row) for row in rows]


def claim_orphans(
    conn: sqlite3.Connection, instance_id: str, limit: int, mine: bool, loaded: Loaded | None
) -> list[ClaimedSaga]:
    now = time.time()
    pairs, pair_params = _pairs(loaded)
    rows = conn.execute(
        f"SELECT saga_id, saga_type, saga_version, owner, owner_epoch FROM sagas "
        f"WHERE status IN ({_ACTIVE}) AND {pairs} "
        f"AND (owner IS NULL OR owner NOT IN ({_LIVE}) OR (? AND owner = ?)) "
        "ORDER BY created_at, saga_id LIMIT ?",
        (*pair_params, now, mine, instance_id, max(limit, 0)),
    ).fetchall()
    conn.executemany(
        "UPDATE sagas SET owner = ?, owner_epoch = ? WHERE saga_id = ?",
        [(instance_id, epoch + 1, saga_id) for saga_id, _, _, _, epoch in rows],
    )
    if len(rows) < limit:  # no orphan left: forget the dead that own nothing
        conn.execute(
            "DELETE FROM instances WHERE expires_at <= ? AND instance_id NOT IN "
            f"(SELECT owner FROM sagas WHERE owner IS NOT NULL AND status IN ({_ACTIVE}))",
            (now,),
        )
    return [
        ClaimedSaga(
            saga_id=saga_id,
            saga_type=saga_type,
            saga_version=int(version),
            epoch=epoch + 1,
            previous_owner=owner,
        )
        for saga_id, saga_type, version, owner, epoch in rows
    ]


_ORPHAN = f"status IN ({_ACTIVE}) AND (owner IS NULL OR owner NOT IN ({_LIVE}))"


def orphans_by_definition(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        f"SELECT saga_type, saga_version, count(*) FROM sagas WHERE {_ORPHAN} "
        "GROUP BY saga_type, saga_version",
        (time.time(),),
    ).fetchall()
    return {(saga_type, int(version)): int(n) for saga_type, version, n in rows}


def _pairs(loaded: Loaded | None) -> tuple[str, list[object]]:
    """A condition that holds for the sagas whose (type, version) is in ``loaded`` (every saga
    when ``None``), and its parameters."""
    if loaded is None:
        return "1", []
    if not loaded:
        return "0", []
    values = ", ".join("(?, ?)" for _ in loaded)
    return (
        f"((saga_type, saga_version) IN (VALUES {values}))",
        [part for pair in sorted(loaded) for part in pair],
    )


def claim_one(conn: sqlite3.Connection, instance_id: str, saga_id: str, force: bool) -> int | None:
    row = conn.execute(
        f"SELECT owner, owner_epoch, owner IN ({_LIVE}) FROM sagas WHERE saga_id = ?",
        (time.time(), saga_id),
    ).fetchone()
    if row is None:
        return None
    owner, epoch, owner_live = row
    if owner == instance_id:
        return int(epoch)
    if owner_live and not force:
        return None
    conn.execute(
        "UPDATE sagas SET owner = ?, owner_epoch = ? WHERE saga_id = ?",
        (instance_id, epoch + 1, saga_id),
    )
    return int(epoch) + 1


def owner_of(conn: sqlite3.Connection, saga_id: str) -> tuple[str | None, int, bool]:
    row = conn.execute(
        f"SELECT owner, owner_epoch, owner IN ({_LIVE}) FROM sagas WHERE saga_id = ?",
        (time.time(), saga_id),
    ).fetchone()
    if row is None:
        return None, 0, False
    return row[0], int(row[1]), bool(row[2])


def send_command(conn: sqlite3.Connection, command: SagaCommand) -> None:
    conn.execute(
        "INSERT INTO saga_commands (command_id, saga_id, kind, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (command.command_id, command.saga_id, command.kind, json.dumps(command.payload),
         time.time()),
    )  # fmt: skip


def pending_commands(conn: sqlite3.Connection, instance_id: str, limit: int) -> list[SagaCommand]:
    rows = conn.execute(
        "SELECT c.command_id, c.saga_id, c.kind, c.payload, c.created_at FROM saga_commands c "
        "JOIN sagas s ON s.saga_id = c.saga_id WHERE c.done_at IS NULL AND s.owner = ? "
        "ORDER BY c.created_at, c.command_id LIMIT ?",
        (instance_id, max(limit, 0)),
    ).fetchall()
    return [
        SagaCommand(
            command_id=r[0], saga_id=r[1], kind=r[2], payload=json.loads(r[3]), created_at=r[4]
        )
        for r in rows
    ]


def finish_command(conn: sqlite3.Connection, command_id: str, outcome: str) -> None:
    conn.execute(
        "UPDATE saga_commands SET done_at = ?, outcome = ? WHERE command_id = ?",
        (time.time(), outcome, command_id),
    )


def command_outcome(conn: sqlite3.Connection, command_id: str) -> dict[str, object] | None:
    row = conn.execute(
        "SELECT outcome FROM saga_commands WHERE command_id = ? AND done_at IS NOT NULL",
        (command_id,),
    ).fetchone()
    return None if row is None else json.loads(row[0])


def purge_commands(conn: sqlite3.Connection, older_than: float) -> int:
    cursor = conn.execute(
        "DELETE FROM saga_commands WHERE created_at < ?", (time.time() - older_than,)
    )
    return cursor.rowcount


def instance_from_row(row: tuple) -> InstanceRecord:  # type: ignore[type-arg]
    instance_id, started_at, heartbeat_at, expires_at, info = row
    return InstanceRecord(
        instance_id=instance_id,
        started_at=started_at,
        heartbeat_at=heartbeat_at,
        expires_at=expires_at,
        info=json.loads(info) if isinstance(info, str) else dict(info),
    )


class SQLiteLeases:
    """The instance and ownership methods of :class:`~.sqlite.SQLiteBackend` (a mixin over its
    ``_write`` and ``_read``)."""

    _write: Callable[..., Any]
    _read: Callable[..., Any]

    async def register_instance(
        self, instance_id: str, info: dict[str, object], ttl: float
    ) -> InstanceRecord:
        text = json.dumps(info)
        return await self._write(
            "register the instance",
            lambda c: _in_transaction(c, register, instance_id, text, ttl),
        )

    async def renew_instance(self, instance_id: str, ttl: float) -> bool:
        return await self._write(
            "renew the instance's leases",
            lambda c: _in_transaction(c, renew, instance_id, ttl),
        )

    async def deregister_instance(self, instance_id: str) -> int:
        return await self._write(
            "release the instance's sagas",
            lambda c: _in_transaction(c, deregister, instance_id),
        )

    async def live_instances(self) -> list[InstanceRecord]:
        return await self._read("list the live instances", live)

    async def claim_orphans(
        self, instance_id: str, limit: int, *, mine: bool = False, loaded: Loaded | None = None
    ) -> list[ClaimedSaga]:
        return await self._write(
            "claim sagas",
            lambda c: _in_transaction(c, claim_orphans, instance_id, limit, mine, loaded),
        )

    async def orphans_by_definition(self) -> dict[tuple[str, int], int]:
        return await self._read("count the sagas no live instance owns", orphans_by_definition)

    async def claim_saga(self, instance_id: str, saga_id: str, *, force: bool) -> int | None:
        return await self._write(
            "claim a saga",
            lambda c: _in_transaction(c, claim_one, instance_id, saga_id, force),
        )

    async def saga_owner(self, saga_id: str) -> tuple[str | None, int, bool]:
        return await self._read("read a saga's owner", lambda c: owner_of(c, saga_id))

    # -- commands (every instance SQLite serves is in this process: woken in memory) ---------

    _command_wakers: CommandWakers | None = None

    def _wakers(self) -> CommandWakers:
        if self._command_wakers is None:
            self._command_wakers = CommandWakers()
        return self._command_wakers

    async def send_command(self, command: SagaCommand, owner: str | None) -> None:
        await self._write("keep a command", lambda c: _in_transaction(c, send_command, command))
        self._wakers().wake(owner)

    async def pending_commands(self, instance_id: str, limit: int) -> list[SagaCommand]:
        return await self._read(
            "read pending commands", lambda c: pending_commands(c, instance_id, limit)
        )

    async def finish_command(self, command_id: str, outcome: dict[str, object]) -> None:
        text = json.dumps(outcome)
        await self._write(
            "record a command's outcome",
            lambda c: _in_transaction(c, finish_command, command_id, text),
        )

    async def command_outcome(self, command_id: str) -> dict[str, object] | None:
        return await self._read(
            "read a command's outcome", lambda c: command_outcome(c, command_id)
        )

    async def wait_for_commands(self, instance_id: str, at_most: float) -> None:
        await self._wakers().wait(instance_id, at_most)

    async def purge_commands(self, older_than: float) -> int:
        return await self._write(
            "forget old commands", lambda c: _in_transaction(c, purge_commands, older_than)
        )


def _in_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    with transaction(conn):
        return fn(conn, *args)
