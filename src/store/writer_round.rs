//! One round of the batch writer (`batch_writer.rs`): the round's
//! single-use ids and its audit events, committed together or not at all.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};

use super::connection::outside_any_transaction;
use super::prepared::Prepared;
use super::{AnyConnection, NewAuditRecord, assertions, audit};

/// Stores the round; for each id, whether it was new (`false`: a replay).
///
/// SQLite, in process, runs one transaction of cached single-row
/// statements. PostgreSQL gets one statement, which is its own
/// transaction: a round trip per round instead of one each for `BEGIN`,
/// the ids, every few audit rows and `COMMIT` (PostgreSQL's work for those
/// round trips shares the machine's cores with the server's).
pub(crate) fn store(
    conn: &mut AnyConnection,
    ids: &[(String, i64)],
    events: &[NewAuditRecord],
) -> QueryResult<Vec<bool>> {
    if let Some(pg) = one_statement_for(conn, events) {
        return store_in_one_statement(pg, ids, events);
    }
    conn.transaction(|conn| {
        let fresh = assertions::insert_all(conn, ids)?;
        audit::append_all(conn, events)?;
        Ok(fresh)
    })
}

/// The PostgreSQL connection, when a round with `events` may go as one
/// statement carrying them ([`audit_rows_cte`]); `None` sends it the
/// transaction path, which SQLite always takes.
///
/// A statement is its own transaction only outside one. A connection
/// whose transaction state diesel no longer knows takes the transaction
/// path, which refuses it, rather than reporting rows that may never
/// commit.
pub(crate) fn one_statement_for<'c>(
    conn: &'c mut AnyConnection,
    events: &[NewAuditRecord],
) -> Option<&'c mut PgConnection> {
    if events.len() > MAX_EVENTS_IN_ONE_STATEMENT || !outside_any_transaction(conn) {
        return None;
    }
    match conn {
        AnyConnection::Postgresql(pg) => Some(pg),
        AnyConnection::Sqlite(_) => None,
    }
}

/// A round with more events (a flush after an outage collects the whole
/// queue) goes in statements of at most 64 rows inside a transaction, so
/// no single message or statement grows with the backlog.
const MAX_EVENTS_IN_ONE_STATEMENT: usize = 1_024;

/// The round's audit events as a data-modifying `WITH` item, named
/// `audit`, over the statement's first ten parameters (bound by
/// [`bind_audit_columns`]). Shared by [`ROUND`] and the code claims' round,
/// which carries the events pending when it runs (`code_claims.rs`).
macro_rules! audit_rows_cte {
    () => {
        "audit AS (
    INSERT INTO audit_events (occurred_at_ms, actor_id, actor_kind, action, target,
                              client_id, remote_addr, outcome, details, actor_owner)
    SELECT occurred_at_ms, actor_id, actor_kind, action, target,
           client_id, remote_addr, outcome, details, actor_owner
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
         WITH ORDINALITY AS e(occurred_at_ms, actor_id, actor_kind, action, target,
                              client_id, remote_addr, outcome, details, actor_owner, n)
    ORDER BY n
)"
    };
}
pub(crate) use audit_rows_cte;

/// Binds [`AuditColumns`] as the ten parameters of [`audit_rows_cte`],
/// in its order, to a `sql_query` that has no parameters yet.
macro_rules! bind_audit_columns {
    ($query:expr, $columns:expr) => {{
        use diesel::sql_types::{Array, BigInt, Nullable, Text};
        let e = $columns;
        $query
            .bind::<Array<BigInt>, _>(e.occurred_at_ms)
            .bind::<Array<Nullable<Text>>, _>(e.actor_id)
            .bind::<Array<Text>, _>(e.actor_kind)
            .bind::<Array<Text>, _>(e.action)
            .bind::<Array<Nullable<Text>>, _>(e.target)
            .bind::<Array<Nullable<Text>>, _>(e.client_id)
            .bind::<Array<Nullable<Text>>, _>(e.remote_addr)
            .bind::<Array<Text>, _>(e.outcome)
            .bind::<Array<Text>, _>(e.details)
            .bind::<Array<Nullable<Text>>, _>(e.actor_owner)
    }};
}
pub(crate) use bind_audit_columns;

/// The audit rows go in through a data-modifying `WITH`, which runs to
/// completion whether or not the outer statement reads it; arrays and
/// `unnest` take any number of rows in twelve parameters, so the statement
/// has one text whatever the round holds and is kept prepared: PostgreSQL
/// parses it once per connection and, after five runs, plans it no more
/// (parsing and planning it each round took 29% of PostgreSQL's time
/// under `private_key_jwt` load). It joins nothing, so a generic plan's
/// guess of ten rows for `unnest` costs nothing.
/// Events keep their order, and so their ids' order, by `WITH ORDINALITY`;
/// keys go in sorted, so two replicas' rounds lock them in one order and
/// cannot deadlock.
const ROUND: &str = concat!(
    "WITH ",
    audit_rows_cte!(),
    "
INSERT INTO used_assertion_ids (jti_key, expires_at)
SELECT jti_key, expires_at FROM unnest($11::text[], $12::bigint[]) AS u(jti_key, expires_at)
ORDER BY jti_key
ON CONFLICT DO NOTHING
RETURNING jti_key"
);

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = Text)]
    jti_key: String,
}

/// The round's audit events as one array per column. Built by destructuring
/// every field, so a column added to [`NewAuditRecord`] (which its
/// `Insertable` derive would store on every other path) cannot be left out
/// of [`ROUND`] without a compile error here.
#[derive(Default)]
pub(crate) struct AuditColumns<'a> {
    pub(super) occurred_at_ms: Vec<i64>,
    pub(super) actor_id: Vec<Option<&'a str>>,
    pub(super) actor_kind: Vec<&'a str>,
    pub(super) action: Vec<&'a str>,
    pub(super) target: Vec<Option<&'a str>>,
    pub(super) client_id: Vec<Option<&'a str>>,
    pub(super) remote_addr: Vec<Option<&'a str>>,
    pub(super) outcome: Vec<&'a str>,
    pub(super) details: Vec<&'a str>,
    pub(super) actor_owner: Vec<Option<&'a str>>,
}

impl<'a> AuditColumns<'a> {
    pub(crate) fn of(events: &'a [NewAuditRecord]) -> Self {
        let mut columns = AuditColumns::default();
        for NewAuditRecord {
            occurred_at_ms,
            actor_id,
            actor_kind,
            action,
            target,
            client_id,
            remote_addr,
            outcome,
            details,
            actor_owner,
        } in events
        {
            columns.occurred_at_ms.push(*occurred_at_ms);
            columns.actor_id.push(actor_id.as_deref());
            columns.actor_kind.push(actor_kind);
            columns.action.push(action);
            columns.target.push(target.as_deref());
            columns.client_id.push(client_id.as_deref());
            columns.remote_addr.push(remote_addr.as_deref());
            columns.outcome.push(outcome);
            columns.details.push(details);
            columns.actor_owner.push(actor_owner.as_deref());
        }
        columns
    }
}

fn store_in_one_statement(
    pg: &mut PgConnection,
    ids: &[(String, i64)],
    events: &[NewAuditRecord],
) -> QueryResult<Vec<bool>> {
    let (rows, firsts) = assertions::first_of_each(ids);
    let stored: Vec<Stored> = Prepared(
        bind_audit_columns!(diesel::sql_query(ROUND), AuditColumns::of(events))
            .bind::<Array<Text>, _>(rows.iter().map(|r| r.jti_key).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(rows.iter().map(|r| r.expires_at).collect::<Vec<_>>()),
    )
    .load(pg)?;
    let inserted = stored.into_iter().map(|s| s.jti_key).collect();
    Ok(assertions::verdicts(ids, &firsts, &inserted))
}
