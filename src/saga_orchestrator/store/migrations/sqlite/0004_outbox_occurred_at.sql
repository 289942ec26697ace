-- The outbox keeps when a message's event happened: a message published again (POST
-- /events/replay goes through the outbox) carries the time its event was recorded, not the
-- time of the replay. NULL: the message's created_at (when a new event is recorded).
ALTER TABLE outbox ADD COLUMN occurred_at REAL;
