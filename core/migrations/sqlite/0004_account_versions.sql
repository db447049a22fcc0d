-- A counter bumped by every change that can alter how intake treats an account (its settings,
-- plan and categories). Intake may decide from a cached copy of the account; the commit checks
-- the copy's version and sends the request back to be checked afresh when it moved.
ALTER TABLE accounts ADD COLUMN version INTEGER NOT NULL DEFAULT 0;

-- The inner UPDATE sets only `version`, so it does not fire this trigger again.
CREATE TRIGGER accounts_version AFTER UPDATE OF name, email, plan, fields, channels ON accounts
BEGIN
    UPDATE accounts SET version = version + 1 WHERE id = NEW.id;
END;

CREATE TRIGGER categories_inserted_version AFTER INSERT ON categories
BEGIN
    UPDATE accounts SET version = version + 1 WHERE id = NEW.account_id;
END;

CREATE TRIGGER categories_updated_version AFTER UPDATE ON categories
BEGIN
    UPDATE accounts SET version = version + 1 WHERE id = NEW.account_id;
END;

CREATE TRIGGER categories_deleted_version AFTER DELETE ON categories
BEGIN
    UPDATE accounts SET version = version + 1 WHERE id = OLD.account_id;
END;
