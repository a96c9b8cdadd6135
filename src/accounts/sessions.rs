//! Browser sessions. The cookie carries a 256-bit random secret; the
//! database holds only its keyed digest, beside the public session id
//! (the ID token's `sid`, OIDC Core §2 / Front-Channel Logout §2). Each
//! login makes a new session (fresh id and secret), so a session id fixed
//! before the login is worth nothing after it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::oauth::Core;
use crate::random::{random_base62, random_bytes};
use crate::secret::Secret;
use crate::store::{
    NewAuditRecord, SessionRecord, SessionStore, Settlement, StoreError, UserStore,
};

/// Who is signed in, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The public session id (`sid`).
    pub sid: String,
    /// The user's id: the OIDC `sub`.
    pub user_id: String,
    /// When the user last authenticated (OIDC Core §2 `auth_time`).
    pub auth_time: i64,
    /// RFC 8176 methods: `["pwd"]` or `["pwd", "otp"]`.
    pub amr: Vec<String>,
}

/// The length of a cookie secret: 32 bytes, base64url without padding.
const SECRET_CHARS: usize = 43;

fn digest(core: &Core, secret: &str) -> Vec<u8> {
    let key = super::purpose_key(&core.digest_key, "tessera session v1");
    aws_lc_rs::hmac::sign(&key, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Starts a new session for `user_id`; returns it and the cookie secret.
pub async fn start(
    core: &Core,
    user_id: &str,
    amr: &[&str],
) -> Result<(SessionInfo, Secret), StoreError> {
    let (info, record, secret) = new_session(core, user_id, amr);
    core.store.create_session(record).await?;
    Ok((info, secret))
}

/// Starts a new session the way a login does: the session stored, `event`
/// (which may name the session) appended and the throttle settled in one
/// transaction, so a password login commits twice (its admission, then
/// this) and no login is left without its event.
pub async fn start_login(
    core: &Core,
    user_id: &str,
    amr: &[&str],
    settlement: Settlement,
    event: impl FnOnce(&SessionInfo) -> NewAuditRecord,
) -> Result<(SessionInfo, Secret), StoreError> {
    let (info, record, secret) = new_session(core, user_id, amr);
    let event = event(&info);
    core.store
        .create_login_session(record, event, settlement)
        .await?;
    Ok((info, secret))
}

fn new_session(core: &Core, user_id: &str, amr: &[&str]) -> (SessionInfo, SessionRecord, Secret) {
    let now = crate::clock::now();
    let secret = Secret::new(URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let info = SessionInfo {
        sid: random_base62(32),
        user_id: user_id.to_owned(),
        auth_time: now,
        amr: amr.iter().map(|m| (*m).to_owned()).collect(),
    };
    let record = SessionRecord {
        id: info.sid.clone(),
        secret_digest: digest(core, secret.expose()),
        user_id: info.user_id.clone(),
        auth_time: now,
        amr: info.amr.join(" "),
        created_at: now,
        last_seen_at: now,
    };
    (info, record, secret)
}

/// The session a cookie secret belongs to, if it is still valid: known,
/// neither idle nor older than the absolute timeout, and its user exists
/// and is enabled. An expired session is deleted on sight.
pub async fn resolve(core: &Core, secret: &str) -> Result<Option<SessionInfo>, StoreError> {
    if secret.len() != SECRET_CHARS
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    let Some(record) = core.store.session_by_digest(digest(core, secret)).await? else {
        return Ok(None);
    };
    let now = crate::clock::now();
    let config = &core.config.sessions;
    let idle = config.idle_timeout.as_secs() as i64;
    let absolute = config.absolute_timeout.as_secs() as i64;
    if now >= record.last_seen_at.saturating_add(idle)
        || now >= record.created_at.saturating_add(absolute)
    {
        core.store.delete_session(record.id).await?;
        return Ok(None);
    }
    match core.store.user_by_id(record.user_id.clone()).await? {
        Some(user) if !user.disabled => {}
        _ => return Ok(None),
    }
    // Touching on every request would make every page view a write.
    let granularity = (idle / 4).clamp(0, 60);
    core.store
        .touch_session(record.id.clone(), now, granularity)
        .await?;
    Ok(Some(SessionInfo {
        sid: record.id,
        user_id: record.user_id,
        auth_time: record.auth_time,
        amr: record.amr.split_whitespace().map(str::to_owned).collect(),
    }))
}

/// Ends a session (logout, RP-initiated logout). Idempotent.
pub async fn end(core: &Core, sid: &str) -> Result<(), StoreError> {
    core.store.delete_session(sid.to_owned()).await
}

/// Deletes sessions past either timeout (the maintenance loop).
pub async fn purge(core: &Core) -> Result<usize, StoreError> {
    let now = crate::clock::now();
    let config = &core.config.sessions;
    core.store
        .purge_sessions(
            now - config.idle_timeout.as_secs() as i64,
            now - config.absolute_timeout.as_secs() as i64,
        )
        .await
}
