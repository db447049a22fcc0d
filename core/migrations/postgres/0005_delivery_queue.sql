-- Only deliveries waiting for a channel are ever looked up by account.
DROP INDEX deliveries_account;
CREATE INDEX deliveries_waiting ON deliveries(account_id, provider)
    WHERE status = 'PENDING' AND waiting_reason IS NOT NULL;

-- When the next delivery falls due, without walking the queue.
CREATE INDEX deliveries_next ON deliveries(next_attempt_at) WHERE status = 'PENDING';

-- A claim and a lease renewal change only the lease columns: with no index on them and room left
-- on each page, PostgreSQL updates the row in place (a HOT update) instead of adding an entry to
-- every index. Lease renewal (every lease/3) walks the pending deliveries instead.
DROP INDEX deliveries_lease;
ALTER TABLE deliveries SET (fillfactor = 80);
