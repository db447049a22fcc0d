-- Routing per category: a JSON list of provider ids its events go to, or NULL for every channel
-- the account has on.
ALTER TABLE categories ADD COLUMN channels TEXT;
