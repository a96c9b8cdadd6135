//! Request syntax, checked at the edge of the token, introspection and
//! revocation endpoints: a value outside its grammar (RFC 6749 Appendix A
//! and the RFCs that add parameters) is refused before anything is looked
//! up, audited or stored. Parameters no grammar names are ignored
//! (RFC 6749 §3.2).

use super::client_auth::decode_basic;
use super::{ErrorCode, OAuthError};

/// The longest client id or subject looked up. RFC 6749 leaves the length
/// open; ids Tessera issues are far shorter, and a cap keeps a flood of
/// huge unknown ids from filling the caches of misses.
pub const MAX_IDENTIFIER_LEN: usize = 255;

/// Whether `value` can name a client or a service user: `1*VSCHAR`
/// (RFC 6749 Appendix A.1) of at most [`MAX_IDENTIFIER_LEN`] bytes. Checked
/// before any lookup, for form values and for the unverified `sub` of an
/// assertion alike.
pub fn is_identifier(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_IDENTIFIER_LEN && value.bytes().all(is_vschar)
}

/// The grammars the parameters use.
#[derive(Clone, Copy, Debug)]
enum Grammar {
    /// RFC 6749 Appendix A.1, A.2, A.12: `*VSCHAR`, VSCHAR = %x20-7E.
    VisibleText,
    /// Appendix A.4: `scope-token *( SP scope-token )`, scope-token =
    /// `1*NQCHAR`, NQCHAR = %x21 / %x23-5B / %x5D-7E. Repeated spaces are
    /// tolerated: they name no token.
    Scope,
    /// Appendix A.10: `grant-name / URI-reference`.
    GrantType,
    /// RFC 3986 §4.3: an absolute URI (RFC 7521 §4.2
    /// `client_assertion_type`; RFC 8707 §2 `resource`, which also has no
    /// fragment).
    AbsoluteUri,
    /// RFC 7515 §7.1 / RFC 7516 §7.1 compact serialization: base64url
    /// parts joined by `.` (RFC 7523 §2.1, §2.2).
    CompactJwt,
    /// Appendix A.10 `1*name-char` (RFC 7009 §2.1 `token_type_hint`).
    Name,
}

/// The grammar of each parameter the three endpoints read.
fn grammar_of(parameter: &str) -> Option<Grammar> {
    Some(match parameter {
        "client_id" | "client_secret" | "token" | "audience" => Grammar::VisibleText,
        "scope" => Grammar::Scope,
        "grant_type" => Grammar::GrantType,
        "client_assertion_type" | "resource" => Grammar::AbsoluteUri,
        "assertion" | "client_assertion" => Grammar::CompactJwt,
        "token_type_hint" => Grammar::Name,
        _ => return None,
    })
}

fn is_vschar(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

fn is_nqchar(b: u8) -> bool {
    is_vschar(b) && !matches!(b, b' ' | b'"' | b'\\')
}

/// Appendix A: `name-char = "-" / "." / "_" / DIGIT / ALPHA`.
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

/// RFC 3986 §2: unreserved and reserved characters, and `%` of a
/// percent-encoding.
fn is_uri_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

fn is_base64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

fn is_absolute_uri(value: &str) -> bool {
    value.bytes().all(is_uri_char) && url::Url::parse(value).is_ok()
}

impl Grammar {
    /// Whether a non-empty `value` is in the grammar (an empty value counts
    /// as absent everywhere).
    fn accepts(self, value: &str) -> bool {
        let bytes = value.as_bytes();
        match self {
            Grammar::VisibleText => bytes.iter().all(|&b| is_vschar(b)),
            Grammar::Scope => value.split(' ').all(|token| token.bytes().all(is_nqchar)),
            Grammar::GrantType => bytes.iter().all(|&b| is_name_char(b)) || is_absolute_uri(value),
            Grammar::AbsoluteUri => is_absolute_uri(value),
            Grammar::CompactJwt => {
                let parts = value.split('.').count();
                (parts == 3 || parts == 5)
                    && value
                        .split('.')
                        .all(|part| part.bytes().all(is_base64url_char))
            }
            Grammar::Name => bytes.iter().all(|&b| is_name_char(b)),
        }
    }
}

/// Checks one form parameter against its grammar. A malformed `resource`
/// is `invalid_target` (RFC 8707 §2); anything else `invalid_request`
/// (RFC 6749 §5.2).
pub fn check_parameter(name: &str, value: &str) -> Result<(), OAuthError> {
    let Some(grammar) = grammar_of(name) else {
        return Ok(());
    };
    if name == "client_id" && value.len() > MAX_IDENTIFIER_LEN {
        return Err(OAuthError::invalid_request(
            "the parameter `client_id` is too long",
        ));
    }
    if value.is_empty() || grammar.accepts(value) {
        return Ok(());
    }
    let code = if name == "resource" {
        ErrorCode::InvalidTarget
    } else {
        ErrorCode::InvalidRequest
    };
    let description = match grammar {
        Grammar::VisibleText => "holds characters outside printable ASCII",
        Grammar::Scope => "holds a character a scope token may not hold",
        Grammar::GrantType => "is neither a grant name nor an absolute URI",
        Grammar::AbsoluteUri => "is not an absolute URI",
        Grammar::CompactJwt => "is not a JWT in compact serialization",
        Grammar::Name => "is not a name",
    };
    Err(OAuthError::new(
        code,
        format!("the parameter `{name}` {description}"),
    ))
}

/// RFC 6749 §2.3.1: the decoded Basic credentials are `client_id` and
/// `client_secret`, with their grammar. A header that does not decode is a
/// failed client authentication (§5.2).
pub fn check_basic(credentials: &str) -> Result<(), OAuthError> {
    match decode_basic(credentials) {
        Some((id, secret))
            if id.len() <= MAX_IDENTIFIER_LEN
                && Grammar::VisibleText.accepts(&id)
                && Grammar::VisibleText.accepts(secret.expose()) =>
        {
            Ok(())
        }
        _ => Err(OAuthError::new(
            ErrorCode::InvalidClient,
            "the Basic credentials are malformed",
        )),
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`.
pub fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// An `application/x-www-form-urlencoded` body: every `%` starts a
/// percent-encoding of two hex digits (RFC 3986 §2.1). The form decoder
/// would keep a stray `%` as it is, so a value could not be trusted to be
/// what the client meant.
pub fn check_form_body(body: &[u8]) -> Result<(), OAuthError> {
    let malformed = body.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !body
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(OAuthError::invalid_request(
            "the body holds a malformed percent-encoding",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_follow_their_grammar() {
        let ok = [
            ("client_id", "my client-1"),
            ("scope", "deploy:read deploy:write"),
            ("grant_type", "client_credentials"),
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "eyJh.eyJz.c2ln"),
            ("resource", "https://api.example.com/v1"),
            ("token_type_hint", "access_token"),
            ("unknown", "\u{0}anything"),
        ];
        for (name, value) in ok {
            assert!(check_parameter(name, value).is_ok(), "{name}={value:?}");
        }
        let bad = [
            ("client_id", "\u{0}"),
            ("client_id", "caf\u{e9}"),
            ("client_secret", "a\nb"),
            ("scope", "a\"b"),
            ("scope", "\u{fffd}"),
            ("grant_type", "client credentials"),
            ("grant_type", "\u{fffd}"),
            ("client_assertion_type", "not a uri"),
            ("client_assertion", "eyJh.eyJz"),
            ("client_assertion", "eyJh.eyJz.c2ln=="),
            ("assertion", "a.b.c\u{0}"),
            ("token", "tsr_\u{7f}"),
            ("token_type_hint", "access token"),
        ];
        for (name, value) in bad {
            let error = check_parameter(name, value).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{name}={value:?}");
        }
        let error = check_parameter("resource", "not a uri").unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidTarget);
    }

    #[test]
    fn basic_credentials_follow_the_client_grammar() {
        use base64::Engine;
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(check_basic(&encode("client:secret")).is_ok());
        for bad in ["%00:secret", "client:%0A", "caf%C3%A9:x"] {
            let error = check_basic(&encode(bad)).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidClient, "{bad}");
        }
        assert!(check_basic("!!!").is_err());
    }

    #[test]
    fn stray_percent_signs_are_refused() {
        assert!(check_form_body(b"scope=a%20b&x=%7E").is_ok());
        for bad in [&b"scope=%ZZ"[..], b"grant_type=%", b"x=%4"] {
            assert!(check_form_body(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bearer_tokens_are_b64tokens() {
        assert!(is_b64token("tsr_bt_abc-DEF.~+/=="));
        assert!(!is_b64token("a b"));
        assert!(!is_b64token("=="));
        assert!(!is_b64token("\u{0}"));
    }
}
