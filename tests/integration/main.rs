//! Integration tests: each starts Tessera for real on an ephemeral port and
//! talks HTTP to it, on SQLite and (when TESSERA_TEST_DATABASE_URL is set)
//! on PostgreSQL.

mod common;

mod admin;
mod cli;
mod clients;
mod discovery;
mod keys;
mod malformed;
mod outage;
mod private_key_jwt;
mod service_users;
mod startup;
mod token_status;
