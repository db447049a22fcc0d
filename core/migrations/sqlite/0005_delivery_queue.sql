-- The delivery queue indexes only deliveries that are not final: a delivered one leaves them.
-- By provider, so a claim for an idle provider does not walk another provider's backlog; with
-- the lease, so a claim skips leased rows without reading the table.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_queue ON deliveries(provider, next_attempt_at, lease_expires_at)
    WHERE status = 'PENDING';
CREATE INDEX deliveries_due ON deliveries(next_attempt_at, lease_expires_at)
    WHERE status = 'PENDING';

-- Only deliveries waiting for a channel are ever looked up by account.
DROP INDEX deliveries_account;
CREATE INDEX deliveries_waiting ON deliveries(account_id, provider)
    WHERE status = 'PENDING' AND waiting_reason IS NOT NULL;
