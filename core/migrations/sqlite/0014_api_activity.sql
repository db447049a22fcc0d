-- The record of the API requests an account's keys made, refused ones included: the dashboard's
-- Activity page. One row per kind of request (its `digest`: key, method, path, status, message,
-- client, category) and minute, with how many there were, so a busy client adds a row a minute
-- rather than one per request. Each process writes it in batches (at most one a second) and
-- trims it to `retention.activity` and `retention.activity_rows`.
CREATE TABLE api_activity (
    id          INTEGER PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    minute      INTEGER NOT NULL,
    digest      TEXT NOT NULL,
    key_prefix  TEXT NOT NULL,
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      INTEGER NOT NULL,
    message     TEXT,
    client      TEXT,
    category    TEXT,
    count       INTEGER NOT NULL,
    first_at    INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    UNIQUE (account_id, minute, digest)
);
CREATE INDEX api_activity_by_account ON api_activity (account_id, last_at);
CREATE INDEX api_activity_by_age ON api_activity (last_at);
