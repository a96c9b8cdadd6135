//! Fresh-code claims in rounds: the batch writer (`batch_writer.rs`)
//! gathers the token endpoint's `authorization_code` claims and marks them
//! used together, one commit for the round instead of one each.
//!
//! A round also stores the audit events queued when it runs (up to the
//! writer's batch size, and not while they wait out a backoff), in the
//! same statement and commit: under a stream of redemptions the writer otherwise
//! spent as long again on separate rounds of audit events as on claims
//! (PostgreSQL, load benchmark), and the claims queued behind them.
//!
//! A claim is the fast path of [`AuthorizationStore::redeem_code`]: it marks
//! an unused code used (RFC 6749 §4.1.2: a code is used once), names the
//! access token the redemption will mint, and checks that the code's browser
//! session is alive, all in the statement that claims it. What a round does
//! not claim (an unknown code, a reused one, an ended session) goes on to
//! `redeem_code`, whose transaction tells those apart and revokes what a
//! reuse must.
//!
//! [`AuthorizationStore::redeem_code`]: super::AuthorizationStore::redeem_code

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};

use super::authorization::{CodeAccess, CodeRecord, claim_in_one_statement};
use super::prepared::Prepared;
use super::writer_round::{AuditColumns, audit_rows_cte, bind_audit_columns, one_statement_for};
use super::{AnyConnection, NewAuditRecord, audit};

/// One code to claim, by the digest of the code the client presented.
#[derive(Debug, Clone)]
pub struct CodeClaim {
    pub digest: String,
    pub access: CodeAccess,
    pub now: i64,
}

/// Claims each code it can and stores `events`, all or nothing; at each
/// claim's index, its record when this claim took it. A code named twice
/// in one round goes to one claim only.
///
/// PostgreSQL takes the round as one statement, its own transaction (one
/// round trip, one commit), which skips rows another transaction holds
/// ([`CLAIM_ROUND`]); SQLite, in process, as one transaction of the single
/// claim's prepared statement (SQLite has no row locks to skip) and the
/// events' inserts.
pub(crate) fn claim_all(
    conn: &mut AnyConnection,
    claims: &[CodeClaim],
    events: &[NewAuditRecord],
) -> QueryResult<Vec<Option<CodeRecord>>> {
    // Outside a transaction only: inside one (or with diesel's transaction
    // state broken) the transaction path refuses or nests as it should.
    if let Some(pg) = one_statement_for(conn, events) {
        return claim_in_one_round(pg, claims, events);
    }
    conn.transaction(|conn| {
        let claimed = claims
            .iter()
            .map(|c| claim_in_one_statement(conn, &c.digest, &c.access, c.now))
            .collect::<QueryResult<_>>()?;
        audit::append_all(conn, events)?;
        Ok(claimed)
    })
}

/// The round as [`claim_in_one_statement`] states one claim, over arrays,
/// except that it never waits for a lock: the writer's one connection
/// serves every round, and a round waiting on a row (a disable deleting
/// the user's sessions, a purge, another replica claiming the same code)
/// would hold up every claim and single-use id behind it. A code or a
/// session locked by someone else is skipped (`SKIP LOCKED`) and left
/// unclaimed, so its request goes on to `redeem_code`, which waits for the
/// lock on the blocking pool and then tells what happened. The session's
/// `FOR KEY SHARE` lock is held to the commit, as in a single claim: a
/// logout that comes after waits, then finds the named token to revoke.
/// A digest joined twice updates its row once (PostgreSQL skips a row the
/// statement already updated): the claim whose `jti` the row returns won.
/// The statement has one text, whatever the round holds, and is kept
/// prepared: PostgreSQL parses it once per connection and, after five
/// runs, keeps a generic plan, which guesses ten rows for `unnest`. Both
/// joins go by the codes' primary key, so that plan stays linear in the
/// round's size (a `FROM u` join filter would compare every claim with
/// every code the round locked). The columns are named, not `c.*`: a
/// prepared statement's result may not change shape under a migration.
/// The round's audit events go in first ([`audit_rows_cte`]: a
/// data-modifying `WITH` runs to completion whether or not it is read).
const CLAIM_ROUND: &str = concat!(
    "WITH ",
    audit_rows_cte!(),
    ", u AS (
    SELECT * FROM unnest($11::text[], $12::text[], $13::bigint[], $14::bigint[])
        AS t(digest, access_jti, access_exp, claimed_at)
), free AS (
    SELECT c.digest, u.access_jti, u.access_exp, u.claimed_at
    FROM u JOIN authorization_codes AS c ON c.digest = u.digest
    WHERE c.used_at IS NULL
      AND EXISTS (SELECT 1 FROM sessions AS s WHERE s.id = c.session_id
                  FOR KEY SHARE SKIP LOCKED)
    FOR NO KEY UPDATE OF c SKIP LOCKED
)
UPDATE authorization_codes AS c
SET used_at = f.claimed_at, access_jti = f.access_jti, access_exp = f.access_exp
FROM free AS f
WHERE c.digest = f.digest
  AND c.used_at IS NULL
RETURNING c.digest, c.client_id, c.redirect_uri, c.code_challenge, c.user_id, c.session_id,
          c.auth_time, c.amr, c.nonce, c.scopes, c.created_at, c.expires_at, c.used_at,
          c.access_jti, c.access_exp, c.refresh_family"
);

fn claim_in_one_round(
    pg: &mut PgConnection,
    claims: &[CodeClaim],
    events: &[NewAuditRecord],
) -> QueryResult<Vec<Option<CodeRecord>>> {
    let column = |f: fn(&CodeClaim) -> &str| claims.iter().map(f).collect::<Vec<_>>();
    let claimed: Vec<CodeRecord> = Prepared(
        bind_audit_columns!(diesel::sql_query(CLAIM_ROUND), AuditColumns::of(events))
            .bind::<Array<Text>, _>(column(|c| &c.digest))
            .bind::<Array<Text>, _>(column(|c| &c.access.jti))
            .bind::<Array<BigInt>, _>(claims.iter().map(|c| c.access.exp).collect::<Vec<_>>())
            .bind::<Array<BigInt>, _>(claims.iter().map(|c| c.now).collect::<Vec<_>>()),
    )
    .load(pg)?;
    let mut by_digest: HashMap<String, CodeRecord> = claimed
        .into_iter()
        .map(|record| (record.digest.clone(), record))
        .collect();
    Ok(claims
        .iter()
        .map(|claim| {
            let won = by_digest.get(&claim.digest).is_some_and(|record| {
                record.access_jti.as_deref() == Some(claim.access.jti.as_str())
            });
            won.then(|| by_digest.remove(&claim.digest)).flatten()
        })
        .collect())
}
