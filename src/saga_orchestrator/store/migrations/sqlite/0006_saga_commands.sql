-- Commands for a saga that reached an instance other than its owner (the PostgreSQL schema has
-- the same; SQLite serves one process, so none is ever forwarded, but the contract is one).
CREATE TABLE saga_commands (
    command_id TEXT PRIMARY KEY,
    saga_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL,
    done_at    REAL,
    outcome    TEXT
);
CREATE INDEX saga_commands_pending_idx ON saga_commands (saga_id, created_at)
    WHERE done_at IS NULL;
CREATE INDEX saga_commands_created_idx ON saga_commands (created_at);
