-- Live relay processes (heartbeats), so per-bot rate budgets can be shared among them.
CREATE TABLE processes (
    id         TEXT PRIMARY KEY,
    last_seen  BIGINT NOT NULL
);

-- Named leases across processes (e.g. the one process that polls Telegram updates).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
