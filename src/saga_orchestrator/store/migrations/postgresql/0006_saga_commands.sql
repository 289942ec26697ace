-- Commands for a saga that reached an instance other than its owner: cancel, or an event
-- delivered to it (docs/operations.md, "Several replicas"). The receiving instance inserts the
-- command here and notifies the owner (NOTIFY saga_commands, payload: the owner's instance id);
-- the owner applies it as a local command and writes its outcome, which the receiving instance
-- reads to answer its caller. The row is durable: if the owner dies first, the instance that
-- claims the saga next applies it.
CREATE TABLE saga_commands (
    command_id TEXT COLLATE "C" PRIMARY KEY,
    saga_id    TEXT COLLATE "C" NOT NULL,
    kind       TEXT NOT NULL,
    payload    JSONB NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    done_at    DOUBLE PRECISION,
    outcome    JSONB
);
CREATE INDEX saga_commands_pending_idx ON saga_commands (saga_id, created_at)
    WHERE done_at IS NULL;
CREATE INDEX saga_commands_created_idx ON saga_commands (created_at);
