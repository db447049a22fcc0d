-- Channels are switched on explicitly: an account's `channels` lists every channel that is on.
-- Accounts from before keep what they had: a channel they did not switch is on when its provider
-- was linked in those days (ProviderRegistration::on_for_older_accounts), and a provider linked
-- later starts off for them too.
ALTER TABLE accounts ADD COLUMN channels_explicit INTEGER NOT NULL DEFAULT 0;
