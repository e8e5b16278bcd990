-- pyngest's server-side functions. Replaced at every start (all processes of a cluster run the
-- same pyngest version), so they change without a schema migration.

-- Fencing: each shard a commit writes to must be held by p_node with the epoch p_leases names.
-- Its advisory lock, taken shared until the transaction ends, makes a takeover (which takes it
-- exclusively while it changes the epoch) wait for this commit, or this commit see the new epoch.
--
-- pyngest_fence_many: several shards at once, in two statements whatever their number: their advisory
-- locks taken shared in ascending order (a takeover takes them exclusively in the same order, so
-- the two never deadlock), then one look at their owners and epochs.
CREATE OR REPLACE FUNCTION pyngest_fence_many(p_shards integer[], p_node text, p_leases jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_bad record;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1886287463, s)
    FROM (SELECT DISTINCT s FROM unnest(p_shards) AS s ORDER BY s) AS o;
    SELECT shard, owner, epoch INTO v_bad FROM shards
    WHERE shard = ANY (p_shards)
      AND (owner IS DISTINCT FROM p_node OR NOT p_leases ? shard::text OR epoch <> (p_leases->>shard::text)::bigint)
    ORDER BY shard LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'shard % is held by % (epoch %), not by this process', v_bad.shard, v_bad.owner, v_bad.epoch
            USING ERRCODE = 'PYF01';
    END IF;
END;
$$;

-- A batch of the common shapes applied set-wise: one statement for all of its rows, whatever
-- their number and kinds (events, run creations with their idempotency key and event links,
-- job deletes, job inserts, run updates, steps, history), instead of one per op.
--
-- The writer (setwise.py) sends a batch this way only when applying it in this fixed order
-- gives what applying its ops one by one gives: every run's creation precedes its other ops; a
-- run has at most one idempotency key, and no two runs of the batch share one; no run is both
-- created and updated, nor updated twice; no job is enqueued before a delete of its run's jobs,
-- no job id twice, and none both enqueued and deleted by id; no event twice; the registry check (p_batch->'rv') comes
-- before any event of the batch. The sub-statements share one snapshot, so a delete never sees
-- a row the same batch inserts, which is exactly the order the writer allows.
--
-- p_blobs: the batch's values, the group's p_blobs[p_b0 + 1 ...] (its ops' indexes count from
-- the group's first). Returns the batch's result object (as pyngest_apply's).
--
-- Its plans are cached for the writer's session, made once while the tables may still be small,
-- and know nothing of a batch's size: planned without sequential scans or hash joins, every
-- row of a table is found through its index (one lookup per batch row), as the statements of
-- the op by op path do, however large the tables grow.
CREATE OR REPLACE FUNCTION pyngest_apply_setwise(p_batch jsonb, p_blobs bytea[], p_b0 integer, p_now bigint,
                                                 p_xid bigint, p_checked integer[]) RETURNS jsonb
LANGUAGE plpgsql SET enable_seqscan = off SET enable_hashjoin = off SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_res   jsonb;
    v_held  jsonb := '{}';
    v_rid   text;
    v_seqs  jsonb;
    v_dups  jsonb := '[]';
    v_form  integer := (p_batch->>'f')::integer;
BEGIN
    -- The registry check of runs started with the batch's events (see pyngest_apply's 'ev'),
    -- before any of them is stored. Here rather than in pyngest_apply for this function's
    -- settings: its plan, cached while the events table may be small and without statistics,
    -- then finds the events through their index (events_unstarted) rather than by reading
    -- the table at every batch.
    IF p_batch ? 'rv' THEN
        IF (SELECT value::bigint FROM meta WHERE key = 'registry_version') <> (p_batch->>'rv')::bigint
           OR EXISTS (
               SELECT 1 FROM events AS e
               WHERE NOT e.started
                 AND e.event_id = ANY (ARRAY(SELECT jsonb_array_elements_text(p_batch->'rvids')))
                 AND (e.xid, e.seq) > (SELECT cursor_xid, cursor_seq FROM shards
                                       ORDER BY cursor_xid, cursor_seq LIMIT 1)) THEN
            RAISE EXCEPTION 'runs cannot start with their events (registry version %, or an earlier event with the same id to match first)',
                p_batch->>'rv' USING ERRCODE = 'PYF01';
        END IF;
    END IF;

    -- The statement of the batch's form (forms.py): its sub-statements only, those of the kinds
    -- of rows the batch has (PostgreSQL starts every sub-statement of a statement, empty or not).
    -- The forms are generated into this function when it is created (forms.functions_sql);
    -- test_setwise.py compares every one of them with op by op.
    -- @forms: forms.dispatch()

    -- Rare: a skipped run's holder, and events stored already, read in statements of their own
    -- (a fresh snapshot sees what a concurrent commit that made them conflict wrote).
    IF v_res->'skipped' <> '{}' THEN
        FOR v_rid IN SELECT jsonb_object_keys(v_res->'skipped') LOOP
            v_held := v_held || jsonb_build_object(v_rid,
                (SELECT run_id FROM idempotency WHERE key = v_res->'skipped'->>v_rid));
        END LOOP;
    END IF;
    v_seqs := v_res->'seqs';
    IF (v_res->>'stored')::integer < jsonb_array_length(COALESCE(p_batch->'ev', '[]')) THEN
        SELECT COALESCE(jsonb_agg(ev.internal_id ORDER BY x.i), '[]'), v_seqs || COALESCE(jsonb_object_agg(ev.internal_id, ev.seq), '{}')
        INTO v_dups, v_seqs
        FROM jsonb_array_elements(p_batch->'ev') WITH ORDINALITY AS x(e, i)
        JOIN events AS ev ON ev.internal_id = x.e->>0
        WHERE ev.internal_id = ANY (ARRAY(SELECT e->>0 FROM jsonb_array_elements(p_batch->'ev') AS e))
          AND NOT v_res->'seqs' ? (x.e->>0);
    END IF;
    RETURN jsonb_build_object(
        'created', v_res->'created', 'skipped', v_held, 'seqs', v_seqs, 'dups', v_dups,
        'ignored', v_res->'ignored', 'djobs', v_res->'djobs', 'dpauses', '[]'::jsonb, 'void', false, 'xid', p_xid,
        'fence', v_res->'fence');
END;
$$;

-- Apply a group of batches in one transaction and one round trip.
--
-- p_batches: one per batch, in order: either its ops, [op, ...], each an object with "t" (its
--   kind, see below), "rid" (the run it is about, if any) and "sh" (the shard it writes to,
--   when the writer must hold that shard's lease); or, for a batch of the common shapes, an
--   object of its rows by kind (pyngest_apply_setwise). Large values (step outputs, event
--   bodies, ...) are in p_blobs, by index.
-- p_shards: the shards the group names (its ops' "sh", its cursors' shards), ascending.
-- p_node, p_leases: the writing process and the lease epochs it holds ({"shard": epoch}). A
--   batch that writes to a shard not held with that epoch raises PYF01 (fenced): the caller
--   then applies the group's batches one by one, so only the stale one fails.
-- p_now: the writer's clock (idempotency keys expire by it).
-- Returns one result object per batch (see PostgresStore._result).
--
-- The batches and their ops are walked in PL/pgSQL (FOREACH, an index loop), not with a query
-- each: only the writes, the fencing and the checks are SQL statements.
CREATE OR REPLACE FUNCTION pyngest_apply(p_batches jsonb[], p_blobs bytea[], p_shards integer[], p_node text,
                                         p_leases jsonb, p_now bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_xid      bigint := pg_current_xact_id()::text::bigint;
    v_out      jsonb := '[]'::jsonb;
    v_checked  integer[] := p_shards;
    v_batch    jsonb;
    v_op       jsonb;
    v_f        jsonb;
    v_rid      text;
    v_skipped  text[];
    v_fence    integer[];
    v_created  jsonb;
    v_skips    jsonb;
    v_seqs     jsonb;
    v_dups     jsonb;
    v_ignored  jsonb;
    v_djobs    jsonb;
    v_dpauses  jsonb;
    v_void     boolean;
    v_taken    boolean;
    v_holder   text;
    v_key      text;
    v_shard    integer;
    v_n        integer;
    v_bad      record;
    v_at       integer;   -- the op's index in its batch (from 0)
    v_i        integer;   -- the position of the op being applied in its batch (from 1)
    v_void_at  integer;   -- the position of a void claim: later ops are not applied
    v_hist     boolean;   -- the batch has history rows (inserted together after its loop)
BEGIN
    -- Fence every shard the group names up front, in ascending order: a takeover takes the
    -- same locks exclusively in ascending order too, so the two never deadlock. (Shards found
    -- only while applying, from a deleted row, are fenced at the end of their batch.)
    -- Two statements for the whole group: the named shards' locks, then (in a snapshot taken
    -- once they are held) their epochs.
    PERFORM pg_advisory_xact_lock_shared(1886287463, s)
    FROM unnest(p_shards) WITH ORDINALITY AS x(s, i) ORDER BY i;
    SELECT shard, owner, epoch INTO v_bad FROM shards
    WHERE shard = ANY (v_checked)
      AND (owner IS DISTINCT FROM p_node OR NOT p_leases ? shard::text OR epoch <> (p_leases->>shard::text)::bigint)
    ORDER BY shard LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'shard % is held by % (epoch %), not by this process', v_bad.shard, v_bad.owner, v_bad.epoch
            USING ERRCODE = 'PYF01';
    END IF;

    FOREACH v_batch IN ARRAY p_batches LOOP
        -- A set-wise batch (its registry check, of runs started with its events, done first
        -- inside: see 'ev' below)
        IF jsonb_typeof(v_batch) = 'object' THEN
            -- (only the batch's own values: a function copies an array it is given)
            v_f := pyngest_apply_setwise(v_batch,
                                         p_blobs[(v_batch->>'b0')::integer + 1 : (v_batch->>'b1')::integer],
                                         (v_batch->>'b0')::integer, p_now, v_xid, v_checked);
            -- shards of jobs deleted by id that the group did not name, fenced as below
            IF v_f->'fence' <> '[]' THEN
                v_fence := ARRAY(SELECT jsonb_array_elements_text(v_f->'fence')::integer);
                PERFORM pyngest_fence_many(v_fence, p_node, p_leases);
                v_checked := v_checked || v_fence;
            END IF;
            v_out := v_out || jsonb_build_array(v_f - 'fence');
            CONTINUE;
        END IF;

        v_skipped := '{}'; v_fence := '{}'; v_created := '[]'; v_skips := '{}'; v_seqs := '{}';
        v_dups := '[]'; v_ignored := '[]'; v_djobs := '[]'; v_dpauses := '[]'; v_void := false;
        v_i := 0; v_void_at := NULL; v_hist := false;
        FOR v_at IN 0 .. jsonb_array_length(v_batch) - 1 LOOP
            v_op := v_batch->v_at;
            v_i := v_i + 1;
            v_rid := v_op->>'rid';
            -- ops about a run whose creation was skipped (idempotency) are skipped with it
            CONTINUE WHEN v_rid IS NOT NULL AND v_rid = ANY (v_skipped);
            IF v_op ? 'sh' THEN
                v_fence := v_fence || (v_op->>'sh')::integer;
            END IF;
            CASE v_op->>'t'
            WHEN 'step' THEN
                INSERT INTO steps (run_id, step_id, pos, value)
                VALUES (v_rid, v_op->>'s', (v_op->>'p')::integer, p_blobs[(v_op->>'v')::integer])
                ON CONFLICT DO NOTHING;
            WHEN 'enq' THEN
                INSERT INTO jobs (id, shard, run_id, kind, due_ms, priority, step_id, attempt, payload, remote)
                VALUES (v_op->>'id', (v_op->>'js')::integer, v_rid, v_op->>'k', (v_op->>'d')::bigint,
                        (v_op->>'pr')::integer, v_op->>'s', (v_op->>'a')::integer, NULLIF(v_op->'pl', 'null'),
                        (v_op->>'rm')::boolean)
                ON CONFLICT (id) DO NOTHING;
                GET DIAGNOSTICS v_n = ROW_COUNT;
                IF v_n = 0 THEN
                    v_ignored := v_ignored || to_jsonb(v_op->>'id');
                END IF;
            WHEN 'djob' THEN
                DELETE FROM jobs WHERE id = v_op->>'id' RETURNING shard INTO v_shard;
                IF FOUND THEN
                    v_fence := v_fence || v_shard;
                END IF;
            WHEN 'upd' THEN
                v_f := v_op->'f';
                UPDATE runs SET
                    status = CASE WHEN v_f ? 'status' THEN v_f->>'status' ELSE status END,
                    event_ids = CASE WHEN v_f ? 'event_ids' THEN v_f->'event_ids' ELSE event_ids END,
                    batch_id = CASE WHEN v_f ? 'batch_id' THEN v_f->>'batch_id' ELSE batch_id END,
                    cron = CASE WHEN v_f ? 'cron' THEN v_f->>'cron' ELSE cron END,
                    original_run_id = CASE WHEN v_f ? 'original_run_id' THEN v_f->>'original_run_id'
                                           ELSE original_run_id END,
                    queued_ms = CASE WHEN v_f ? 'queued_ms' THEN (v_f->>'queued_ms')::bigint ELSE queued_ms END,
                    started_ms = CASE WHEN v_f ? 'started_ms' THEN (v_f->>'started_ms')::bigint ELSE started_ms END,
                    ended_ms = CASE WHEN v_f ? 'ended_ms' THEN (v_f->>'ended_ms')::bigint ELSE ended_ms END,
                    output = CASE WHEN v_f ? 'output' THEN p_blobs[(v_f->>'output')::integer] ELSE output END,
                    version = CASE WHEN v_f ? 'version' THEN (v_f->>'version')::integer ELSE version END,
                    force_step_plan = CASE WHEN v_f ? 'force_step_plan' THEN (v_f->>'force_step_plan')::boolean
                                           ELSE force_step_plan END,
                    pending = CASE WHEN v_f ? 'pending' THEN NULLIF(v_f->'pending', 'null') ELSE pending END,
                    state_bytes = CASE WHEN v_f ? 'state_bytes' THEN (v_f->>'state_bytes')::bigint ELSE state_bytes END,
                    attrs = CASE WHEN v_f ? 'attrs' THEN NULLIF(v_f->'attrs', 'null') ELSE attrs END,
                    fn_version = CASE WHEN v_f ? 'fn_version' THEN (v_f->>'fn_version')::integer ELSE fn_version END
                WHERE id = v_rid;
            WHEN 'hist' THEN
                v_hist := true;  -- inserted with the batch's others after the loop
            WHEN 'ev' THEN
                -- Runs started with their events were decided by the registry at version rv, and
                -- take their events' idempotency keys now. Refused (as fenced) if a sync has moved
                -- the registry since, or if an earlier event with the same id may not be matched
                -- yet (after the oldest stored cursor; it must win the keys): the events are then
                -- stored again without their runs, for the matchers to start in order.
                IF v_op ? 'rv' THEN
                    IF (SELECT value::bigint FROM meta WHERE key = 'registry_version') <> (v_op->>'rv')::bigint
                       OR EXISTS (
                           SELECT 1 FROM events AS e
                           WHERE NOT e.started
                             AND e.event_id IN (SELECT x->>2 FROM jsonb_array_elements(v_op->'e') AS x
                                                WHERE (x->>8)::boolean)
                             AND (e.xid, e.seq) > (SELECT cursor_xid, cursor_seq FROM shards
                                                   ORDER BY cursor_xid, cursor_seq LIMIT 1)) THEN
                        RAISE EXCEPTION 'runs cannot start with their events (registry version %, or an earlier event with the same id to match first)',
                            v_op->>'rv' USING ERRCODE = 'PYF01';
                    END IF;
                END IF;
                WITH ins AS (
                    INSERT INTO events (internal_id, name, event_id, ts, received_ms, source, body, env_id, started)
                    SELECT e->>0, e->>1, e->>2, (e->>3)::bigint, (e->>4)::bigint, e->>5, p_blobs[(e->>6)::integer],
                           COALESCE(e->>7, '00000000-0000-4000-b000-000000000000'),  -- an op without one: the default environment
                           COALESCE((e->>8)::boolean, false)
                    FROM jsonb_array_elements(v_op->'e') AS e
                    ON CONFLICT (internal_id) DO NOTHING
                    RETURNING internal_id, seq
                )
                SELECT COALESCE(jsonb_object_agg(internal_id, seq), '{}'), count(*) INTO v_f, v_n FROM ins;
                v_seqs := v_seqs || v_f;
                IF v_n < jsonb_array_length(v_op->'e') THEN  -- some were stored already
                    FOR v_key IN SELECT e->>0 FROM jsonb_array_elements(v_op->'e') AS e WHERE NOT v_f ? (e->>0) LOOP
                        v_dups := v_dups || to_jsonb(v_key);
                        v_seqs := v_seqs || jsonb_build_object(v_key, (SELECT seq FROM events WHERE internal_id = v_key));
                    END LOOP;
                END IF;
            WHEN 'run' THEN
                -- claim the idempotency keys; one held by an unexpired entry skips the run
                v_taken := false;
                FOR v_key IN SELECT jsonb_array_elements_text(v_op->'k') LOOP
                    INSERT INTO idempotency (key, run_id, expires_ms) VALUES (v_key, v_rid, (v_op->>'x')::bigint)
                    ON CONFLICT (key) DO UPDATE SET run_id = EXCLUDED.run_id, expires_ms = EXCLUDED.expires_ms
                        WHERE idempotency.expires_ms <= p_now;
                    GET DIAGNOSTICS v_n = ROW_COUNT;
                    IF v_n = 0 THEN
                        SELECT run_id INTO v_holder FROM idempotency WHERE key = v_key;
                        v_taken := true;
                        EXIT;
                    END IF;
                END LOOP;
                IF v_taken THEN
                    DELETE FROM idempotency WHERE run_id = v_rid
                        AND key IN (SELECT jsonb_array_elements_text(v_op->'k'));
                    v_skipped := v_skipped || v_rid;
                    v_skips := v_skips || jsonb_build_object(v_rid, v_holder);
                    CONTINUE;
                END IF;
                v_f := v_op->'r';
                INSERT INTO runs (id, shard, fn_id, app_id, fn_version, status, event_ids, batch_id, cron,
                                  original_run_id, queued_ms, started_ms, ended_ms, output, version,
                                  force_step_plan, pending, state_bytes, attrs, env_id)
                VALUES (v_rid, (v_op->>'sh')::integer, v_f->>'fn_id', v_f->>'app_id', (v_f->>'fn_version')::integer,
                        v_f->>'status', v_f->'event_ids', v_f->>'batch_id', v_f->>'cron', v_f->>'original_run_id',
                        (v_f->>'queued_ms')::bigint, (v_f->>'started_ms')::bigint, (v_f->>'ended_ms')::bigint,
                        p_blobs[(v_f->>'output')::integer], (v_f->>'version')::integer,
                        (v_f->>'force_step_plan')::boolean, NULLIF(v_f->'pending', 'null'),
                        (v_f->>'state_bytes')::bigint, NULLIF(v_f->'attrs', 'null'),
                        COALESCE(v_f->>'env_id', '00000000-0000-4000-b000-000000000000'));
                INSERT INTO run_events (event_internal_id, run_id)
                SELECT e, v_rid FROM jsonb_array_elements_text(v_f->'event_ids') AS e
                ON CONFLICT DO NOTHING;
                v_created := v_created || to_jsonb(v_rid);
            WHEN 'pause' THEN
                v_f := v_op->'p';
                IF v_f->>'signal' IS NOT NULL THEN  -- a newer wait for the signal replaces the old
                    DELETE FROM pauses WHERE signal = v_f->>'signal' AND id <> v_f->>'id';
                END IF;
                INSERT INTO pauses (id, shard, run_id, step_id, kind, event_name, expression, signal, after_seq,
                                    expires_ms, data)
                VALUES (v_f->>'id', (v_op->>'sh')::integer, v_rid, v_f->>'step_id', v_f->>'kind',
                        v_f->>'event_name', v_f->>'expression', v_f->>'signal', v_xid - 1,
                        (v_f->>'expires_ms')::bigint, NULLIF(v_f->'data', 'null'))
                ON CONFLICT (id) DO UPDATE SET
                    shard = EXCLUDED.shard, run_id = EXCLUDED.run_id, step_id = EXCLUDED.step_id,
                    kind = EXCLUDED.kind, event_name = EXCLUDED.event_name, expression = EXCLUDED.expression,
                    signal = EXCLUDED.signal, after_seq = EXCLUDED.after_seq, expires_ms = EXCLUDED.expires_ms,
                    data = EXCLUDED.data;
            WHEN 'dp' THEN
                DELETE FROM pauses WHERE id = v_op->>'id' RETURNING shard INTO v_shard;
                IF FOUND THEN
                    v_fence := v_fence || v_shard;
                    v_dpauses := v_dpauses || to_jsonb(v_op->>'id');
                END IF;
            WHEN 'claim' THEN
                DELETE FROM pauses WHERE id = v_op->>'id';
                IF NOT FOUND THEN
                    v_void := true;
                    v_void_at := v_i;
                    EXIT;
                END IF;
                v_dpauses := v_dpauses || to_jsonb(v_op->>'id');
            WHEN 'drp' THEN
                WITH d AS (DELETE FROM pauses WHERE run_id = v_rid RETURNING id)
                SELECT v_dpauses || COALESCE(jsonb_agg(id), '[]') INTO v_dpauses FROM d;
            WHEN 'drj' THEN
                WITH d AS (
                    DELETE FROM jobs WHERE run_id = v_rid AND (v_op->>'keep' IS NULL OR id <> v_op->>'keep')
                    RETURNING id
                )
                SELECT v_djobs || COALESCE(jsonb_agg(id), '[]') INTO v_djobs FROM d;
            WHEN 'sf' THEN
                INSERT INTO flow (key, shard, value, expires_ms)
                VALUES (v_op->>'k', (v_op->>'sh')::integer, v_op->'v', (v_op->>'x')::bigint)
                ON CONFLICT (key) DO UPDATE SET shard = EXCLUDED.shard, value = EXCLUDED.value,
                                                expires_ms = EXCLUDED.expires_ms;
            WHEN 'df' THEN
                DELETE FROM flow WHERE key = v_op->>'k' AND (NOT v_op ? 'if' OR value = v_op->'if')
                RETURNING shard INTO v_shard;
                IF FOUND THEN
                    v_fence := v_fence || v_shard;
                END IF;
            WHEN 'skip' THEN
                INSERT INTO skips (event_internal_id, fn_id, reason, at_ms)
                VALUES (v_op->>'e', v_op->>'fn', v_op->>'why', (v_op->>'at')::bigint)
                ON CONFLICT DO NOTHING;
            WHEN 'cur' THEN
                SELECT v_fence || array_agg(s::integer) INTO v_fence FROM jsonb_array_elements_text(v_op->'shards') AS s;
                UPDATE shards SET cursor_xid = (v_op->>'x')::bigint, cursor_seq = (v_op->>'s')::bigint
                WHERE shard IN (SELECT s::integer FROM jsonb_array_elements_text(v_op->'shards') AS s)
                  AND (cursor_xid, cursor_seq) < ((v_op->>'x')::bigint, (v_op->>'s')::bigint);
            ELSE
                RAISE EXCEPTION 'pyngest_apply: unknown operation %', v_op->>'t';
            END CASE;
        END LOOP;

        -- The batch's history rows, in order, in one statement: those of runs not skipped, and
        -- before a void claim.
        IF v_hist THEN
            INSERT INTO history (run_id, at_ms, kind, step_id, name, attempt, data)
            SELECT o->>'rid', (o->>'at')::bigint, o->>'k', o->>'s', o->>'n', (o->>'a')::integer,
                   p_blobs[(o->>'v')::integer]
            FROM jsonb_array_elements(v_batch) WITH ORDINALITY AS b(o, i)
            WHERE o->>'t' = 'hist' AND (v_void_at IS NULL OR i < v_void_at)
              AND NOT COALESCE(o->>'rid' = ANY (v_skipped), false)
            ORDER BY i;
        END IF;

        -- Fencing of shards found while applying (see above), when there are any.
        IF NOT (v_fence <@ v_checked) THEN
            v_fence := ARRAY(SELECT DISTINCT s FROM unnest(v_fence) AS s WHERE s <> ALL (v_checked));
            PERFORM pyngest_fence_many(v_fence, p_node, p_leases);
            v_checked := v_checked || v_fence;
        END IF;

        v_out := v_out || jsonb_build_array(jsonb_build_object(
            'created', v_created, 'skipped', v_skips, 'seqs', v_seqs, 'dups', v_dups, 'ignored', v_ignored,
            'djobs', v_djobs, 'dpauses', v_dpauses, 'void', v_void, 'xid', v_xid));
    END LOOP;
    RETURN v_out;
END;
$$;
