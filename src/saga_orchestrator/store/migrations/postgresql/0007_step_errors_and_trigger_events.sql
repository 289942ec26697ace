-- Step errors kept, and the event that started a saga (docs/store.md).
--
-- saga_steps.error_type: the class of the step's last error; saga_steps.error_frames: the last
-- frames of its traceback (a JSON array of text, newest last; NULL: none), for an error raised
-- by the step's own code. sagas.trigger_event_id: the event the router started the saga for.
-- The indexes serve the saga list's filters in its own order (newest first); idempotency_key is
-- UNIQUE, hence indexed already.
--
-- saga_commit_batch is re-created from 0005_instances_and_saga_owners (same signature, same
-- fencing and answer codes) to write the new columns: a request's saga row has
-- trigger_event_id as its 15th element, its step rows error_type and error_frames as their
-- 12th and 13th. Nothing else in the function changed.

ALTER TABLE saga_steps ADD COLUMN error_type TEXT;
ALTER TABLE saga_steps ADD COLUMN error_frames JSONB;
ALTER TABLE sagas ADD COLUMN trigger_event_id TEXT COLLATE "C";
CREATE INDEX sagas_trigger_event_idx ON sagas (trigger_event_id, created_at DESC, saga_id DESC)
    WHERE trigger_event_id IS NOT NULL;
CREATE INDEX sagas_correlation_idx ON sagas (correlation_id, created_at DESC, saga_id DESC)
    WHERE correlation_id IS NOT NULL;

-- saga_commit_batch: a whole batch of appends in ONE statement, hence one round trip.
--
-- Called by the PostgreSQL backend with a single SELECT outside an explicit transaction: the
-- statement is its own transaction, so the reply comes after COMMIT. It does what a batch needs,
-- with the same rules as the other backends (store/_sql.py plan_batch, store/memory.py):
--
--   1. takes the write lock, pg_advisory_xact_lock(99411533168642) (postgres.py WRITE_LOCK_KEY),
--      so that positions are given in commit order across processes;
--   2. reads, under it, the versions of the batch's streams (rows locked), the owners of its
--      idempotency keys and which of its event ids are stored already;
--   3. decides each request in batch order, as the requests before it in the batch left things:
--      expected version not the stream's -> 1 (ConcurrencyError), an event id stored already or
--      used twice -> 3 (DuplicateEventId), the idempotency key owned by another saga -> 2
--      (DuplicateIdempotencyKey), a lease the stored saga's owner and epoch are not -> 4
--      (LeaseLost), else 0: accepted;
--   4. writes the accepted requests: events (positions allocated in batch order), stream
--      versions, the last saga row of each saga, the step rows of all of them (upserted by
--      (saga, step index): for each, the row of the last accepted request that carries it;
--      the saga's steps that no accepted request carries are left as they are), outbox
--      messages (ids in batch order).
--
-- p_batch is a JSON array with one element per request (one document: the client encodes it
-- with one call, and arrays of values would cost the client more per element):
--     [stream_id, expected_version (-1: any), events, saga, steps, outbox, lease]
--     events  [[event_id, event_type, data, metadata], ...]
--     saga    [the 14 columns of sagas of 0001, in table order, then trigger_event_id] or null
--     steps   [[step_index, name, status, attempts, started_at, finished_at, result, error,
--               compensation_status, compensation_attempts, compensation_error, error_type,
--               error_frames], ...]
--             the step rows to write, not necessarily all of the saga's
--     outbox  [[topic, event_id, event_type, data, metadata, occurred_at], ...]
--             occurred_at null (or left out): the message's created_at
--     lease   [instance_id, epoch] or null (left out): not fenced
-- Timestamps may be JSON strings ('inf'), for the values JSON has no number for.
-- p_now is the events' recorded_at and the outbox messages' created_at.
-- Results, one element per request: codes (above), versions (after the append when accepted,
-- the stream's current version for a ConcurrencyError), firsts (position of the first event
-- when accepted with events, else NULL), owners (the owning saga for a DuplicateIdempotencyKey,
-- the owning instance for a LeaseLost).
CREATE OR REPLACE FUNCTION saga_commit_batch(
    p_batch jsonb,
    p_now double precision,
    OUT codes integer[],
    OUT versions bigint[],
    OUT firsts bigint[],
    OUT owners text[]
) LANGUAGE plpgsql
-- Its statements touch a few rows of each table by key: index lookups (and nested loops driven
-- by the batch) are always the right plan. Without these settings the plans PL/pgSQL caches
-- for the session are made on the first calls, when a new database's tables are small, and
-- keep scanning the tables whole as they grow (until an ANALYZE replaces them).
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
-- and, those plans being right whatever the statistics, plan each statement once per session
-- (not again on every call while the planner thinks a custom plan might be cheaper).
SET plan_cache_mode = force_generic_plan
-- Compiling a statement this small would cost more than running it.
SET jit = off
AS $fn$
DECLARE
    n integer := jsonb_array_length(p_batch);
    -- per request: stream, expected version, number of events, saga id, idempotency key
    r_streams text[];
    r_expected bigint[];
    r_counts integer[];
    r_sagas text[];
    r_keys text[];
    event_ids text[];
    known_streams text[];
    known_versions bigint[];
    key_names text[];
    key_owners text[];
    taken text[];
    check_ids boolean;
    duplicate boolean;
    accepted integer[] := '{}';
    base bigint[];
    i integer;
    k integer;
    cnt integer;
    cur bigint;
    ev_from integer := 1;
    ids text[];
    key_owner text;
    r_lease_owners text[];
    r_lease_epochs bigint[];
    lease_sagas text[];
    lease_owners text[];
    lease_epochs bigint[];
    first_position bigint;
    total bigint := 0;
BEGIN
    codes := array_fill(0, ARRAY[n]);
    versions := array_fill(NULL::bigint, ARRAY[n]);
    firsts := array_fill(NULL::bigint, ARRAY[n]);
    owners := array_fill(NULL::text, ARRAY[n]);
    base := array_fill(NULL::bigint, ARRAY[n]);
    IF n = 0 THEN
        RETURN;
    END IF;

    PERFORM pg_advisory_xact_lock(99411533168642);

    SELECT array_agg(r ->> 0 ORDER BY o), array_agg((r ->> 1)::bigint ORDER BY o),
        array_agg(jsonb_array_length(r -> 2) ORDER BY o), array_agg(r -> 3 ->> 0 ORDER BY o),
        array_agg(r -> 3 ->> 12 ORDER BY o), array_agg(r -> 6 ->> 0 ORDER BY o),
        array_agg((r -> 6 ->> 1)::bigint ORDER BY o)
    INTO r_streams, r_expected, r_counts, r_sagas, r_keys, r_lease_owners, r_lease_epochs
    FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS t(r, o);
    SELECT coalesce(array_agg(e ->> 0 ORDER BY t.o, x.o), '{}') INTO event_ids
    FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS t(r, o),
        jsonb_array_elements(r -> 2) WITH ORDINALITY AS x(e, o);

    SELECT coalesce(array_agg(s.stream_id), '{}'), coalesce(array_agg(s.version), '{}')
    INTO known_streams, known_versions
    FROM (
        SELECT t.stream_id, t.version FROM streams t
        WHERE t.stream_id = ANY (r_streams) ORDER BY t.stream_id FOR UPDATE
    ) s;
    SELECT coalesce(array_agg(s.idempotency_key), '{}'), coalesce(array_agg(s.saga_id), '{}')
    INTO key_names, key_owners
    FROM sagas s WHERE s.idempotency_key = ANY (r_keys);
    SELECT coalesce(array_agg(s.saga_id), '{}'), coalesce(array_agg(s.owner), '{}'),
        coalesce(array_agg(s.owner_epoch), '{}')
    INTO lease_sagas, lease_owners, lease_epochs
    FROM sagas s
    WHERE s.saga_id = ANY (
        SELECT r_sagas[x] FROM generate_subscripts(r_sagas, 1) AS x
        WHERE r_lease_owners[x] IS NOT NULL AND r_sagas[x] IS NOT NULL
    );
    SELECT array_agg(e.event_id) INTO taken FROM events e WHERE e.event_id = ANY (event_ids);
    -- The ids need checking request by request only if one is stored or repeated in the batch.
    check_ids := taken IS NOT NULL
        OR (SELECT count(DISTINCT x) FROM unnest(event_ids) x) <> cardinality(event_ids);
    taken := coalesce(taken, '{}');

    first_position := nextval('events_position_seq');
    FOR i IN 1 .. n LOOP
        cnt := r_counts[i];
        k := array_position(known_streams, r_streams[i]);
        cur := CASE WHEN k IS NULL THEN 0 ELSE known_versions[k] END;
        IF check_ids THEN
            ids := event_ids[ev_from : ev_from + cnt - 1];
        END IF;
        ev_from := ev_from + cnt;
        key_owner := NULL;
        IF r_keys[i] IS NOT NULL THEN
            key_owner := key_owners[array_position(key_names, r_keys[i])];
        END IF;
        duplicate := false;
        IF check_ids THEN
            duplicate := ids && taken OR (SELECT count(DISTINCT x) FROM unnest(ids) x) <> cnt;
        END IF;
        IF r_expected[i] <> -1 AND r_expected[i] <> cur THEN
            codes[i] := 1;
            versions[i] := cur;
        ELSIF duplicate THEN
            codes[i] := 3;
        ELSIF key_owner IS NOT NULL AND key_owner IS DISTINCT FROM r_sagas[i] THEN
            codes[i] := 2;
            owners[i] := key_owner;
        ELSIF r_lease_owners[i] IS NOT NULL AND r_sagas[i] IS NOT NULL
            AND array_position(lease_sagas, r_sagas[i]) IS NOT NULL
            AND (lease_owners[array_position(lease_sagas, r_sagas[i])]
                    IS DISTINCT FROM r_lease_owners[i]
                OR lease_epochs[array_position(lease_sagas, r_sagas[i])]
                    IS DISTINCT FROM r_lease_epochs[i]) THEN
            codes[i] := 4;
            owners[i] := lease_owners[array_position(lease_sagas, r_sagas[i])];
        ELSE
            accepted := accepted || i;
            base[i] := cur;
            versions[i] := cur + cnt;
            IF cnt > 0 THEN
                IF k IS NULL THEN
                    known_streams := known_streams || r_streams[i];
                    known_versions := known_versions || (cur + cnt);
                ELSE
                    known_versions[k] := cur + cnt;
                END IF;
                firsts[i] := first_position + total;
                total := total + cnt;
                IF check_ids THEN
                    taken := taken || ids;
                END IF;
            END IF;
            IF key_owner IS NULL AND r_keys[i] IS NOT NULL AND r_sagas[i] IS NOT NULL THEN
                key_names := key_names || r_keys[i];
                key_owners := key_owners || r_sagas[i];
            END IF;
            IF r_lease_owners[i] IS NOT NULL AND r_sagas[i] IS NOT NULL
                AND array_position(lease_sagas, r_sagas[i]) IS NULL THEN
                -- a new saga: the batch's later requests are fenced by the lease it gets
                lease_sagas := lease_sagas || r_sagas[i];
                lease_owners := lease_owners || r_lease_owners[i];
                lease_epochs := lease_epochs || r_lease_epochs[i];
            END IF;
        END IF;
    END LOOP;
    -- Positions first_position .. first_position + total - 1 are this batch's (the write lock
    -- keeps other writers from the sequence meanwhile); give back what was not used.
    IF total = 0 THEN
        PERFORM setval('events_position_seq', first_position, false);
    ELSIF total > 1 THEN
        PERFORM setval('events_position_seq', first_position + total - 1);
    END IF;
    IF cardinality(accepted) = 0 THEN
        RETURN;
    END IF;

    IF total > 0 THEN
        INSERT INTO events
            (position, stream_id, version, event_id, event_type, data, metadata, recorded_at)
        SELECT firsts[a.i] + e.o - 1, r_streams[a.i], base[a.i] + e.o, e.v ->> 0, e.v ->> 1,
            e.v -> 2, e.v -> 3, p_now
        FROM unnest(accepted) AS a(i),
            jsonb_array_elements(p_batch -> (a.i - 1) -> 2) WITH ORDINALITY AS e(v, o);

        INSERT INTO streams (stream_id, version)
        SELECT r_streams[a.i], max(versions[a.i])
        FROM unnest(accepted) AS a(i) WHERE r_counts[a.i] > 0
        GROUP BY 1
        ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version;
    END IF;

    INSERT INTO sagas (saga_id, saga_type, saga_version, status, current_step, input, result,
        error, deadline_at, created_at, updated_at, version, idempotency_key, correlation_id,
        trigger_event_id, owner, owner_epoch)
    SELECT DISTINCT ON (r_sagas[a.i])
        s.v ->> 0, s.v ->> 1, (s.v ->> 2)::integer, s.v ->> 3, s.v ->> 4, s.v -> 5,
        nullif(s.v -> 6, 'null'::jsonb), s.v ->> 7, (s.v ->> 8)::double precision,
        (s.v ->> 9)::double precision, (s.v ->> 10)::double precision, (s.v ->> 11)::bigint,
        s.v ->> 12, s.v ->> 13, s.v ->> 14, r_lease_owners[a.i],
        coalesce(r_lease_epochs[a.i], 0)
    FROM unnest(accepted) AS a(i), LATERAL (SELECT p_batch -> (a.i - 1) -> 3) AS s(v)
    WHERE r_sagas[a.i] IS NOT NULL
    ORDER BY r_sagas[a.i], a.i DESC
    ON CONFLICT (saga_id) DO UPDATE SET
        saga_type = EXCLUDED.saga_type, saga_version = EXCLUDED.saga_version,
        status = EXCLUDED.status, current_step = EXCLUDED.current_step,
        input = EXCLUDED.input, result = EXCLUDED.result, error = EXCLUDED.error,
        deadline_at = EXCLUDED.deadline_at, created_at = EXCLUDED.created_at,
        updated_at = EXCLUDED.updated_at, version = EXCLUDED.version,
        idempotency_key = EXCLUDED.idempotency_key, correlation_id = EXCLUDED.correlation_id,
        trigger_event_id = EXCLUDED.trigger_event_id;

    -- The step rows of all accepted requests, upserted: for each (saga, step index) the row of
    -- the last accepted request that carries it (of a request that repeats an index, its last).
    -- A saga's steps that no accepted request carries stay as they are.
    INSERT INTO saga_steps (saga_id, step_index, name, status, attempts, started_at,
        finished_at, result, error, compensation_status, compensation_attempts,
        compensation_error, error_type, error_frames)
    SELECT DISTINCT ON (r_sagas[a.i], (t.v ->> 0)::integer)
        r_sagas[a.i], (t.v ->> 0)::integer, t.v ->> 1, t.v ->> 2, (t.v ->> 3)::integer,
        (t.v ->> 4)::double precision, (t.v ->> 5)::double precision,
        nullif(t.v -> 6, 'null'::jsonb), t.v ->> 7, t.v ->> 8, (t.v ->> 9)::integer,
        t.v ->> 10, t.v ->> 11, nullif(t.v -> 12, 'null'::jsonb)
    FROM unnest(accepted) AS a(i),
        jsonb_array_elements(p_batch -> (a.i - 1) -> 4) WITH ORDINALITY AS t(v, o)
    WHERE r_sagas[a.i] IS NOT NULL
    ORDER BY r_sagas[a.i], (t.v ->> 0)::integer, a.i DESC, t.o DESC
    ON CONFLICT (saga_id, step_index) DO UPDATE SET
        name = EXCLUDED.name, status = EXCLUDED.status, attempts = EXCLUDED.attempts,
        started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at,
        result = EXCLUDED.result, error = EXCLUDED.error,
        compensation_status = EXCLUDED.compensation_status,
        compensation_attempts = EXCLUDED.compensation_attempts,
        compensation_error = EXCLUDED.compensation_error,
        error_type = EXCLUDED.error_type, error_frames = EXCLUDED.error_frames
    -- A client may send steps that did not change (an engine that sends all of a saga's steps
    -- on every append sends most of them as stored): leave those be (no new row version).
    WHERE (saga_steps.name, saga_steps.status, saga_steps.attempts, saga_steps.started_at,
            saga_steps.finished_at, saga_steps.result, saga_steps.error,
            saga_steps.compensation_status, saga_steps.compensation_attempts,
            saga_steps.compensation_error, saga_steps.error_type, saga_steps.error_frames)
        IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.status, EXCLUDED.attempts,
            EXCLUDED.started_at, EXCLUDED.finished_at, EXCLUDED.result, EXCLUDED.error,
            EXCLUDED.compensation_status, EXCLUDED.compensation_attempts,
            EXCLUDED.compensation_error, EXCLUDED.error_type, EXCLUDED.error_frames);

    INSERT INTO outbox (topic, event_id, event_type, data, metadata, occurred_at, created_at)
    SELECT m.v ->> 0, m.v ->> 1, m.v ->> 2, m.v -> 3, m.v -> 4,
        (m.v ->> 5)::double precision, p_now
    FROM unnest(accepted) AS a(i),
        jsonb_array_elements(p_batch -> (a.i - 1) -> 5) WITH ORDINALITY AS m(v, o)
    ORDER BY a.i, m.o;
END;
$fn$;
