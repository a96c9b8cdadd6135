-- Agents' clients and bootstrap tokens go with the table that bounds
-- them: left behind, an agent would be a client whose key never expires.
DELETE FROM clients WHERE id IN (SELECT client_id FROM agents);
DELETE FROM access_tokens WHERE kind = 'ab';
DROP TABLE agents;
DROP INDEX access_tokens_bootstrap_expiry;
ALTER TABLE access_tokens DROP COLUMN expiry_audited_at;
ALTER TABLE access_tokens DROP COLUMN max_uses;
