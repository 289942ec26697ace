-- Step errors kept, and the event that started a saga (docs/store.md).
--
-- saga_steps.error_type: the class of the step's last error; saga_steps.error_frames: the last
-- frames of its traceback as a JSON array of text, newest last (NULL: none), for an error raised
-- by the step's own code. sagas.trigger_event_id: the event the router started the saga for.
-- The indexes serve the saga list's filters in its own order (newest first); idempotency_key is
-- UNIQUE, hence indexed already.

ALTER TABLE saga_steps ADD COLUMN error_type TEXT;
ALTER TABLE saga_steps ADD COLUMN error_frames TEXT;
ALTER TABLE sagas ADD COLUMN trigger_event_id TEXT;
CREATE INDEX sagas_trigger_event_idx ON sagas (trigger_event_id, created_at DESC, saga_id DESC)
    WHERE trigger_event_id IS NOT NULL;
CREATE INDEX sagas_correlation_idx ON sagas (correlation_id, created_at DESC, saga_id DESC)
    WHERE correlation_id IS NOT NULL;
