-- Deliveries are claimed fairly across accounts. Each pending delivery has a place in the queue,
-- fair_key: at least the front of the queue (the lowest key pending on its provider) and behind
-- the account's other pending deliveries on that provider. Claims take due deliveries in key
-- order, so a quiet account's delivery goes next however long another account's backlog is, and
-- two busy accounts take turns. Deliveries already queued keep key 0: in id order, as before.
ALTER TABLE deliveries ADD COLUMN fair_key INTEGER NOT NULL DEFAULT 0;
DROP INDEX deliveries_queue;
CREATE INDEX deliveries_fair ON deliveries(provider, fair_key, next_attempt_at, lease_expires_at)
    WHERE status = 'PENDING';
CREATE INDEX deliveries_lane ON deliveries(provider, account_id, fair_key)
    WHERE status = 'PENDING';
