-- A per-account secret of a channel whose provider signs what it sends (the webhook's
-- `whsec_…`): made when the channel is first used while on, replaced on request.
ALTER TABLE channel_links ADD COLUMN secret TEXT;
