"""Instances and saga ownership on PostgreSQL: the lease methods of
:class:`~.postgres.PostgresBackend` (a mixin over its ``_call``).

Each method is ONE asyncio coroutine crossed to once (MEASUREMENTS.md, trap 1). Times are the
database's (``clock_timestamp()``), so instances on hosts with different clocks agree on who
is live. A claim or a release takes the write lock every batch takes first, so a batch's fencing
check (``saga_commit_batch``) and a change of owner never interleave.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from .records import ACTIVE_STATUSES, ClaimedSaga, InstanceRecord, Loaded

__all__ = ["PostgresLeases"]

WRITE_LOCK_KEY = 0x5A6A_0D1F_0002
"""``pg_advisory_xact_lock`` key every write transaction takes first (``postgres.py``)."""

_NOW = "extract(epoch FROM clock_timestamp())"
_ACTIVE = ", ".join(f"'{status}'" for status in ACTIVE_STATUSES)
_INSTANCE_COLUMNS = "instance_id, started_at, heartbeat_at, expires_at, info::text"

_REGISTER = f"""
INSERT INTO instances (instance_id, started_at, heartbeat_at, expires_at, info)
VALUES ($1, {_NOW}, {_NOW}, {_NOW} + $3, $2::jsonb)
ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,
    expires_at = EXCLUDED.expires_at, info = EXCLUDED.info
RETURNING {_INSTANCE_COLUMNS}
"""
_RENEW = f"""
UPDATE instances SET heartbeat_at = {_NOW}, expires_at = {_NOW} + $2
WHERE instance_id = $1 AND expires_at > {_NOW}
"""
_LIVE = f"""
SELECT {_INSTANCE_COLUMNS} FROM instances WHERE expires_at > {_NOW}
ORDER BY started_at, instance_id
"""
# Whether a saga's (type, version) is among the loaded pairs $T (types) and $V (versions), in
# step: a NULL $T means any saga.
_LOADED = "({t}::text[] IS NULL OR (saga_type, saga_version) IN (SELECT * FROM unnest({t}::text[], {v}::int[])))"  # noqa: E501
_NOT_LIVE = f"""NOT EXISTS (
    SELECT 1 FROM instances i WHERE i.instance_id = s.owner AND i.expires_at > {_NOW})"""
# Orphans: active sagas with no owner, or whose owner is not a live instance (expired, or its
# row gone: a batch of an instance that had lapsed may commit a new saga after the dead were
# forgotten), of a loaded definition ($4, $5). Both kinds are read through their partial
# indexes.
_CLAIM_ORPHANS = f"""
WITH orphans AS (
    SELECT saga_id, owner, created_at FROM (
        (SELECT saga_id, owner, created_at FROM sagas
         WHERE owner IS NULL AND status IN ({_ACTIVE}) AND {_LOADED.format(t="$4", v="$5")}
         ORDER BY created_at, saga_id LIMIT $2)
        UNION ALL
        (SELECT saga_id, owner, created_at FROM sagas s
         WHERE owner IS NOT NULL AND status IN ({_ACTIVE}) AND {_LOADED.format(t="$4", v="$5")}
           AND (($3 AND owner = $1) OR {_NOT_LIVE})
         ORDER BY created_at, saga_id LIMIT $2)
    ) both_kinds
    ORDER BY created_at, saga_id LIMIT $2
)
UPDATE sagas s SET owner = $1, owner_epoch = s.owner_epoch + 1
FROM orphans o WHERE s.saga_id = o.saga_id
RETURNING s.saga_id, s.saga_type, s.saga_version, s.owner_epoch, o.owner, o.created_at
"""
# Orphans (active sagas no live instance owns) by (type, version), both kinds through their
# partial indexes: the failover look shares out the loaded ones and reports the others.
_ORPHANS_BY_DEFINITION = f"""
SELECT saga_type, saga_version, count(*) FROM (
    SELECT saga_type, saga_version FROM sagas WHERE owner IS NULL AND status IN ({_ACTIVE})
    UNION ALL
    SELECT saga_type, saga_version FROM sagas s
    WHERE owner IS NOT NULL AND status IN ({_ACTIVE}) AND {_NOT_LIVE}
) orphans
GROUP BY saga_type, saga_version
"""
_FORGET_THE_DEAD = f"""
DELETE FROM instances i WHERE i.expires_at <= {_NOW} AND NOT EXISTS (
    SELECT 1 FROM sagas s WHERE s.owner = i.instance_id AND s.status IN ({_ACTIVE})
)
"""
_OWNER = f"""
SELECT s.owner, s.owner_epoch, EXISTS (
    SELECT 1 FROM instances i WHERE i.instance_id = s.owner AND i.expires_at > {_NOW}
) FROM sagas s WHERE s.saga_id = $1
"""


class PostgresLeases:
    """The instance and ownership methods of the PostgreSQL backend."""

    command_timeout: float
    _call: Callable[..., Awaitable[Any]]

    async def register_instance(
        self, instance_id: str, info: dict[str, object], ttl: float
    ) -> InstanceRecord:
        row = await self._call(
            "register the instance", _aio_fetchrow, self.command_timeout, _REGISTER,
            (instance_id, json.dumps(info), ttl),
        )  # fmt: skip
        return _instance(row)

    async def renew_instance(self, instance_id: str, ttl: float) -> bool:
        status = await self._call(
            "renew the instance's leases", _aio_execute, self.command_timeout, _RENEW,
            (instance_id, ttl),
        )  # fmt: skip
        return str(status).endswith(" 1")

    async def deregister_instance(self, instance_id: str) -> int:
        return int(
            await self._call(
                "release the instance's sagas", _aio_deregister, self.command_timeout, instance_id
            )
        )

    async def live_instances(self) -> list[InstanceRecord]:
        rows = await self._call(
            "list the live instances", _aio_fetch, self.command_timeout, _LIVE, ()
        )
        return [_instance(row) for row in rows]

    async def claim_orphans(
        self, instance_id: str, limit: int, *, mine: bool = False, loaded: Loaded | None = None
    ) -> list[ClaimedSaga]:
        rows = await self._call(
            "claim sagas", _aio_claim_orphans, self.command_timeout, instance_id, limit, mine,
            *_pairs(loaded),
        )  # fmt: skip
        return [  # oldest first (RETURNING keeps no order)
            ClaimedSaga(
                saga_id=r[0],
                saga_type=r[1],
                saga_version=int(r[2]),
                epoch=int(r[3]),
                previous_owner=r[4],
            )
            for r in sorted(rows, key=lambda r: (r[5], r[0]))
        ]

    async def orphans_by_definition(self) -> dict[tuple[str, int], int]:
        rows = await self._call(
            "count the sagas no live instance owns", _aio_fetch, self.command_timeout,
            _ORPHANS_BY_DEFINITION, (),
        )  # fmt: skip
        return {(r[0], int(r[1])): int(r[2]) for r in rows}

    async def claim_saga(self, instance_id: str, saga_id: str, *, force: bool) -> int | None:
        epoch = await self._call(
            "claim a saga", _aio_claim_one, self.command_timeout, instance_id, saga_id, force
        )
        return None if epoch is None else int(epoch)

    async def saga_owner(self, saga_id: str) -> tuple[str | None, int, bool]:
        row = await self._call(
            "read a saga's owner", _aio_fetchrow, self.command_timeout, _OWNER, (saga_id,)
        )
        if row is None:
            return None, 0, False
        return row[0], int(row[1]), bool(row[2])


def _pairs(loaded: Loaded | None) -> tuple[list[str] | None, list[int] | None]:
    """``loaded`` as the two arrays of ``_LOADED`` (types, versions); NULLs for any saga."""
    if loaded is None:
        return None, None
    pairs = sorted(loaded)
    return [t for t, _ in pairs], [v for _, v in pairs]


def _instance(row: Any) -> InstanceRecord:
    return InstanceRecord(
        instance_id=row[0],
        started_at=row[1],
        heartbeat_at=row[2],
        expires_at=row[3],
        info=json.loads(row[4]),
    )


# -- the units of database work (plain asyncio coroutines) ------------------------------------


async def _aio_fetchrow(pool: asyncpg.Pool, within: float, sql: str, args: Any) -> Any:
    async with pool.acquire(timeout=within) as conn:
        return await conn.fetchrow(sql, *args, timeout=within)


async def _aio_fetch(pool: asyncpg.Pool, within: float, sql: str, args: Any) -> Any:
    async with pool.acquire(timeout=within) as conn:
        return await conn.fetch(sql, *args, timeout=within)


async def _aio_execute(pool: asyncpg.Pool, within: float, sql: str, args: Any) -> str:
    async with pool.acquire(timeout=within) as conn:
        return str(await conn.execute(sql, *args, timeout=within))


async def _lock(conn: asyncpg.Connection, within: float) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK_KEY, timeout=within)


async def _aio_deregister(pool: asyncpg.Pool, within: float, instance_id: str) -> int:
    async with pool.acquire(timeout=within) as conn, conn.transaction():
        await _lock(conn, within)
        status = await conn.execute(
            "UPDATE sagas SET owner = NULL WHERE owner = $1", instance_id, timeout=within
        )
        await conn.execute(
            "DELETE FROM instances WHERE instance_id = $1", instance_id, timeout=within
        )
        return int(str(status).rsplit(" ", 1)[-1])


async def _aio_claim_orphans(
    pool: asyncpg.Pool,
    within: float,
    instance_id: str,
    limit: int,
    mine: bool,
    types: list[str] | None,
    versions: list[int] | None,
) -> list[Any]:
    async with pool.acquire(timeout=within) as conn, conn.transaction():
        await _lock(conn, within)
        rows = await conn.fetch(
            _CLAIM_ORPHANS, instance_id, max(limit, 0), mine, types, versions, timeout=within
        )
        if len(rows) < limit:  # no orphan left: forget the dead that own nothing
            await conn.execute(_FORGET_THE_DEAD, timeout=within)
        return list(rows)


async def _aio_claim_one(
    pool: asyncpg.Pool, within: float, instance_id: str, saga_id: str, force: bool
) -> int | None:
    async with pool.acquire(timeout=within) as conn, conn.transaction():
        await _lock(conn, within)
        row = await conn.fetchrow(_OWNER, saga_id, timeout=within)
        if row is None:
            return None
        owner, epoch, owner_live = row
        if owner == instance_id:
            return int(epoch)
        if owner_live and not force:
            return None
        await conn.execute(
            "UPDATE sagas SET owner = $1, owner_epoch = $2 WHERE saga_id = $3",
            instance_id,
            epoch + 1,
            saga_id,
            timeout=within,
        )
        return int(epoch) + 1
