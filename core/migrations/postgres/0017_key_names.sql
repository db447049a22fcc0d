-- API keys get an optional name ("billing server", "CI"), so a list of keys
-- says which one is which; keys made before have none.
ALTER TABLE api_keys ADD COLUMN name TEXT;
