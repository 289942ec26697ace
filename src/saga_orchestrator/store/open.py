"""Pick the store backend that ``DATABASE_URL`` names."""

from __future__ import annotations

from pathlib import Path

from saga_orchestrator.errors import ConfigError

from .backend import StoreBackend
from .postgres import PostgresBackend
from .sqlite import SQLiteBackend

SQLITE_FILENAME = "saga_orchestrator.db"
"""The embedded SQLite file in ``DATA_DIR`` when ``DATABASE_URL`` is unset."""


def sqlite_path(database_url: str) -> Path:
    """The file of a ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` URL.

    A relative path is relative to the current directory. Raises ``ConfigError``.
    """
    scheme, _, rest = database_url.partition("://")
    if scheme.lower() != "sqlite" or not rest.startswith("/") or "?" in rest or "#" in rest:
        raise ConfigError(
            "a SQLite DATABASE_URL is sqlite:///relative/path.db or sqlite:////absolute/path.db "
            "(no host, query or fragment)"
        )
    path = rest[1:]
    if not path or path.endswith("/"):
        raise ConfigError("a SQLite DATABASE_URL must name a file, e.g. sqlite:///data/store.db")
    return Path(path)


def make_backend(
    database_url: str | None, *, data_dir: Path, pool_size: int = 10, writers: int = 2
) -> StoreBackend:
    """A new, unopened backend for ``database_url``.

    * unset or empty: SQLite in ``data_dir / "saga_orchestrator.db"`` (``data_dir`` is created);
    * ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: that SQLite file;
    * ``postgresql://...`` or ``postgres://...``: PostgreSQL with a pool of ``pool_size``
      connections and ``writers`` writer connections (the backend must be used inside a
      trio-asyncio loop).

    Raises ``ConfigError`` for any other URL.
    """
    if not database_url:
        data_dir = Path(data_dir)
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create DATA_DIR {data_dir}: {exc}") from exc
        return SQLiteBackend(data_dir / SQLITE_FILENAME)
    scheme, sep, _ = database_url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        return SQLiteBackend(sqlite_path(database_url))
    if sep and scheme in ("postgresql", "postgres"):
        if pool_size < 1:
            raise ConfigError(f"the PostgreSQL pool size must be at least 1, not {pool_size}")
        if writers < 1:
            raise ConfigError(f"the PostgreSQL writers must be at least 1, not {writers}")
        return PostgresBackend(database_url, pool_size=pool_size, writers=writers)
    shown = f"{scheme}://..." if sep else "a string that is not a URL"
    raise ConfigError(
        f"DATABASE_URL {shown} is not supported: use postgresql://user:password@host:port/db, "
        "sqlite:///relative/path.db, sqlite:////absolute/path.db, or leave it unset for the "
        "embedded SQLite file in DATA_DIR"
    )
