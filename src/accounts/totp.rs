//! TOTP second factors (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, one
//! step of clock skew either way, the parameters every authenticator app
//! reads from an `otpauth://` URI) and single-use recovery codes.

use aws_lc_rs::hmac;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::keys::MasterKey;
use crate::store::{MfaStore, ResealedTotp, StoreError, TotpRecord};

pub const DIGITS: usize = 6;
/// RFC 6238 §4.1: X, the time step in seconds.
pub const STEP_SECS: i64 = 30;
/// RFC 6238 §5.2: at most one step of network delay or clock drift.
const SKEW_STEPS: i64 = 1;
/// RFC 4226 §4: a secret of 160 bits is recommended.
const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;

pub fn new_secret() -> Zeroizing<Vec<u8>> {
    Zeroizing::new(crate::random::random_bytes::<SECRET_BYTES>().to_vec())
}

/// The secret as RFC 4648 base32 without padding, for manual entry.
pub fn base32(secret: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(
        totp_rs::Secret::Raw(secret.to_vec())
            .to_encoded()
            .to_string(),
    )
}

/// The `otpauth://totp/` URI authenticator apps scan (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> Zeroizing<String> {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    Zeroizing::new(format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        base32(secret).as_str(),
        enc(issuer),
    ))
}

/// The URI as an inline SVG QR code (no image file, no script).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

/// Whether `code` looks like a TOTP code (six digits) rather than a
/// recovery code.
pub fn is_totp_code(code: &str) -> bool {
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// The time step whose code `code` is, within one step of `now` (RFC 6238
/// §5.2), compared in constant time. The caller must still refuse a step
/// not later than the last one accepted (§5.2: "the verifier MUST NOT
/// accept the second attempt of the OTP").
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    if !is_totp_code(code) {
        return None;
    }
    let totp = TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECS as u64,
        secret.to_vec(),
    );
    let current = now.div_euclid(STEP_SECS);
    let mut found = None;
    for step in (current - SKEW_STEPS)..=(current + SKEW_STEPS) {
        if step < 0 {
            continue;
        }
        let expected = totp.generate((step * STEP_SECS) as u64);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// The code for `time` (tests and the enrolment page's self-check).
pub fn code_at(secret: &[u8], time: i64) -> String {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECS as u64,
        secret.to_vec(),
    )
    .generate(time.max(0) as u64)
}

fn context(user_id: &str) -> Vec<u8> {
    format!("tessera totp v1\0{user_id}").into_bytes()
}

/// Seals a secret under the master key, bound to its user.
pub fn seal(master: &MasterKey, user_id: &str, secret: &[u8]) -> (Vec<u8>, String) {
    (
        master.seal(secret, &context(user_id)),
        master.id().to_owned(),
    )
}

/// A re-key's second half (`tessera keys rekey`): every TOTP secret sealed
/// under the previous master key is opened with it and sealed under the
/// current one, so dropping the previous key later locks nobody out.
/// Returns how many were sealed anew; fails, changing nothing, when a
/// secret was sealed under a key `master` does not hold.
pub async fn reseal_all<S: MfaStore>(store: &S, master: &MasterKey) -> Result<usize, StoreError> {
    let records = store.totp_sealed_elsewhere(master.id().to_owned()).await?;
    let mut resealed = Vec::with_capacity(records.len());
    for record in &records {
        let secret = open(master, record).ok_or_else(|| {
            StoreError::Other(format!(
                "a TOTP secret is sealed under master key {}, which is neither \
                 TESSERA_MASTER_KEY nor TESSERA_PREVIOUS_MASTER_KEY; nothing was changed",
                record.master_key_id
            ))
        })?;
        resealed.push(ResealedTotp {
            user_id: record.user_id.clone(),
            sealed_with: record.master_key_id.clone(),
            was_sealed: record.sealed_secret.clone(),
            sealed_secret: seal(master, &record.user_id, &secret).0,
        });
    }
    if resealed.is_empty() {
        return Ok(0);
    }
    store.reseal_totp(resealed, master.id().to_owned()).await
}

/// Opens a stored secret with the master key (current or previous) that
/// sealed it.
pub fn open(master: &MasterKey, record: &TotpRecord) -> Option<Zeroizing<Vec<u8>>> {
    master
        .for_id(&record.master_key_id)?
        .open(&record.sealed_secret, &context(&record.user_id))
        .ok()
}

/// Ten recovery codes of 50 bits each, as `xxxxx-xxxxx` (base32, lower
/// case, no ambiguous look-alikes needed: they are typed once, rarely).
pub fn new_recovery_codes() -> Vec<Zeroizing<String>> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes = crate::random::random_bytes::<10>();
            let mut code = Zeroizing::new(String::with_capacity(11));
            for (i, b) in bytes.iter().enumerate() {
                if i == 5 {
                    code.push('-');
                }
                code.push(char::from(ALPHABET[usize::from(b & 31)]));
            }
            code
        })
        .collect()
}

/// The keyed digest a recovery code is stored as: spaces and dashes
/// dropped, lower case, bound to its user.
pub fn recovery_digest(digest_key: &hmac::Key, user_id: &str, code: &str) -> Vec<u8> {
    let key = super::purpose_key(digest_key, "tessera recovery code v1");
    let normalized: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(user_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(normalized.as_bytes());
    ctx.sign().as_ref().to_vec()
}

/// An administrator's reset of a user's second factor, by id or username:
/// the TOTP secret and the recovery codes go, and `mfa.reset` is audited.
pub async fn reset(
    core: &crate::oauth::Core,
    user: &str,
    actor: crate::audit::Actor,
) -> Result<(), crate::oauth::OAuthError> {
    use crate::store::MfaStore;
    let found = super::users::resolve(&core.store, user).await?;
    let (removed, ended) = core.store.reset_mfa(found.id.clone()).await?;
    crate::audit::Event::new(actor, "mfa.reset", crate::audit::Outcome::Success)
        .target(&found.id)
        .details(serde_json::json!({
            "username": found.username,
            "removed": removed,
            "ended_sessions": ended.sessions,
            "revoked_refresh_tokens": ended.refresh_tokens,
        }))
        .record(&core.store)
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        // RFC 6238 Appendix B: the SHA-1 seed, 8 digits there; the last
        // six digits are the 6-digit code (RFC 4226 §5.3 truncation).
        let seed = b"12345678901234567890";
        assert_eq!(code_at(seed, 59), "287082");
        assert_eq!(code_at(seed, 1_111_111_109), "081804");
        assert_eq!(code_at(seed, 2_000_000_000), "279037");
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let secret = new_secret();
        let now = 1_700_000_000;
        let code = code_at(&secret, now);
        assert_eq!(matching_step(&secret, &code, now), Some(now / 30));
        assert_eq!(matching_step(&secret, &code, now + 30), Some(now / 30));
        assert_eq!(matching_step(&secret, &code, now + 90), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn recovery_codes_normalise_and_bind_to_the_user() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &[1; 32]);
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let code = codes[0].as_str();
        assert_eq!(code.len(), 11);
        let upper = code.to_uppercase().replace('-', " ");
        assert_eq!(
            recovery_digest(&key, "u1", code),
            recovery_digest(&key, "u1", &upper)
        );
        assert_ne!(
            recovery_digest(&key, "u1", code),
            recovery_digest(&key, "u2", code)
        );
    }

    #[test]
    fn secrets_seal_to_their_user() {
        let master = MasterKey::generate();
        let secret = new_secret();
        let (sealed, id) = seal(&master, "u1", &secret);
        let record = |user: &str| TotpRecord {
            user_id: user.into(),
            sealed_secret: sealed.clone(),
            master_key_id: id.clone(),
            confirmed_at: None,
            last_step: 0,
            created_at: 0,
        };
        assert_eq!(
            open(&master, &record("u1")).unwrap().as_slice(),
            &secret[..]
        );
        assert!(open(&master, &record("u2")).is_none());
    }
}
