//! The poll's statement as a query diesel keeps prepared. `sql_query` is
//! never cached, nor is an `UPDATE` built with the DSL; this one has the
//! same text on every call, so each connection parses and plans it once.
//! On SQLite, where the database runs inside the server, parsing it cost
//! about as much as running it (issue 11's polling benchmark).

use std::sync::OnceLock;

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, HasSqlType, Text, Untyped};
use diesel::{QueryResult, RunQueryDsl};

use super::AnyConnection;

/// Where a parameter goes in the statement's text.
const PARAMETER: char = '\u{1}';

/// One poll: the statement's text around its five parameters, for the
/// connection's backend, and their values.
pub(super) struct PollStatement<'a> {
    parts: &'static [String],
    pub now_ms: i64,
    pub claim: &'a str,
    pub device_digest: &'a str,
    pub client_id: &'a str,
}

impl<'a> PollStatement<'a> {
    /// `sql` gives the statement's text for a backend, with [`PARAMETER`]
    /// where `now_ms`, `claim`, `now_ms`, `device_digest` and `client_id`
    /// go, in that order.
    pub fn new(
        conn: &AnyConnection,
        sql: fn(&AnyConnection, char) -> String,
        now_ms: i64,
        claim: &'a str,
        device_digest: &'a str,
        client_id: &'a str,
    ) -> Self {
        static POSTGRES: OnceLock<Vec<String>> = OnceLock::new();
        static SQLITE: OnceLock<Vec<String>> = OnceLock::new();
        let cell = match conn {
            AnyConnection::Postgresql(_) => &POSTGRES,
            AnyConnection::Sqlite(_) => &SQLITE,
        };
        let parts = cell.get_or_init(|| {
            let parts: Vec<String> = sql(conn, PARAMETER)
                .split(PARAMETER)
                .map(str::to_owned)
                .collect();
            assert_eq!(parts.len(), 6, "the poll takes five parameters");
            parts
        });
        PollStatement {
            parts,
            now_ms,
            claim,
            device_digest,
            client_id,
        }
    }
}

impl<DB> QueryFragment<DB> for PollStatement<'_>
where
    DB: Backend + HasSqlType<BigInt> + HasSqlType<Text>,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(&self.parts[0]);
        out.push_bind_param::<BigInt, _>(&self.now_ms)?;
        out.push_sql(&self.parts[1]);
        out.push_bind_param::<Text, _>(self.claim)?;
        out.push_sql(&self.parts[2]);
        out.push_bind_param::<BigInt, _>(&self.now_ms)?;
        out.push_sql(&self.parts[3]);
        out.push_bind_param::<Text, _>(self.device_digest)?;
        out.push_sql(&self.parts[4]);
        out.push_bind_param::<Text, _>(self.client_id)?;
        out.push_sql(&self.parts[5]);
        Ok(())
    }
}

/// No static id: diesel caches the statement by its text.
impl QueryId for PollStatement<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for PollStatement<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for PollStatement<'_> {}
