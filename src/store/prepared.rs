//! Statements prepared once per connection that diesel would prepare anew
//! on every call.
//!
//! diesel keeps no `UPDATE` in its statement cache: a changeset may leave
//! out its `None` fields, so one query type can stand for many SQL texts.
//! An update whose changeset has no optional field has one text, and
//! caching it (keyed by that text, as diesel keys every statement without
//! a static query id) only saves its parsing: on SQLite 5% of the server's
//! CPU in the redemption benchmark, and on PostgreSQL a parse and a plan
//! a call. The same holds for an upsert (`ON CONFLICT … DO UPDATE`) and
//! for a `sql_query` of a constant text. Use [`Prepared`] only for
//! statements of one text; each takes one cache slot per connection.
//!
//! Only a statement that returns rows (`get_result`, `get_results`,
//! `load`) is kept: diesel's `execute` hands the connection a reference to
//! the statement, and the cache asks the reference, which does not pass
//! the question on to [`Prepared`] and finds the update's changeset
//! unsafe to cache. Give a wrapped `UPDATE` a `RETURNING` clause and load
//! what it returns (a test below checks both ways).
//!
//! PostgreSQL keeps a generic plan for a prepared statement after five
//! runs: write such a statement so that a plan made without its
//! parameters' values stays good, and name its result columns (`c.*`
//! would change shape under a migration, and a cached statement whose
//! result type changed fails on every call).

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// `statement`, to be kept prepared. Only for statements of one text: an
/// `eq_any` list, for one, would take a cache slot per length. A
/// `sql_query` of a constant text qualifies (diesel caches none: its text
/// could be built at run time).
#[derive(Debug, Clone, Copy)]
pub struct Prepared<Q>(pub Q);

impl<Q, DB> QueryFragment<DB> for Prepared<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for Prepared<Q> {}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{InstrumentationEvent, SimpleConnection};
    use diesel::prelude::*;

    use super::Prepared;

    diesel::table! {
        counters (name) {
            name -> Text,
            value -> BigInt,
        }
    }

    /// The statements a connection put in its cache.
    fn cached_statements(conn: &mut SqliteConnection) -> Arc<Mutex<Vec<String>>> {
        let cached = Arc::new(Mutex::new(Vec::new()));
        let seen = cached.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                seen.lock().unwrap().push(sql.to_owned());
            }
        });
        cached
    }

    #[test]
    fn an_update_is_prepared_once_only_when_wrapped() {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute(
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
             INSERT INTO counters VALUES ('a', 0), ('b', 0);",
        )
        .unwrap();
        let cached = cached_statements(&mut conn);
        for name in ["a", "b", "a"] {
            diesel::update(counters::table.find(name))
                .set(counters::value.eq(counters::value + 1))
                .execute(&mut conn)
                .unwrap();
        }
        assert!(cached.lock().unwrap().is_empty(), "diesel caches no update");
        for name in ["a", "b", "a"] {
            let value: i64 = Prepared(
                diesel::update(counters::table.find(name))
                    .set(counters::value.eq(counters::value + 1))
                    .returning(counters::value),
            )
            .get_result(&mut conn)
            .unwrap();
            assert!(value >= 2);
        }
        assert_eq!(cached.lock().unwrap().len(), 1, "one text, prepared once");
        // `execute` asks a reference to the statement, which answers for
        // its changeset, not for `Prepared`: not kept.
        for name in ["a", "b", "a"] {
            Prepared(
                diesel::update(counters::table.find(name))
                    .set(counters::value.eq(counters::value - 1)),
            )
            .execute(&mut conn)
            .unwrap();
        }
        assert_eq!(cached.lock().unwrap().len(), 1, "execute keeps nothing");
    }
}
