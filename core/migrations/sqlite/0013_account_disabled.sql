-- An operator can disable an account (`pingpilot account disable`): its keys are refused and its
-- deliveries wait until it is enabled again. Disabling moves the account's version, so intake's
-- cached copies of it are checked afresh.
ALTER TABLE accounts ADD COLUMN disabled_at INTEGER;

DROP TRIGGER accounts_version;
CREATE TRIGGER accounts_version
    AFTER UPDATE OF name, email, plan, fields, channels, disabled_at ON accounts
BEGIN
    UPDATE accounts SET version = version + 1 WHERE id = NEW.id;
END;
