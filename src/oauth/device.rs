//! The device authorization grant's core (RFC 8628): the device
//! authorization request (§3.1–3.2), and what the verification page does
//! with a user code (§3.3): look it up, under brute-force throttling
//! (§5.1), and record the user's answer. The token endpoint's side is
//! `grants::device_code`.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::json;

use super::client::GrantType;
use super::token::{RequestContext, TokenRequest};
use super::{Core, ErrorCode, OAuthError, grants};
use crate::accounts::sessions::SessionInfo;
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::keys::hex;
use crate::store::{
    Decided, DeviceDecision, DeviceRecord, DeviceState, DeviceStore, StoreError, ThrottleStore,
};

/// The verification page (RFC 8628 §3.2 `verification_uri`).
pub const VERIFICATION_PATH: &str = "/device";
/// The device authorization endpoint (§3.1).
pub const DEVICE_AUTHORIZATION_PATH: &str = "/oauth/device_authorization";

/// RFC 8628 §6.1: consonants only (no vowels, so no words; no look-alike
/// characters), eight of them: 20^8 ≈ 2^34.5 codes.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;
/// Device codes: 44 base62 characters, 261 bits (at least 256, as issue
/// 11 asks; §5.2 needs them unguessable).
const DEVICE_CODE_LEN: usize = 44;

/// RFC 8628 §3.2.
#[derive(Debug, Serialize)]
pub struct DeviceAuthorizationResponse {
    pub device_code: crate::secret::Secret,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// A user code shown as `XXXX-XXXX`.
pub fn display_user_code(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

/// A typed user code in its stored form (§6.1: case-insensitive; dashes,
/// spaces and other punctuation ignored), or `None` when it cannot be one.
pub fn normalize_user_code(input: &str) -> Option<String> {
    if input.len() > 64 {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| !(c.is_ascii_punctuation() || c.is_whitespace()))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

fn new_user_code() -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        for byte in crate::random::random_bytes::<16>() {
            // 240 = 12 * 20: bytes above it would bias the first letters.
            if byte < 240 && code.len() < USER_CODE_LEN {
                code.push(USER_CODE_ALPHABET[(byte % 20) as usize] as char);
            }
        }
    }
    code
}

fn digest(core: &Core, purpose: &str, value: &str) -> String {
    let key = crate::accounts::purpose_key(&core.digest_key, purpose);
    hex(aws_lc_rs::hmac::sign(&key, value.as_bytes()).as_ref())
}

/// The stored form of a device code.
pub fn device_code_digest(core: &Core, device_code: &str) -> String {
    digest(core, "tessera device code v1", device_code)
}

/// The stored form of a normalised user code.
pub fn user_code_digest(core: &Core, user_code: &str) -> String {
    digest(core, "tessera user code v1", user_code)
}

#[derive(Serialize)]
struct Requested<'a> {
    scope: &'a str,
}

/// RFC 8628 §3.1: a client allowed the device grant (public clients name
/// themselves with `client_id`; confidential ones authenticate as at the
/// token endpoint) asks for `scope`; §3.2: the codes and where to go.
pub async fn authorize(
    core: &Core,
    request: &TokenRequest,
    context: RequestContext,
) -> Result<DeviceAuthorizationResponse, OAuthError> {
    let client = grants::client_for(core, request, &context, GrantType::DeviceCode).await?;
    admit_request(core, context.remote.as_deref()).await?;
    let scopes = super::authorize::requested_scopes(&client, request.get("scope"))?;
    let scope = scopes.join(" ");
    let config = &core.config.device;
    let now = clock::now();
    let expires_in = config.code_lifetime.as_secs();
    let interval = config.interval.as_secs();
    let device_code = crate::random::random_base62(DEVICE_CODE_LEN);
    let mut user_code = new_user_code();
    // A live user code is taken with odds of one in millions: draw again.
    for attempt in 0.. {
        let record = DeviceRecord::pending(
            device_code_digest(core, &device_code),
            user_code_digest(core, &user_code),
            client.client_id.clone(),
            scope.clone(),
            now,
            context.remote.clone(),
            now + expires_in as i64,
            interval as i64,
        );
        match core.store.create_device(record).await {
            Ok(()) => break,
            Err(StoreError::Conflict) if attempt < 3 => user_code = new_user_code(),
            Err(other) => return Err(other.into()),
        }
    }
    Event::new(Actor::anonymous(), "device.requested", Outcome::Success)
        .client(client.client_id.clone())
        .remote(context.remote)
        .details(Requested { scope: &scope })
        .record_before_answering(&core.writer)
        .await?;
    let verification_uri = core.config.endpoint(VERIFICATION_PATH);
    let shown = display_user_code(&user_code);
    Ok(DeviceAuthorizationResponse {
        device_code: crate::secret::Secret::new(device_code),
        verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
        verification_uri,
        user_code: shown,
        expires_in,
        interval,
    })
}

/// Each device authorization request stores a row and an audit event:
/// an address may make `device.requests_per_address` within the login
/// throttle's window, then waits 2 s, 4 s, … (every replica counts the
/// same, in the database).
async fn admit_request(core: &Core, remote: Option<&str>) -> Result<(), OAuthError> {
    let Some(ip) = remote.and_then(|r| r.parse::<IpAddr>().ok()) else {
        return Ok(());
    };
    let bucket = format!("dr:a:{}", crate::audit::host_of(ip));
    let free = core.config.device.requests_per_address;
    match crate::accounts::throttle::admit_in(core, vec![(bucket, free)]).await? {
        None => Ok(()),
        Some(wait) => {
            let mut error = OAuthError::new(
                ErrorCode::SlowDown,
                format!(
                    "too many device authorization requests from this address; try again in {wait} s"
                ),
            );
            error.status = Some(429);
            error.retry_after = Some(wait);
            Err(error)
        }
    }
}

/// What the verification page found for a typed code.
#[derive(Debug)]
pub enum Lookup {
    /// Pending: ask the user.
    Found(Box<DeviceRecord>),
    /// Not a code at all, or none issued with it.
    Unknown,
    Expired,
    AlreadyAnswered,
    /// Too many wrong codes from this session or address: try again in
    /// this many seconds.
    Throttled(u64),
}

/// The throttle buckets of a signed-in user and an address (§5.1). The
/// user's, not the session's: signing in again starts no new count.
fn guess_buckets(core: &Core, session: &SessionInfo, remote: Option<&str>) -> Vec<(String, u32)> {
    let config = &core.config.device;
    let mut buckets = vec![(
        format!(
            "dv:u:{}",
            &digest(core, "tessera user code guesses v1", &session.user_id)[..32]
        ),
        config.free_guesses_per_user,
    )];
    if let Some(ip) = remote.and_then(|r| r.parse::<IpAddr>().ok()) {
        buckets.push((
            format!("dv:a:{}", crate::audit::host_of(ip)),
            config.free_guesses_per_address,
        ));
    }
    buckets
}

/// Looks a typed user code up for `session`. Every lookup counts against
/// the session's and the address's buckets before the code is looked up
/// (so parallel guesses are bounded too); one that finds a pending
/// authorization is taken back.
pub async fn lookup(
    core: &Core,
    typed: &str,
    session: &SessionInfo,
    remote: Option<&str>,
) -> Result<Lookup, OAuthError> {
    let buckets = guess_buckets(core, session, remote);
    if let Some(wait) = crate::accounts::throttle::admit_in(core, buckets.clone()).await? {
        return Ok(Lookup::Throttled(wait));
    }
    let Some(record) = find(core, typed).await? else {
        return Ok(Lookup::Unknown);
    };
    // A real code, typed right: not a guess.
    for (bucket, _) in buckets {
        core.store.refund_attempt(bucket).await?;
    }
    let now = clock::now();
    Ok(match record.state() {
        DeviceState::Pending if record.expires_at <= now => Lookup::Expired,
        DeviceState::Pending => Lookup::Found(Box::new(record)),
        _ => Lookup::AlreadyAnswered,
    })
}

/// Whether approving `record` needs a fresher login than `session`'s
/// ([`api_scopes::needs_recent_login`]): a link someone sent must not
/// take an admin token with one click on a long-open session (RFC 8628
/// §5.4).
pub fn needs_recent_login(
    core: &Core,
    record: &DeviceRecord,
    is_admin: bool,
    session: &SessionInfo,
) -> bool {
    let scopes: Vec<String> = record.scopes.split(' ').map(str::to_owned).collect();
    super::api_scopes::needs_recent_login(core, &scopes, is_admin, session.auth_time)
}

/// The authorization with this typed code, whatever its state.
pub async fn find(core: &Core, typed: &str) -> Result<Option<DeviceRecord>, OAuthError> {
    let Some(code) = normalize_user_code(typed) else {
        return Ok(None);
    };
    Ok(core
        .store
        .device_by_user_code(user_code_digest(core, &code))
        .await?)
}

/// What the confirmation page carries so that its answer is not counted
/// as another guess: a MAC of the session and the code it found.
pub fn seen_mark(core: &Core, session: &SessionInfo, user_code: &str) -> Option<String> {
    let code = normalize_user_code(user_code)?;
    Some(digest(
        core,
        "tessera device page seen v1",
        &format!("{}\n{code}", session.sid),
    ))
}

/// Whether `mark` is [`seen_mark`] for this session and code (compared in
/// constant time).
pub fn was_seen(core: &Core, session: &SessionInfo, user_code: &str, mark: &str) -> bool {
    use subtle::ConstantTimeEq;
    seen_mark(core, session, user_code)
        .is_some_and(|expected| bool::from(expected.as_bytes().ct_eq(mark.as_bytes())))
}

/// Records the signed-in user's answer to `record` (looked up already),
/// and audits it as that user.
pub async fn decide(
    core: &Core,
    record: &DeviceRecord,
    approve: bool,
    session: &SessionInfo,
    remote: Option<String>,
) -> Result<Decided, OAuthError> {
    let decided = core
        .store
        .decide_device(
            record.user_code_digest.clone(),
            DeviceDecision {
                approve,
                user_id: session.user_id.clone(),
                auth_time: session.auth_time,
                amr: session.amr.join(" "),
                remote: remote.clone(),
            },
            clock::now(),
        )
        .await?;
    if decided == Decided::Recorded {
        let (action, outcome) = if approve {
            ("device.approved", Outcome::Success)
        } else {
            ("device.denied", Outcome::Failure)
        };
        Event::new(
            Actor {
                id: Some(session.user_id.clone()),
                kind: ActorKind::Human,
                owner: None,
            },
            action,
            outcome,
        )
        .client(record.client_id.clone())
        .remote(remote)
        .details(json!({
            "sid": session.sid,
            "requested_from": record.requested_from,
            "scope": record.scopes,
        }))
        .record(&core.store)
        .await;
    }
    Ok(decided)
}

/// An RFC 8628 §3.5 error.
pub fn poll_error(code: ErrorCode, description: &'static str) -> OAuthError {
    let mut error = OAuthError::new(code, description);
    // §3.5 errors are token endpoint errors: 400 (RFC 6749 §5.2), also
    // for `access_denied`, which is 403 elsewhere.
    error.status = Some(400);
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typed_loosely_and_stored_strictly() {
        let code = new_user_code();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        let shown = display_user_code(&code);
        assert_eq!(normalize_user_code(&shown).as_deref(), Some(code.as_str()));
        assert_eq!(
            normalize_user_code(" wdjb mjht ").as_deref(),
            Some("WDJBMJHT")
        );
        assert_eq!(
            normalize_user_code("wdjb-mjht").as_deref(),
            Some("WDJBMJHT")
        );
        for bad in [
            "WDJB-MJH",
            "WDJB-MJHTX",
            "WDJB-MJHA",
            "",
            "WDJB\0MJHT",
            "ŴDJB-MJHT",
        ] {
            assert_eq!(normalize_user_code(bad), None, "{bad:?}");
        }
        assert_eq!(normalize_user_code(&"-".repeat(100)), None);
    }
}
