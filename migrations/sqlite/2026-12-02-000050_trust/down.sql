DROP TABLE trust_policies;
DROP TABLE trusted_issuers;
