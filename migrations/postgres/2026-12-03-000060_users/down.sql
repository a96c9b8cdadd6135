DROP INDEX service_users_owner_id;
ALTER TABLE service_users DROP COLUMN owner_id;
DROP TABLE users;
