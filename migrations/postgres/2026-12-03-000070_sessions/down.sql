DROP TABLE recovery_codes;
DROP TABLE totp_credentials;
DROP TABLE login_throttle;
DROP TABLE sessions;
