"""The SQL migrations of the store, one directory per dialect.

Each migration is a file ``NNNN_name.sql`` in ``postgresql/`` and ``sqlite/``; a version that
changes tables is in both dialects, so that it names the same logical schema everywhere.
PostgreSQL also has versions that only create or replace server-side functions
(``0002_commit_batch_function``, ``0003_commit_batch_upserts_steps``), which SQLite does not
have; a version may do both (``0004_outbox_occurred_at``: a column in both, the function again
in PostgreSQL). A migration is applied once, in a transaction, and recorded in
``schema_migrations`` (see :mod:`saga_orchestrator.store.migrate`). Never edit a migration that
has shipped: add the next one.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal

import attrs

Dialect = Literal["postgresql", "sqlite"]

_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@attrs.frozen
class Migration:
    version: int
    name: str
    """``"0001_initial"``: the file name without ``.sql``."""
    sql: str


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The migrations of ``dialect``, in version order."""
    folder = resources.files(__name__) / dialect
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _NAME_RE.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two {dialect} migrations have version {version:04d}")
        found[version] = Migration(
            version=version, name=entry.name.removesuffix(".sql"), sql=entry.read_text("utf-8")
        )
    return [found[v] for v in sorted(found)]
