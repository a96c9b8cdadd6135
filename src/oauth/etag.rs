//! Entity tags for the admin API's resources (RFC 9110 §8.8.3) and the
//! `If-Match` precondition (RFC 9110 §13.1.1) that makes read-modify-write
//! safe for scripts.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use super::{ErrorCode, OAuthError};

/// A strong entity tag: a digest of the JSON representation, so it changes
/// exactly when what a `GET` returns changes.
pub fn of(representation: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(representation).unwrap_or_default();
    let hash = digest::digest(&digest::SHA256, &bytes);
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&hash.as_ref()[..18]))
}

/// RFC 9110 §13.1.1: `If-Match: *` or a list of entity tags, compared
/// strongly (a weak tag never matches). No header means no precondition.
pub fn check(if_match: Option<&str>, current: &str) -> Result<(), OAuthError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let matches = header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current);
    if matches {
        Ok(())
    } else {
        Err(OAuthError::new(
            ErrorCode::PreconditionFailed,
            "the resource changed since it was read (If-Match does not match its ETag): \
             read it again and retry",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_comparison_of_a_list_or_star() {
        let tag = of(&serde_json::json!({"a": 1}));
        assert!(check(None, &tag).is_ok());
        assert!(check(Some("*"), &tag).is_ok());
        assert!(check(Some(&format!("\"x\", {tag}")), &tag).is_ok());
        assert!(check(Some(&format!("W/{tag}")), &tag).is_err());
        assert!(check(Some("\"other\""), &tag).is_err());
        assert_ne!(tag, of(&serde_json::json!({"a": 2})));
    }
}
