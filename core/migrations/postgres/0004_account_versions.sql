-- A counter bumped by every change that can alter how intake treats an account (its settings,
-- plan and categories). Intake may decide from a cached copy of the account; the commit checks
-- the copy's version and sends the request back to be checked afresh when it moved.
ALTER TABLE accounts ADD COLUMN version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION pingpilot_account_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

CREATE TRIGGER accounts_version BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION pingpilot_account_changed();

CREATE FUNCTION pingpilot_category_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE accounts SET version = version + 1 WHERE id = OLD.account_id;
    ELSE
        UPDATE accounts SET version = version + 1 WHERE id = NEW.account_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER categories_version AFTER INSERT OR UPDATE OR DELETE ON categories
    FOR EACH ROW EXECUTE FUNCTION pingpilot_category_changed();
