ALTER TABLE authorization_codes DROP COLUMN reused_at;
