-- An operator can disable an account (`pingpilot account disable`): its keys are refused and its
-- deliveries wait until it is enabled again. Every update moves the account's version (see
-- 0004_account_versions), so intake's cached copies of it are checked afresh.
ALTER TABLE accounts ADD COLUMN disabled_at BIGINT;
