DROP TRIGGER trust_policies_changed ON trust_policies;
DROP TRIGGER trusted_issuers_changed ON trusted_issuers;
DROP TABLE trust_policies;
DROP TABLE trusted_issuers;
