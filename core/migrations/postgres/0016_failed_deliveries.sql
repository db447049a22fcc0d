-- The dashboard counts an account's failed deliveries of the last day on every page (its
-- banner) and per category: a partial index holds only failed deliveries, so counting them
-- reads those alone, and intake's new deliveries (PENDING) never touch it.
CREATE INDEX deliveries_failed ON deliveries(account_id, event_id) WHERE status = 'FAILED';
