-- Every event's delivery_status is rewritten once its deliveries are done. No index covers that
-- column, so with room left on the page PostgreSQL updates the row in place (a HOT update)
-- instead of adding a new entry to each of the table's three indexes.
ALTER TABLE events SET (fillfactor = 85);
