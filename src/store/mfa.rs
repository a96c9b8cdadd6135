//! TOTP second factors (RFC 6238) and recovery codes. Secrets arrive here
//! already sealed; recovery codes as keyed digests.

use std::future::Future;

use diesel::prelude::*;

use super::schema::{recovery_codes, totp_credentials};
use super::{AnyConnection, Store, StoreError};

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = totp_credentials)]
pub struct TotpRecord {
    pub user_id: String,
    /// AES-256-GCM under the master key, bound to the user id.
    pub sealed_secret: Vec<u8>,
    pub master_key_id: String,
    /// `None` while the enrolment waits for its first code.
    pub confirmed_at: Option<i64>,
    /// The last RFC 6238 time step accepted.
    pub last_step: i64,
    pub created_at: i64,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("user_id", &self.user_id)
            .field("confirmed_at", &self.confirmed_at)
            .field("sealed_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

pub trait MfaStore {
    fn totp_for(
        &self,
        user_id: String,
    ) -> impl Future<Output = Result<Option<TotpRecord>, StoreError>> + Send;

    /// Starts (or restarts) an enrolment. Refused with `Conflict` when the
    /// user already has a confirmed one.
    fn begin_totp(&self, record: TotpRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Confirms a pending enrolment at `step` and stores the recovery
    /// code digests, in one transaction. False when there was no pending
    /// enrolment (already confirmed, or reset meanwhile).
    fn confirm_totp(
        &self,
        user_id: String,
        step: i64,
        now: i64,
        recovery_digests: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Accepts `step` only if it is later than the last accepted one:
    /// atomic, so a code is not accepted twice, even by two replicas.
    fn use_totp_step(
        &self,
        user_id: String,
        step: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Marks an unused recovery code used; false when unknown or used.
    fn use_recovery_code(
        &self,
        user_id: String,
        digest: Vec<u8>,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Unused recovery codes left.
    fn recovery_codes_left(
        &self,
        user_id: String,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Removes the second factor and its recovery codes, and ends the
    /// user's sessions and grants; whether there was a factor, and what
    /// ended.
    fn reset_mfa(
        &self,
        user_id: String,
    ) -> impl Future<Output = Result<(bool, super::users::Ended), StoreError>> + Send;

    /// TOTP secrets sealed under another master key than `master_key_id`
    /// (a re-key's work).
    fn totp_sealed_elsewhere(
        &self,
        master_key_id: String,
    ) -> impl Future<Output = Result<Vec<TotpRecord>, StoreError>> + Send;

    /// Stores secrets sealed anew under `master_key_id`, each only if its
    /// row is still the one that was read (the same sealed bytes): an
    /// enrolment that replaced it meanwhile is left alone. Returns how many
    /// were written.
    fn reseal_totp(
        &self,
        resealed: Vec<ResealedTotp>,
        master_key_id: String,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// One TOTP secret sealed anew.
pub struct ResealedTotp {
    pub user_id: String,
    /// The master key and the sealed bytes that were read: a row that no
    /// longer holds both (re-enrolled meanwhile) is left alone.
    pub sealed_with: String,
    pub was_sealed: Vec<u8>,
    pub sealed_secret: Vec<u8>,
}

impl MfaStore for Store {
    async fn totp_for(&self, user_id: String) -> Result<Option<TotpRecord>, StoreError> {
        self.run(move |conn| {
            totp_credentials::table
                .find(user_id)
                .select(TotpRecord::as_select())
                .get_result(conn)
                .optional()
                .map_err(StoreError::from)
        })
        .await
    }

    async fn begin_totp(&self, record: TotpRecord) -> Result<(), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                // One upsert that replaces a pending enrolment and leaves a
                // confirmed one alone (0 rows): two replicas beginning at
                // once both succeed, where a check-then-insert let the
                // second fail on the primary key.
                use diesel::sql_types::{BigInt, Binary, Nullable, Text};
                let sql = match conn {
                    AnyConnection::Postgresql(_) => {
                        "INSERT INTO totp_credentials \
                         (user_id, sealed_secret, master_key_id, confirmed_at, last_step, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET \
                         sealed_secret = excluded.sealed_secret, master_key_id = excluded.master_key_id, \
                         confirmed_at = excluded.confirmed_at, last_step = excluded.last_step, \
                         created_at = excluded.created_at \
                         WHERE totp_credentials.confirmed_at IS NULL"
                    }
                    AnyConnection::Sqlite(_) => {
                        "INSERT INTO totp_credentials \
                         (user_id, sealed_secret, master_key_id, confirmed_at, last_step, created_at) \
                         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET \
                         sealed_secret = excluded.sealed_secret, master_key_id = excluded.master_key_id, \
                         confirmed_at = excluded.confirmed_at, last_step = excluded.last_step, \
                         created_at = excluded.created_at \
                         WHERE totp_credentials.confirmed_at IS NULL"
                    }
                };
                let written = diesel::sql_query(sql)
                    .bind::<Text, _>(&record.user_id)
                    .bind::<Binary, _>(&record.sealed_secret)
                    .bind::<Text, _>(&record.master_key_id)
                    .bind::<Nullable<BigInt>, _>(record.confirmed_at)
                    .bind::<BigInt, _>(record.last_step)
                    .bind::<BigInt, _>(record.created_at)
                    .execute(conn)?;
                if written == 0 {
                    return Ok(Err(StoreError::Conflict));
                }
                Ok(Ok(()))
            })
            .map_err(|e: diesel::result::Error| StoreError::from(e))?
        })
        .await
    }

    async fn confirm_totp(
        &self,
        user_id: String,
        step: i64,
        now: i64,
        recovery_digests: Vec<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                use totp_credentials::dsl as t;
                let confirmed = diesel::update(
                    t::totp_credentials
                        .find(&user_id)
                        .filter(t::confirmed_at.is_null()),
                )
                .set((t::confirmed_at.eq(now), t::last_step.eq(step)))
                .execute(conn)?;
                if confirmed == 0 {
                    return Ok(false);
                }
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user_id)))
                    .execute(conn)?;
                let rows: Vec<_> = recovery_digests
                    .into_iter()
                    .map(|digest| {
                        (
                            recovery_codes::user_id.eq(user_id.clone()),
                            recovery_codes::digest.eq(digest),
                        )
                    })
                    .collect();
                for row in rows {
                    diesel::insert_into(recovery_codes::table)
                        .values(row)
                        .execute(conn)?;
                }
                Ok(true)
            })
            .map_err(|e: diesel::result::Error| StoreError::from(e))
        })
        .await
    }

    async fn use_totp_step(&self, user_id: String, step: i64) -> Result<bool, StoreError> {
        self.run(move |conn| {
            use totp_credentials::dsl as t;
            diesel::update(
                t::totp_credentials
                    .find(user_id)
                    .filter(t::confirmed_at.is_not_null())
                    .filter(t::last_step.lt(step)),
            )
            .set(t::last_step.eq(step))
            .execute(conn)
            .map(|rows| rows == 1)
            .map_err(StoreError::from)
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user_id: String,
        digest: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run(move |conn| {
            use recovery_codes::dsl as r;
            diesel::update(
                r::recovery_codes
                    .find((user_id, digest))
                    .filter(r::used_at.is_null()),
            )
            .set(r::used_at.eq(now))
            .execute(conn)
            .map(|rows| rows == 1)
            .map_err(StoreError::from)
        })
        .await
    }

    async fn recovery_codes_left(&self, user_id: String) -> Result<i64, StoreError> {
        self.run(move |conn| {
            use recovery_codes::dsl as r;
            r::recovery_codes
                .filter(r::user_id.eq(user_id).and(r::used_at.is_null()))
                .count()
                .get_result(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn totp_sealed_elsewhere(
        &self,
        master_key_id: String,
    ) -> Result<Vec<TotpRecord>, StoreError> {
        self.run(move |conn| {
            totp_credentials::table
                .filter(totp_credentials::master_key_id.ne(master_key_id))
                .select(TotpRecord::as_select())
                .load(conn)
                .map_err(StoreError::from)
        })
        .await
    }

    async fn reseal_totp(
        &self,
        resealed: Vec<ResealedTotp>,
        master_key_id: String,
    ) -> Result<usize, StoreError> {
        self.run(move |conn| {
            use totp_credentials::dsl as t;
            conn.transaction(|conn| {
                let mut written = 0;
                for one in &resealed {
                    written += diesel::update(
                        t::totp_credentials
                            .find(&one.user_id)
                            .filter(t::master_key_id.eq(&one.sealed_with))
                            .filter(t::sealed_secret.eq(&one.was_sealed)),
                    )
                    .set((
                        t::sealed_secret.eq(&one.sealed_secret),
                        t::master_key_id.eq(&master_key_id),
                    ))
                    .execute(conn)?;
                }
                Ok(written)
            })
            .map_err(|e: diesel::result::Error| StoreError::from(e))
        })
        .await
    }

    async fn reset_mfa(&self, user_id: String) -> Result<(bool, super::users::Ended), StoreError> {
        self.run(move |conn| {
            conn.transaction(|conn| {
                diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(&user_id)))
                    .execute(conn)?;
                let ended = super::users::end_sessions_in(conn, &user_id)?;
                diesel::delete(totp_credentials::table.find(&user_id))
                    .execute(conn)
                    .map(|rows| (rows > 0, ended))
            })
            .map_err(|e: diesel::result::Error| StoreError::from(e))
        })
        .await
    }
}
