-- The initial schema of the SQLite store.
-- Timestamps are epoch seconds in REAL (an IEEE double: the Python floats round-trip exactly).
-- JSON values are TEXT. Text compares with the default BINARY collation (code point order).

CREATE TABLE events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    event_id    TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    data        TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    UNIQUE (stream_id, version)
);
CREATE INDEX events_event_type_idx ON events (event_type);

-- The current version of each stream.
CREATE TABLE streams (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL
) WITHOUT ROWID;

-- The queryable projection of sagas; version is the saga stream's version.
CREATE TABLE sagas (
    saga_id         TEXT PRIMARY KEY,
    saga_type       TEXT NOT NULL,
    saga_version    INTEGER NOT NULL,
    status          TEXT NOT NULL,
    current_step    TEXT,
    input           TEXT NOT NULL,
    result          TEXT,
    error           TEXT,
    deadline_at     REAL NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    version         INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE,
    correlation_id  TEXT
);
CREATE INDEX sagas_created_idx ON sagas (created_at DESC, saga_id DESC);
-- Filtered listings page in the same order, so the filter leads the same key.
CREATE INDEX sagas_status_idx ON sagas (status, created_at DESC, saga_id DESC);
CREATE INDEX sagas_type_idx ON sagas (saga_type, created_at DESC, saga_id DESC);

CREATE TABLE saga_steps (
    saga_id               TEXT NOT NULL REFERENCES sagas (saga_id) ON DELETE CASCADE,
    step_index            INTEGER NOT NULL,
    name                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    attempts              INTEGER NOT NULL DEFAULT 0,
    started_at            REAL,
    finished_at           REAL,
    result                TEXT,
    error                 TEXT,
    compensation_status   TEXT NOT NULL DEFAULT 'not_run',
    compensation_attempts INTEGER NOT NULL DEFAULT 0,
    compensation_error    TEXT,
    PRIMARY KEY (saga_id, step_index)
) WITHOUT ROWID;

CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    data       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    created_at REAL NOT NULL,
    sent_at    REAL
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
