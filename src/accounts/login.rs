//! The two steps of a login: the password, then (when the user enrolled
//! TOTP) a code or a recovery code. Both are throttled per account and per
//! client address (`throttle`), audited with a reason (`login.succeeded`,
//! `login.failed`: unknown_user, wrong_password, disabled, wrong_otp,
//! throttled), and answer the user the same way whatever the reason, so
//! that no answer and no timing tells whether a username exists.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use super::passwords::Verdict;
use super::sessions::{self, SessionInfo};
use super::throttle::{self, Buckets};
use super::totp;
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::oauth::Core;
use crate::secret::Secret;
use crate::store::{MfaStore, StoreError, ThrottleStore, UserRecord, UserStore};

/// How a login step ended.
pub enum Step {
    /// A bucket is blocked: try again in this many seconds.
    Throttled { retry_after: u64 },
    /// Wrong credentials, whatever the reason (the audit log has it).
    Refused,
    /// The second step's form has expired: start again.
    Expired,
    /// The password was right and a code is needed: the signed, short-lived
    /// state of the second step.
    NeedsCode { pending: String },
    /// Signed in: a new session and its cookie secret, and a new device
    /// cookie for the browser (see `throttle`).
    SignedIn {
        session: SessionInfo,
        secret: Secret,
        device: String,
    },
}

fn human(user_id: &str) -> Actor {
    Actor {
        id: Some(user_id.to_owned()),
        kind: ActorKind::Human,
        owner: None,
    }
}

async fn failed(core: &Core, actor: Actor, target: &str, reason: &str, remote: Option<&str>) {
    Event::new(actor, "login.failed", Outcome::Failure)
        .target(target)
        .remote(remote.map(str::to_owned))
        .details(serde_json::json!({ "reason": reason }))
        .record(&core.store)
        .await;
}

/// Step one: username and password. `device`: the browser's device
/// cookie, if it sent one.
pub async fn password_step(
    core: &Core,
    username: &str,
    password: Secret,
    remote: Option<&str>,
    device: Option<&str>,
) -> Result<Step, StoreError> {
    let buckets = Buckets::new(core, username, remote, device);
    if let Some(retry_after) = throttle::admit(core, &buckets).await? {
        failed(core, Actor::anonymous(), username, "throttled", remote).await;
        return Ok(Step::Throttled { retry_after });
    }
    // Whether the user confirmed TOTP is read here, with the user, not
    // after the hash: an enrolment confirmed while the hash waits its turn
    // is asked for from the next login on, as a user disabled meanwhile is
    // refused from the next login on.
    let found = core.store.user_for_login(username.to_owned()).await?;
    let (user, enrolled) = match found {
        Some((user, enrolled)) => (Some(user), enrolled),
        None => (None, false),
    };
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    // Unknown users (and users without a password) cost one hash too.
    let verdict = match stored {
        Some(hash) => Some(core.passwords.verify_blocking(hash, password.clone()).await),
        None => {
            core.passwords.dummy_verify_blocking(password.clone()).await;
            None
        }
    };
    let (user, needs_rehash) = match (user, verdict) {
        (None, _) => {
            failed(core, Actor::anonymous(), username, "unknown_user", remote).await;
            return Ok(Step::Refused);
        }
        (Some(user), None | Some(Verdict::Wrong)) => {
            failed(
                core,
                human(&user.id),
                &user.username,
                "wrong_password",
                remote,
            )
            .await;
            return Ok(Step::Refused);
        }
        (Some(user), Some(_)) if user.disabled => {
            failed(core, human(&user.id), &user.username, "disabled", remote).await;
            return Ok(Step::Refused);
        }
        (Some(user), Some(Verdict::Ok { needs_rehash })) => (user, needs_rehash),
    };
    if needs_rehash {
        rehash(core, &user, password).await;
    }
    if enrolled {
        // The password was right: not a failure, the code step counts anew.
        throttle::not_a_failure(core, &buckets).await?;
        let expires = crate::clock::now() + core.config.login.second_step_timeout.as_secs() as i64;
        return Ok(Step::NeedsCode {
            pending: pending_token(core, &user.id, expires),
        });
    }
    sign_in(core, &user, &["pwd"], &buckets, remote).await
}

/// Step two: a TOTP code or a recovery code, for the user the signed
/// `pending` state names.
pub async fn code_step(
    core: &Core,
    pending: &str,
    code: &str,
    remote: Option<&str>,
    device: Option<&str>,
) -> Result<Step, StoreError> {
    let Some(user_id) = open_pending(core, pending, crate::clock::now()) else {
        return Ok(Step::Expired);
    };
    let Some(user) = core.store.user_by_id(user_id).await? else {
        return Ok(Step::Expired);
    };
    let buckets = Buckets::new(core, &user.username, remote, device);
    if let Some(retry_after) = throttle::admit(core, &buckets).await? {
        failed(core, human(&user.id), &user.username, "throttled", remote).await;
        return Ok(Step::Throttled { retry_after });
    }
    if user.disabled {
        failed(core, human(&user.id), &user.username, "disabled", remote).await;
        return Ok(Step::Refused);
    }
    let code = code.trim();
    let accepted = if totp::is_totp_code(code) {
        match core.store.totp_for(user.id.clone()).await? {
            Some(record) if record.confirmed_at.is_some() => {
                let step = totp::open(core.keys.master(), &record)
                    .and_then(|secret| totp::matching_step(&secret, code, crate::clock::now()));
                match step {
                    // RFC 6238 §5.2: a code already accepted is refused.
                    Some(step) => core.store.use_totp_step(user.id.clone(), step).await?,
                    None => false,
                }
            }
            _ => false,
        }
    } else {
        let digest = totp::recovery_digest(&core.digest_key, &user.id, code);
        core.store
            .use_recovery_code(user.id.clone(), digest, crate::clock::now())
            .await?
    };
    if !accepted {
        failed(core, human(&user.id), &user.username, "wrong_otp", remote).await;
        return Ok(Step::Refused);
    }
    sign_in(core, &user, &["pwd", "otp"], &buckets, remote).await
}

/// Rehash-on-login: the password hashed at the configured parameters
/// replaces a hash made at older ones. A failure only postpones it.
async fn rehash(core: &Core, user: &UserRecord, password: Secret) {
    match core.passwords.hash_blocking(password).await {
        Ok(hash) => {
            if let Err(e) = core.store.set_password_hash(user.id.clone(), hash).await {
                tracing::warn!(error = %e, "rehash on login postponed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "rehash on login failed"),
    }
}

/// A right attempt settles its throttle buckets (`throttle::settlement`)
/// in the transaction that starts the session and audits the login. When
/// that fails, they are settled on their own: the credentials were right,
/// and a retry of them must not count against the owner.
async fn sign_in(
    core: &Core,
    user: &UserRecord,
    amr: &[&str],
    buckets: &Buckets,
    remote: Option<&str>,
) -> Result<Step, StoreError> {
    let event = |session: &SessionInfo| {
        Event::new(human(&user.id), "login.succeeded", Outcome::Success)
            .target(&user.username)
            .remote(remote.map(str::to_owned))
            .details(serde_json::json!({ "amr": session.amr, "sid": session.sid }))
            .into_record(crate::clock::now_ms())
    };
    let settlement = throttle::settlement(buckets);
    let started = sessions::start_login(core, &user.id, amr, settlement.clone(), event).await;
    let (session, secret) = match started {
        Ok(started) => started,
        Err(e) => {
            if let Err(e) = core.store.settle_attempt(settlement).await {
                tracing::warn!(error = %e, "a right login's throttle attempt is still counted");
            }
            return Err(e);
        }
    };
    Ok(Step::SignedIn {
        session,
        secret,
        device: throttle::device_cookie(core, &user.username),
    })
}

/// The signed state between the two steps: the user's id and an expiry,
/// HMAC-signed under a key of its own. Stateless, so any replica takes the
/// second step; short-lived, and worth nothing without a valid code.
fn pending_token(core: &Core, user_id: &str, expires: i64) -> String {
    let payload = format!("{user_id}\n{expires}");
    let key = super::purpose_key(&core.digest_key, "tessera login pending v1");
    let tag = hmac::sign(&key, payload.as_bytes());
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

fn open_pending(core: &Core, token: &str, now: i64) -> Option<String> {
    let (payload, tag) = token.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let key = super::purpose_key(&core.digest_key, "tessera login pending v1");
    let expected = hmac::sign(&key, &payload);
    if !bool::from(expected.as_ref().ct_eq(&tag)) {
        return None;
    }
    let text = String::from_utf8(payload).ok()?;
    let (user_id, expires) = text.split_once('\n')?;
    (expires.parse::<i64>().ok()? > now).then(|| user_id.to_owned())
}

/// Where to send the browser after a login: `return_to` when it is a safe
/// local path (starts with one `/`, no `//` or `/\`, no backslash, only
/// visible ASCII, at most 4096 bytes), else `/account`. Browsers drop tabs
/// and newlines inside URLs and read `\` as `/`, so any of those could turn
/// a local path into another host; they are refused outright.
pub fn safe_return_to(return_to: Option<&str>) -> &str {
    match return_to {
        Some(path)
            if path.len() <= 4096
                && path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && path.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            path
        }
        _ => "/account",
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn only_local_paths_are_return_targets() {
        for good in ["/account", "/authorize?client_id=a&state=x%2F", "/"] {
            assert_eq!(safe_return_to(Some(good)), good);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil",
            "https://evil.example",
            "evil",
            "/\t/evil",
            "/a b",
            "/\u{0}",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/account", "{bad:?}");
        }
        assert_eq!(
            safe_return_to(Some(&format!("/{}", "a".repeat(4096)))),
            "/account"
        );
        assert_eq!(safe_return_to(None), "/account");
    }
}
