DROP INDEX authorization_codes_session;
DROP INDEX authorization_codes_user;
DROP INDEX refresh_tokens_revoked;
DROP INDEX refresh_tokens_idle_expires;
DROP INDEX refresh_tokens_family_expires;
