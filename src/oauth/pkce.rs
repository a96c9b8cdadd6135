//! Proof Key for Code Exchange (RFC 7636), S256 only.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use super::{ErrorCode, OAuthError};

/// RFC 7636 §4.1: `code-verifier = 43*128unreserved`, and §4.2: the S256
/// challenge is its SHA-256, base64url without padding: 43 characters.
fn is_unreserved_text(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.3 on the authorization request: the challenge, when there
/// is one, must be S256 (`plain` is refused: OAuth 2.0 Security BCP
/// §2.1.1), and the challenge must have the form S256 produces.
pub fn check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
    required: bool,
) -> Result<Option<String>, OAuthError> {
    let Some(challenge) = challenge else {
        if method.is_some() {
            return Err(OAuthError::invalid_request(
                "code_challenge_method without code_challenge",
            ));
        }
        if required {
            return Err(OAuthError::invalid_request(
                "code_challenge is required: this client must use PKCE with S256 (RFC 7636)",
            ));
        }
        return Ok(None);
    };
    match method {
        Some("S256") => {}
        // RFC 7636 §4.3: the default method is `plain`, which is refused.
        None | Some("plain") => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256; plain is not accepted",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_request(
                "code_challenge_method must be S256",
            ));
        }
    }
    if challenge.len() != 43 || !is_unreserved_text(challenge, 43, 43) {
        return Err(OAuthError::invalid_request(
            "code_challenge must be the 43-character base64url SHA-256 of the verifier (RFC 7636 section 4.2)",
        ));
    }
    Ok(Some(challenge.to_owned()))
}

/// The S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// RFC 7636 §4.6 at the token endpoint: the verifier must be present
/// exactly when the code has a challenge, well-formed (§4.1), and hash to
/// the challenge.
pub fn verify(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    let grant = |m: &'static str| OAuthError::new(ErrorCode::InvalidGrant, m);
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(grant(
            "code_verifier was sent but the authorization request had no code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_request(
            "code_verifier is required (RFC 7636 section 4.5)",
        )),
        (Some(challenge), Some(verifier)) => {
            if !is_unreserved_text(verifier, 43, 128) {
                return Err(OAuthError::invalid_request(
                    "code_verifier must be 43 to 128 unreserved characters (RFC 7636 section 4.1)",
                ));
            }
            if s256(verifier).as_bytes().ct_eq(challenge.as_bytes()).into() {
                Ok(())
            } else {
                Err(grant("code_verifier does not match the code_challenge"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn appendix_b_example_verifies() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
        verify(Some(CHALLENGE), Some(VERIFIER)).unwrap();
    }

    #[test]
    fn wrong_short_or_missing_verifiers_are_refused() {
        let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj";
        assert_eq!(
            verify(Some(CHALLENGE), Some(wrong)).unwrap_err().code,
            ErrorCode::InvalidGrant
        );
        assert_eq!(
            verify(Some(CHALLENGE), Some("short")).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert!(verify(Some(CHALLENGE), None).is_err());
        assert!(verify(None, Some(VERIFIER)).is_err());
        let bad_chars = format!("{VERIFIER}+");
        assert!(verify(Some(CHALLENGE), Some(&bad_chars)).is_err());
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        assert!(check_challenge(Some(CHALLENGE), Some("S256"), true).is_ok());
        assert!(check_challenge(Some(CHALLENGE), Some("plain"), true).is_err());
        assert!(check_challenge(Some(CHALLENGE), None, true).is_err());
        assert!(check_challenge(None, None, true).is_err());
        assert_eq!(check_challenge(None, None, false).unwrap(), None);
        assert!(check_challenge(Some("abc"), Some("S256"), false).is_err());
    }
}
