//! Integration tests: each starts Tessera for real on an ephemeral port and
//! talks HTTP to it, on SQLite and (when TESSERA_TEST_DATABASE_URL is set)
//! on PostgreSQL.

mod common;

mod admin;
mod admin_token;
mod agent_run;
mod agents;
mod architecture;
mod audit;
mod authorization;
mod authorization_browser;
mod cli;
mod cli_keyring;
mod cli_login;
mod client_address;
mod client_updates;
mod clients;
mod conformance;
mod connections;
mod device;
mod discovery;
mod edge_syntax;
mod federation;
mod hostile_ids;
mod jwks_fetch;
mod keys;
mod login;
mod login_browser;
mod loopback_consent;
mod malformed;
mod metrics_labels;
mod openapi_contract;
mod outage;
mod pages;
mod personal_tokens;
mod private_key_jwt;
mod replicas;
mod secrets_in_debug;
mod service_users;
mod startup;
mod test_issuer;
mod token_status;
mod tokens_browser;
mod tokens_cli;
mod tokens_page;
mod trust_admin;
mod trust_cli;
mod users;
mod users_cli;
mod zitadel_sdk;
