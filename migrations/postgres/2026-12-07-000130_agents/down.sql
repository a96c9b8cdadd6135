DROP TABLE agents;
DROP INDEX access_tokens_bootstrap_expiry;
ALTER TABLE access_tokens DROP COLUMN expiry_audited_at;
ALTER TABLE access_tokens DROP COLUMN max_uses;
