"""How the PostgreSQL store names its server in messages and logs: never with the password."""

import pytest

from saga_orchestrator.store.postgres import describe_dsn


@pytest.mark.parametrize(
    ("dsn", "described"),
    [
        ("postgresql://app:s3cret@db.internal:6432/sagas", "PostgreSQL at db.internal:6432/sagas"),
        ("postgres://app@127.0.0.1/sagas", "PostgreSQL at 127.0.0.1:5432/sagas"),
        ("postgresql:///sagas", "PostgreSQL at localhost:5432/sagas"),
        (
            "postgresql://app:s3cret@/sagas?host=/var/run/postgresql",
            "PostgreSQL at the Unix socket in /var/run/postgresql (port 5432)/sagas",
        ),
        (
            "postgresql://app@/sagas?host=/tmp&port=5433",
            "PostgreSQL at the Unix socket in /tmp (port 5433)/sagas",
        ),
        ("postgresql://app:s3cret@db:notaport/sagas", "PostgreSQL (unparsable DATABASE_URL)"),
    ],
)
def test_the_server_is_named_without_the_password(dsn: str, described: str) -> None:
    assert describe_dsn(dsn) == described
    assert "s3cret" not in describe_dsn(dsn)
