-- The dashboard's sign-in: sessions found by the hash of their cookie value, and one-time sign-in
-- links found by the hash of their token. Neither changes how intake treats an account, so
-- neither bumps accounts.version (the 0004 triggers watch only accounts and categories).

CREATE TABLE dashboard_sessions (
    id_hash     TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
-- Expired sessions are deleted by expiry; the account index serves the cascade.
CREATE INDEX dashboard_sessions_expires ON dashboard_sessions(expires_at);
CREATE INDEX dashboard_sessions_account ON dashboard_sessions(account_id);

CREATE TABLE login_links (
    token_hash  TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER             -- set once, by the one redemption that succeeds
);
CREATE INDEX login_links_expires ON login_links(expires_at);
CREATE INDEX login_links_account ON login_links(account_id);
