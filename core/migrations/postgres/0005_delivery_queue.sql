-- Only deliveries waiting for a channel are ever looked up by account.
DROP INDEX deliveries_account;
CREATE INDEX deliveries_waiting ON deliveries(account_id, provider)
    WHERE status = 'PENDING' AND waiting_reason IS NOT NULL;

-- When the next delivery falls due, without walking the queue.
CREATE INDEX deliveries_next ON deliveries(next_attempt_at) WHERE status = 'PENDING';
