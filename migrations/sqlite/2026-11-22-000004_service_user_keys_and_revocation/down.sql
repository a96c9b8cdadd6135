DROP TABLE revoked_tokens;
DROP TABLE service_user_keys;
ALTER TABLE service_users DROP COLUMN audiences;
ALTER TABLE service_users DROP COLUMN scopes;
