-- 4 -> 5: dashboard sessions signed out before they expire, so that a sign-out holds across
-- restarts and on every process of a cluster. Rows go once their session would have expired.
CREATE TABLE IF NOT EXISTS revoked_sessions (
    session_id TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS revoked_sessions_expires ON revoked_sessions (expires_ms);
