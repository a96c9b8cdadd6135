//! Browser sign-in state: authorization codes, remembered consents and
//! refresh tokens. Only keyed digests of codes and refresh tokens are
//! stored; each read-modify-write runs in one transaction, so two replicas
//! redeeming the same code or refresh token cannot both succeed.

use std::future::Future;

use diesel::prelude::*;

use super::prepared::Prepared;
use super::schema::{authorization_codes, consents, refresh_tokens, sessions};
use super::{AnyConnection, PURGE_BATCH, Store, StoreError};

/// `treat_none_as_default_value = false`: an absent value is bound as NULL,
/// which is what every nullable column here defaults to, so each insert has
/// one shape and diesel keeps it prepared (on PostgreSQL it would otherwise
/// parse the `INSERT` anew each time). A nullable column that gains a
/// non-NULL `DEFAULT` must be given its value here.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = authorization_codes, treat_none_as_default_value = false)]
pub struct CodeRecord {
    /// Hex of the keyed digest of the code.
    pub digest: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub user_id: String,
    pub session_id: String,
    pub auth_time: i64,
    pub amr: String,
    pub nonce: Option<String>,
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub access_jti: Option<String>,
    pub access_exp: Option<i64>,
    pub refresh_family: Option<String>,
}

/// A refresh token's row. `Debug` leaves out the digest. Bound whole, as
/// [`CodeRecord`] is.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens, treat_none_as_default_value = false)]
pub struct RefreshTokenRecord {
    pub id: String,
    pub lookup: String,
    pub digest: Vec<u8>,
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub session_id: Option<String>,
    pub scopes: String,
    pub auth_time: i64,
    pub amr: String,
    pub created_at: i64,
    pub idle_expires_at: i64,
    pub family_expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub access_jti: Option<String>,
    pub access_exp: Option<i64>,
}

impl RefreshTokenRecord {
    /// When it stops working unused: the earlier of its idle expiry and
    /// its family's end.
    pub fn expires_at(&self) -> i64 {
        self.idle_expires_at.min(self.family_expires_at)
    }
}

impl std::fmt::Debug for RefreshTokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokenRecord")
            .field("id", &self.id)
            .field("family_id", &self.family_id)
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// The access token a redemption will mint, named before the code is
/// claimed: the claim and the name commit together, so whatever comes
/// after (a second use, a logout, a disabled user) finds the token to
/// revoke without a second transaction.
#[derive(Debug, Clone)]
pub struct CodeAccess {
    pub jti: String,
    pub exp: i64,
}

/// What redeeming a code found.
#[derive(Debug)]
pub enum Redemption {
    /// The code exists and was unused; it is now marked used, names the
    /// access token to mint, and its browser session is still alive.
    Fresh(CodeRecord),
    /// The code was unused, but the browser session it came from has
    /// ended (a logout, a new password, a disabled user): it is now marked
    /// used and must give nothing.
    SessionEnded,
    /// The code was used before: the tokens issued from it are now revoked
    /// (RFC 6749 §4.1.2).
    Reused(CodeRecord),
    Unknown,
}

/// What rotating a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    Rotated,
    /// The token had been used already: its family is revoked.
    Reused,
    /// The token was revoked (a logout, a new password, a disabled user)
    /// before this use: nothing changes.
    Revoked,
}

/// How naming a redeemed code's tokens ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The tokens are stored and may be handed out.
    Issued,
    /// The code was used again meanwhile (RFC 6749 §4.1.2): the tokens are
    /// revoked.
    Reused,
    /// The browser session the code came from ended meanwhile (a logout, a
    /// new password, a disabled user): the tokens are revoked.
    SessionEnded,
}

pub trait AuthorizationStore {
    /// Stores a new code, and drops codes that expired an hour ago or more
    /// (kept that long so that a late second use is still recognised).
    fn create_code(&self, code: CodeRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks the code used, once, naming the access token it gives, and
    /// checks that its session is alive, in one transaction (one statement
    /// for a fresh code). A second use revokes what the first issued. The
    /// token endpoint claims fresh codes in the batch writer's rounds first
    /// ([`BatchWriter::claim_code`](super::BatchWriter::claim_code)) and
    /// comes here for the codes a round did not claim.
    fn redeem_code(
        &self,
        digest: String,
        access: CodeAccess,
        now: i64,
    ) -> impl Future<Output = Result<Redemption, StoreError>> + Send;

    /// For a redemption that also gives a refresh token: names its family
    /// on the redeemed code (the access token was named by the claim), and
    /// stores the family's first refresh token, in one transaction.
    /// [`Finish::Reused`] when the code was used again meanwhile (RFC 6749 §4.1.2),
    /// [`Finish::SessionEnded`] when its session ended meanwhile: the tokens
    /// are then revoked in the same transaction and must not be handed out.
    fn finish_code(
        &self,
        digest: String,
        access_jti: String,
        access_exp: i64,
        refresh: RefreshTokenRecord,
        now: i64,
    ) -> impl Future<Output = Result<Finish, StoreError>> + Send;

    /// The scopes the user consented to for the client so far.
    fn consent(
        &self,
        user_id: String,
        client_id: String,
    ) -> impl Future<Output = Result<Option<Vec<String>>, StoreError>> + Send;

    /// Adds `scopes` to the user's consent for the client.
    fn grant_consent(
        &self,
        user_id: String,
        client_id: String,
        scopes: Vec<String>,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn refresh_by_lookup(
        &self,
        lookup: String,
    ) -> impl Future<Output = Result<Option<RefreshTokenRecord>, StoreError>> + Send;

    /// Marks `old_id` used and stores its successor, if `old_id` is still
    /// unused and unrevoked; otherwise revokes the whole family.
    fn rotate_refresh(
        &self,
        old_id: String,
        family_id: String,
        successor: RefreshTokenRecord,
        now: i64,
    ) -> impl Future<Output = Result<Rotation, StoreError>> + Send;

    /// Revokes every refresh token of the family and the access tokens
    /// issued with them. Returns how many refresh tokens it revoked.
    fn revoke_refresh_family(
        &self,
        family_id: String,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Deletes the refresh tokens of families that can no longer be used
    /// (the maintenance loop): past their absolute lifetime, revoked more
    /// than [`REVOKED_KEPT_SECS`] ago, or whose newest token went unused past
    /// the idle lifetime. Returns how many rows went.
    fn purge_refresh_tokens(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Deletes codes that expired over an hour ago (the maintenance loop),
    /// unless the access token a code gave still lives: a new password or
    /// a logout must still find its `jti`. Returns how many rows went.
    fn purge_codes(&self, now: i64) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Revokes the refresh tokens issued in one browser session, whatever
    /// their client, with their access tokens, and expires the session's
    /// codes not yet redeemed ([`revoke_grants_in`]).
    fn revoke_session_refresh(
        &self,
        session_id: String,
        now: i64,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Puts `(jti, exp)` pairs on the shared revocation list, skipping those
/// already there (revoking twice is not an error). One
/// `INSERT … ON CONFLICT DO NOTHING` per jti: two replicas revoking the
/// same jti at once both succeed, where a check-then-insert let the second
/// fail on the primary key (and, on PostgreSQL, abort its transaction).
pub(crate) fn revoke_jtis_in(
    conn: &mut AnyConnection,
    jtis: Vec<(String, i64)>,
) -> Result<(), diesel::result::Error> {
    use diesel::sql_types::{BigInt, Text};
    let sql = match conn {
        AnyConnection::Postgresql(_) => {
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        }
        AnyConnection::Sqlite(_) => {
            "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)"
        }
    };
    // One order for every writer: two transactions inserting overlapping
    // jtis cannot deadlock on PostgreSQL.
    let mut jtis = jtis;
    jtis.sort_unstable();
    jtis.dedup();
    for (jti, exp) in jtis {
        diesel::sql_query(sql)
            .bind::<Text, _>(&jti)
            .bind::<BigInt, _>(exp)
            .execute(conn)?;
    }
    Ok(())
}

/// Revokes every refresh token of the family, and their access tokens.
/// Writes first: on SQLite a deferred transaction that reads and then
/// writes fails at once ("database is locked") when another writer commits
/// in between; one that starts with its write waits (busy_timeout).
fn revoke_family_in(
    conn: &mut AnyConnection,
    family_id: &str,
    now: i64,
) -> Result<usize, diesel::result::Error> {
    use refresh_tokens::dsl as r;
    let revoked = diesel::update(
        r::refresh_tokens
            .filter(r::family_id.eq(family_id))
            .filter(r::revoked_at.is_null()),
    )
    .set(r::revoked_at.eq(now))
    .execute(conn)?;
    let jtis = r::refresh_tokens
        .filter(r::family_id.eq(family_id))
        .select((r::access_jti, r::access_exp))
        .load::<(Option<String>, Option<i64>)>(conn)?;
    revoke_jtis_in(
        conn,
        jtis.into_iter()
            .filter_map(|(jti, exp)| Some((jti?, exp?)))
            .collect(),
    )?;
    Ok(revoked)
}

/// Whether the browser session `id` still exists. On PostgreSQL the row is
/// locked `FOR KEY SHARE` until the caller's transaction ends (enough to
/// hold off a delete, not the `last_seen_at` touch), so a logout or a
/// new password (which delete it first) waits for the tokens named here and
/// then revokes them; on SQLite writers take turns anyway.
fn session_alive_in(conn: &mut AnyConnection, id: &str) -> QueryResult<bool> {
    // The query builder's statements are prepared once per connection; a
    // raw `sql_query` would be parsed again on every redemption.
    let session = sessions::table.find(id).select(sessions::id);
    let found = match conn {
        AnyConnection::Postgresql(pg) => session.for_key_share().get_result::<String>(pg),
        AnyConnection::Sqlite(sqlite) => session.get_result::<String>(sqlite),
    };
    Ok(found.optional()?.is_some())
}

/// How long revoked refresh tokens are kept: a revoked token presented
/// meanwhile is told `invalid_grant` as one never issued would be, so the
/// rows serve only the audit trail's cross-checks for a while.
pub const REVOKED_KEPT_SECS: i64 = 3600;

/// How long a code is kept after it expired: a second use within that hour
/// is still told apart as a reuse (and revokes what the first gave).
const EXPIRED_CODES_KEPT_SECS: i64 = 3600;

/// The most batches one sweep deletes.
const PURGE_ROUNDS: usize = 20;

/// Whose grants [`revoke_grants_in`] ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GrantsOf<'a> {
    /// One browser session's (a logout).
    Session(&'a str),
    /// All of a user's (disabled, deleted or given a new password).
    User(&'a str),
}

/// Ends what a session or a user was granted, inside the caller's
/// transaction: revokes their refresh tokens, puts the access tokens issued
/// with them or from their codes (those not yet expired) on the revocation
/// list, and expires their codes not yet redeemed, so a code issued just
/// before a logout cannot be redeemed after it. Returns how many refresh
/// tokens it revoked. Writes first (see [`revoke_family_in`]); a family
/// never spans sessions or users, so revoking by owner revokes whole
/// families.
pub(crate) fn revoke_grants_in(
    conn: &mut AnyConnection,
    owner: GrantsOf<'_>,
    now: i64,
) -> Result<usize, diesel::result::Error> {
    use authorization_codes::dsl as c;
    use refresh_tokens::dsl as r;
    // The two owners differ only in the column: one body, checked per
    // column type by the compiler.
    macro_rules! revoke_by {
        ($refresh_column:expr, $code_column:expr, $id:expr) => {{
            // Again until nothing is left: on PostgreSQL a rotation that
            // held a row this statement waited for may have added a
            // successor its snapshot does not show; the next statement's
            // does. Each round revokes at least one token, and a revoked
            // token cannot be rotated, so the rounds end.
            let mut revoked = 0;
            loop {
                let more = diesel::update(
                    r::refresh_tokens
                        .filter($refresh_column.eq($id))
                        .filter(r::revoked_at.is_null()),
                )
                .set(r::revoked_at.eq(now))
                .execute(conn)?;
                if more == 0 {
                    break;
                }
                revoked += more;
            }
            diesel::update(
                c::authorization_codes
                    .filter($code_column.eq($id))
                    .filter(c::used_at.is_null())
                    .filter(c::expires_at.ge(now)),
            )
            .set(c::expires_at.eq(now - 1))
            .execute(conn)?;
            let mut live: Vec<(Option<String>, Option<i64>)> = r::refresh_tokens
                .filter($refresh_column.eq($id))
                .filter(r::access_exp.gt(now))
                .select((r::access_jti, r::access_exp))
                .load(conn)?;
            live.extend(
                c::authorization_codes
                    .filter($code_column.eq($id))
                    .filter(c::access_exp.gt(now))
                    .select((c::access_jti, c::access_exp))
                    .load::<(Option<String>, Option<i64>)>(conn)?,
            );
            (revoked, live)
        }};
    }
    let (revoked, live) = match owner {
        GrantsOf::Session(id) => revoke_by!(r::session_id, c::session_id, id),
        GrantsOf::User(id) => revoke_by!(r::user_id, c::user_id, id),
    };
    revoke_jtis_in(
        conn,
        live.into_iter()
            .filter_map(|(jti, exp)| Some((jti?, exp?)))
            .collect(),
    )?;
    Ok(revoked)
}

/// The fresh-code claim: marks the code used and names its access token
/// in one statement, if its session is alive: one round trip and, outside
/// a transaction, one commit. On PostgreSQL the session is locked
/// `FOR KEY SHARE` ([`session_alive_in`]) while the statement qualifies
/// the code, before the code row is locked: the same order as a logout or
/// a new password (session first, then codes), so the two cannot deadlock.
/// On SQLite the statement holds the one write lock throughout. Each
/// connection prepares it once ([`Prepared`]). `None` when nothing was
/// claimed (unknown, used, or its session ended: the transaction in
/// `redeem_code` tells which).
///
/// (Without the session's lock a claim racing a logout would still be
/// caught by the code rows' locks, but only through the code's
/// `expires_at`, which the logout sets by its own clock: a replica whose
/// clock is behind would hand out tokens nothing revokes. Dropping the
/// lock measured no faster on 2026-12-05.)
pub(super) fn claim_in_one_statement(
    conn: &mut AnyConnection,
    digest: &str,
    access: &CodeAccess,
    now: i64,
) -> QueryResult<Option<CodeRecord>> {
    use authorization_codes::dsl as c;
    use diesel::dsl::exists;
    let fresh = c::authorization_codes
        .find(digest)
        .filter(c::used_at.is_null());
    let live = sessions::table
        .filter(sessions::id.eq(c::session_id))
        .select(sessions::id);
    let claim = (
        c::used_at.eq(now),
        c::access_jti.eq(&access.jti),
        c::access_exp.eq(access.exp),
    );
    match conn {
        AnyConnection::Postgresql(pg) => Prepared(
            diesel::update(fresh.filter(exists(live.for_key_share())))
                .set(claim)
                .returning(CodeRecord::as_returning()),
        )
        .get_result(pg),
        AnyConnection::Sqlite(sqlite) => Prepared(
            diesel::update(fresh.filter(exists(live)))
                .set(claim)
                .returning(CodeRecord::as_returning()),
        )
        .get_result(sqlite),
    }
    .optional()
}

impl AuthorizationStore for Store {
    async fn create_code(&self, code: CodeRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            use authorization_codes::dsl as c;
            diesel::insert_into(c::authorization_codes)
                .values(&code)
                .execute(conn)?;
            Ok(())
        })
        .await
    }

    async fn redeem_code(
        &self,
        digest: String,
        access: CodeAccess,
        now: i64,
    ) -> Result<Redemption, StoreError> {
        self.run(move |conn| {
            use authorization_codes::dsl as c;
            // The usual case, a fresh code, in one statement. What it does
            // not claim takes the transaction below, which tells unknown
            // from reused.
            if let Some(record) = claim_in_one_statement(conn, &digest, &access, now)? {
                return Ok(Redemption::Fresh(record));
            }
            conn.transaction::<_, diesel::result::Error, _>(|conn| {
                let claimed = diesel::update(
                    c::authorization_codes
                        .find(&digest)
                        .filter(c::used_at.is_null()),
                )
                .set((
                    c::used_at.eq(now),
                    c::access_jti.eq(&access.jti),
                    c::access_exp.eq(access.exp),
                ))
                .execute(conn)?;
                let Some(record) = c::authorization_codes
                    .find(&digest)
                    .select(CodeRecord::as_select())
                    .get_result(conn)
                    .optional()?
                else {
                    return Ok(Redemption::Unknown);
                };
                if claimed == 1 {
                    return Ok(match session_alive_in(conn, &record.session_id)? {
                        true => Redemption::Fresh(record),
                        false => Redemption::SessionEnded,
                    });
                }
                // Mark the reuse first: this waits for a `finish_code` in
                // flight (row lock), and one still to come sees the mark and
                // revokes what it was about to name.
                diesel::update(c::authorization_codes.find(&digest))
                    .set(c::reused_at.eq(now))
                    .execute(conn)?;
                let record = c::authorization_codes
                    .find(&digest)
                    .select(CodeRecord::as_select())
                    .get_result(conn)?;
                if let (Some(jti), Some(exp)) = (&record.access_jti, record.access_exp) {
                    revoke_jtis_in(conn, vec![(jti.clone(), exp)])?;
                }
                if let Some(family) = &record.refresh_family {
                    revoke_family_in(conn, family, now)?;
                }
                Ok(Redemption::Reused(record))
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn finish_code(
        &self,
        digest: String,
        access_jti: String,
        access_exp: i64,
        refresh: RefreshTokenRecord,
        now: i64,
    ) -> Result<Finish, StoreError> {
        self.run(move |conn| {
            use authorization_codes::dsl as c;
            conn.transaction::<_, diesel::result::Error, _>(|conn| {
                // Naming the tokens first locks the row: a reuse racing with
                // this transaction either marked the code before (seen
                // below) or waits and then revokes what is named here.
                let named = diesel::update(c::authorization_codes.find(&digest)).set((
                    c::access_jti.eq(&access_jti),
                    c::access_exp.eq(access_exp),
                    c::refresh_family.eq(&refresh.family_id),
                ));
                let row = match conn {
                    // One round trip fewer on PostgreSQL.
                    AnyConnection::Postgresql(pg) => named
                        .returning((c::reused_at, c::session_id))
                        .get_result::<(Option<i64>, String)>(pg)
                        .optional()?,
                    AnyConnection::Sqlite(_) => {
                        named.execute(conn)?;
                        c::authorization_codes
                            .find(&digest)
                            .select((c::reused_at, c::session_id))
                            .get_result::<(Option<i64>, String)>(conn)
                            .optional()?
                    }
                };
                let Some((reused_at, session_id)) = row else {
                    return Ok(Finish::Reused);
                };
                let outcome = if reused_at.is_some() {
                    Finish::Reused
                } else if !session_alive_in(conn, &session_id)? {
                    Finish::SessionEnded
                } else {
                    Finish::Issued
                };
                let revoked = outcome != Finish::Issued;
                let mut refresh = refresh.clone();
                if revoked {
                    refresh.revoked_at = Some(now);
                }
                diesel::insert_into(refresh_tokens::table)
                    .values(&refresh)
                    .execute(conn)?;
                if revoked {
                    revoke_jtis_in(conn, vec![(access_jti.clone(), access_exp)])?;
                }
                Ok(outcome)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn consent(
        &self,
        user_id: String,
        client_id: String,
    ) -> Result<Option<Vec<String>>, StoreError> {
        self.run(move |conn| {
            let scopes = consents::table
                .find((user_id, client_id))
                .select(consents::scopes)
                .get_result::<String>(conn)
                .optional()?;
            Ok(scopes.map(|s| s.split_whitespace().map(str::to_owned).collect()))
        })
        .await
    }

    async fn grant_consent(
        &self,
        user_id: String,
        client_id: String,
        scopes: Vec<String>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction::<_, diesel::result::Error, _>(|conn| {
                // Ensure the row exists, then lock it, before reading:
                // two replicas recording consent at once neither fail on
                // the primary key nor lose each other's scopes, and on
                // SQLite the transaction starts with its write (a deferred
                // read-then-write transaction fails at once when another
                // writer commits in between).
                use diesel::sql_types::{BigInt, Text};
                let sql = match conn {
                    AnyConnection::Postgresql(_) => {
                        "INSERT INTO consents (user_id, client_id, scopes, granted_at) \
                         VALUES ($1, $2, '', $3) ON CONFLICT DO NOTHING"
                    }
                    AnyConnection::Sqlite(_) => {
                        "INSERT OR IGNORE INTO consents (user_id, client_id, scopes, granted_at) \
                         VALUES (?, ?, '', ?)"
                    }
                };
                diesel::sql_query(sql)
                    .bind::<Text, _>(&user_id)
                    .bind::<Text, _>(&client_id)
                    .bind::<BigInt, _>(now)
                    .execute(conn)?;
                let key = (user_id.clone(), client_id.clone());
                diesel::update(consents::table.find(key.clone()))
                    .set(consents::granted_at.eq(now))
                    .execute(conn)?;
                let mut all: Vec<String> = consents::table
                    .find(key.clone())
                    .select(consents::scopes)
                    .get_result::<String>(conn)?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                for scope in scopes {
                    if !all.contains(&scope) {
                        all.push(scope);
                    }
                }
                all.sort();
                diesel::update(consents::table.find(key))
                    .set(consents::scopes.eq(all.join(" ")))
                    .execute(conn)?;
                Ok(())
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn refresh_by_lookup(
        &self,
        lookup: String,
    ) -> Result<Option<RefreshTokenRecord>, StoreError> {
        self.run(move |conn| {
            refresh_tokens::table
                .filter(refresh_tokens::lookup.eq(lookup))
                .select(RefreshTokenRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old_id: String,
        family_id: String,
        successor: RefreshTokenRecord,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        self.run(move |conn| {
            use refresh_tokens::dsl as r;
            conn.transaction::<_, diesel::result::Error, _>(|conn| {
                let claimed = diesel::update(
                    r::refresh_tokens
                        .find(&old_id)
                        .filter(r::used_at.is_null())
                        .filter(r::revoked_at.is_null()),
                )
                .set(r::used_at.eq(now))
                .execute(conn)?;
                if claimed == 0 {
                    let revoked = r::refresh_tokens
                        .find(&old_id)
                        .select(r::revoked_at)
                        .get_result::<Option<i64>>(conn)
                        .optional()?
                        .flatten()
                        .is_some();
                    if revoked {
                        return Ok(Rotation::Revoked);
                    }
                    revoke_family_in(conn, &family_id, now)?;
                    return Ok(Rotation::Reused);
                }
                diesel::insert_into(r::refresh_tokens)
                    .values(&successor)
                    .execute(conn)?;
                Ok(Rotation::Rotated)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn revoke_refresh_family(
        &self,
        family_id: String,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.run(move |conn| {
            conn.transaction::<_, diesel::result::Error, _>(|conn| {
                revoke_family_in(conn, &family_id, now)
            })
            .map_err(StoreError::from)
        })
        .await
    }

    async fn purge_refresh_tokens(&self, now: i64) -> Result<usize, StoreError> {
        // Batch after batch until one comes back short, at most
        // PURGE_ROUNDS a sweep: a backlog drains within minutes, and no
        // one statement holds the database for long.
        let mut purged = 0;
        for _ in 0..PURGE_ROUNDS {
            let batch = self.purge_refresh_batch(now).await?;
            purged += batch;
            if batch < PURGE_BATCH as usize {
                break;
            }
        }
        Ok(purged)
    }

    async fn purge_codes(&self, now: i64) -> Result<usize, StoreError> {
        // Until done, not a fixed number of rounds like the refresh tokens:
        // codes are made far faster. This once ran with every new code, and
        // on PostgreSQL a cached generic plan scanned the whole table each
        // time: 300 codes a second with 80,000 rows.
        self.purge_until_done(move |conn| {
            use authorization_codes::dsl as c;
            let dead = c::expires_at
                .lt(now - EXPIRED_CODES_KEPT_SECS)
                .and(c::access_exp.is_null().or(c::access_exp.lt(now)));
            let digests: Vec<String> = c::authorization_codes
                .filter(dead)
                .select(c::digest)
                .order(c::expires_at)
                .limit(PURGE_BATCH)
                .load(conn)?;
            if digests.is_empty() {
                return Ok(0);
            }
            // The filter again: a row named meanwhile stays.
            diesel::delete(
                c::authorization_codes
                    .filter(c::digest.eq_any(digests))
                    .filter(dead),
            )
            .execute(conn)
            .map_err(StoreError::from)
        })
        .await
    }

    async fn revoke_session_refresh(
        &self,
        session_id: String,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.run(move |conn| {
            conn.transaction::<_, diesel::result::Error, _>(|conn| {
                revoke_grants_in(conn, GrantsOf::Session(&session_id), now)
            })
            .map_err(StoreError::from)
        })
        .await
    }
}

impl Store {
    /// One batch of [`AuthorizationStore::purge_refresh_tokens`].
    async fn purge_refresh_batch(&self, now: i64) -> Result<usize, StoreError> {
        self.run(move |conn| {
            use refresh_tokens::dsl as r;
            // Batches of ids in one order: a backlog never holds SQLite's
            // write lock for long, and replicas sweeping at once cannot
            // deadlock. A row whose access token still lives stays until it
            // expires (a new password must still find its jti), unless the
            // row is revoked: then that jti is on the revocation list.
            let dead: Vec<String> = r::refresh_tokens
                .filter(
                    r::revoked_at
                        .lt(now - REVOKED_KEPT_SECS)
                        .or(r::family_expires_at
                            .lt(now)
                            .and(r::access_exp.is_null().or(r::access_exp.lt(now)))),
                )
                .select(r::id)
                .order(r::id)
                .limit(PURGE_BATCH)
                .load(conn)?;
            let mut purged = 0;
            if !dead.is_empty() {
                purged +=
                    diesel::delete(r::refresh_tokens.filter(r::id.eq_any(dead))).execute(conn)?;
            }
            // A family whose unused newest token is idle-expired cannot be
            // rotated any more: all of it goes once its access tokens have
            // expired.
            let idle: Vec<String> = r::refresh_tokens
                .filter(r::used_at.is_null())
                .filter(r::revoked_at.is_null())
                .filter(r::idle_expires_at.lt(now))
                .select(r::family_id)
                .order(r::family_id)
                .limit(PURGE_BATCH)
                .load(conn)?;
            if !idle.is_empty() {
                let live_access: Vec<String> = r::refresh_tokens
                    .filter(r::family_id.eq_any(&idle))
                    .filter(r::access_exp.ge(now))
                    .select(r::family_id)
                    .load(conn)?;
                let live_access: std::collections::HashSet<String> =
                    live_access.into_iter().collect();
                let idle: Vec<String> = idle
                    .into_iter()
                    .filter(|f| !live_access.contains(f))
                    .collect();
                purged += diesel::delete(r::refresh_tokens.filter(r::family_id.eq_any(idle)))
                    .execute(conn)?;
            }
            Ok(purged)
        })
        .await
    }
}
