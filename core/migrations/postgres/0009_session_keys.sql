-- A dashboard session remembers the API key it was signed in with (NULL: a one-time link), so
-- that revoking the key ends it: the session lookup accepts a key's session only while the key
-- is live, and revoking deletes the key's sessions. Sessions older than this column cannot say
-- which key they came from, so they end here: their browsers sign in once more.
-- Touches nothing but dashboard_sessions (migrations of other branches take the numbers around it).
DELETE FROM dashboard_sessions;
ALTER TABLE dashboard_sessions
    ADD COLUMN key_id TEXT COLLATE "C" REFERENCES api_keys(id) ON DELETE CASCADE;
-- Serves revocation's delete.
CREATE INDEX dashboard_sessions_key ON dashboard_sessions(key_id);
