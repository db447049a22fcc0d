-- Link tokens now link once and are replaced in the linking transaction. A chat linked before
-- that kept its used token: replace it (32 random hex characters from gen_random_uuid(), a
-- strong random source built in since PostgreSQL 13), so an old link that leaked cannot move
-- the deliveries. Unlinked tokens were never used and stay.
UPDATE channel_links SET link_token = replace(gen_random_uuid()::text, '-', '')
WHERE state IS NOT NULL;
