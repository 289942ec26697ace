-- Instances and saga ownership (the PostgreSQL schema has the same; docs/store.md).
-- SQLite serves one process, so one instance owns everything; the tables keep the contract of
-- every backend the same.
CREATE TABLE instances (
    instance_id  TEXT PRIMARY KEY,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    expires_at   REAL NOT NULL,
    info         TEXT NOT NULL DEFAULT '{}'
);
ALTER TABLE sagas ADD COLUMN owner TEXT;
ALTER TABLE sagas ADD COLUMN owner_epoch INTEGER NOT NULL DEFAULT 0;
CREATE INDEX sagas_active_owner_idx ON sagas (owner, created_at)
    WHERE status IN ('pending', 'running', 'compensating');
