ALTER TABLE service_users DROP COLUMN max_token_lifetime;
ALTER TABLE service_users DROP COLUMN enabled;
