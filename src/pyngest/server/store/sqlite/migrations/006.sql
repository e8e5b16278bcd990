-- 5 -> 6: dashboard sessions signed out before they expire, so that a sign-out survives a
-- restart. Rows go once their session would have expired.
CREATE TABLE IF NOT EXISTS revoked_sessions (
    session_id TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revoked_sessions_expires ON revoked_sessions (expires_ms);
