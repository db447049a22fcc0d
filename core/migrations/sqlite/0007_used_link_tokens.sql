-- Link tokens now link once and are replaced in the linking transaction. A chat linked before
-- that kept its used token: replace it (32 random hex characters, within Telegram's deep-link
-- alphabet), so an old link that leaked cannot move the deliveries. Unlinked tokens were never
-- used and stay.
UPDATE channel_links SET link_token = lower(hex(randomblob(16))) WHERE state IS NOT NULL;
