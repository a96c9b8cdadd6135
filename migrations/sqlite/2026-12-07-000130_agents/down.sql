DROP TABLE agents;
ALTER TABLE access_tokens DROP COLUMN max_uses;
