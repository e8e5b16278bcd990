-- 2 -> 3: indexes for retention, so that purging old runs never scans a table.
-- run_events is keyed by the event: deleting a run's rows by run_id needs its own index.
CREATE INDEX IF NOT EXISTS run_events_run ON run_events (run_id);
CREATE INDEX IF NOT EXISTS runs_ended ON runs (ended_ms) WHERE ended_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency (expires_ms);
CREATE INDEX IF NOT EXISTS flow_expires ON flow (expires_ms);
CREATE INDEX IF NOT EXISTS syncs_created ON syncs (created_ms);
CREATE INDEX IF NOT EXISTS operations_ended ON operations (ended_ms) WHERE ended_ms IS NOT NULL;
