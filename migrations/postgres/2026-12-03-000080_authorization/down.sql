DROP TABLE refresh_tokens;
DROP TABLE consents;
DROP TABLE authorization_codes;
ALTER TABLE clients DROP COLUMN require_pkce;
ALTER TABLE clients DROP COLUMN id_token_alg;
ALTER TABLE clients DROP COLUMN first_party;
