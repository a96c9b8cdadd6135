DROP TABLE audit_events;
DROP TABLE access_tokens;
DROP TABLE service_users;
DROP TABLE signing_keys;
DROP TABLE instance;
