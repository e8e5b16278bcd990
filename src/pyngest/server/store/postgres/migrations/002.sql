-- 1 -> 2: indexes for retention, so that each slice of the purge is an index search (runs and
-- run_events have theirs since 001: runs_ended, run_events_run).
CREATE INDEX IF NOT EXISTS idempotency_expires ON idempotency (expires_ms);
CREATE INDEX IF NOT EXISTS flow_expires ON flow (expires_ms);
CREATE INDEX IF NOT EXISTS syncs_created ON syncs (created_ms);
CREATE INDEX IF NOT EXISTS operations_ended ON operations (ended_ms) WHERE ended_ms IS NOT NULL;
