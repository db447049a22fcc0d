CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    email       TEXT,
    plan        TEXT NOT NULL,
    fields      TEXT NOT NULL DEFAULT '{}',   -- provider-declared account fields, JSON object
    channels    TEXT NOT NULL DEFAULT '{}',   -- explicit channel switches, JSON object of booleans
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE categories (
    id          INTEGER PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    color       INTEGER NOT NULL,
    emoji       TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    category_id     INTEGER REFERENCES categories(id) ON DELETE SET NULL,
    -- a snapshot of the category as it was when the event arrived
    category_name   TEXT NOT NULL,
    category_color  INTEGER NOT NULL,
    category_emoji  TEXT,
    description     TEXT NOT NULL,
    fields          TEXT NOT NULL,
    delivery_status TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX events_account ON events(account_id, id);
CREATE INDEX events_category ON events(category_id, created_at);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    account_id       TEXT NOT NULL,
    provider         TEXT NOT NULL,
    status           TEXT NOT NULL,           -- PENDING, DELIVERED, FAILED
    attempts         INTEGER NOT NULL DEFAULT 0, -- attempts counted against delivery.max_attempts
    queued_at        INTEGER NOT NULL,        -- start of the age limit (reset by a retry)
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    waiting_reason   TEXT,
    last_error       TEXT,
    delivered_at     INTEGER
);
CREATE INDEX deliveries_due ON deliveries(status, next_attempt_at);
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE INDEX deliveries_account ON deliveries(account_id, provider, status);

CREATE TABLE delivery_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    http_status  INTEGER,
    error        TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts(delivery_id);

CREATE TABLE quota_usage (
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    month       TEXT NOT NULL,   -- YYYY-MM, UTC
    events      INTEGER NOT NULL,
    PRIMARY KEY (account_id, month)
);

CREATE TABLE channel_links (
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    provider    TEXT NOT NULL,
    link_token  TEXT NOT NULL UNIQUE,
    state       TEXT,            -- provider state set when the user linked, JSON
    PRIMARY KEY (account_id, provider)
);

CREATE TABLE provider_values (
    provider  TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (provider, key)
);
