//! The syntax of a user's fields. Checked at the edge (the admin API
//! in `users`), so the store only ever holds valid values.

/// Longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle
/// brackets, so an address is at most 254.
pub const MAX_EMAIL_CHARS: usize = 254;

/// The username pattern, for the OpenAPI document.
pub const USERNAME_PATTERN: &str = "^[A-Za-z0-9._@-]{1,64}$";

/// An email address's shape, for the OpenAPI document and the server
/// alike (see [`check_email`]).
pub const EMAIL_PATTERN: &str = r#"^[^@<>",\x00-\x20\x7f-\xa0]+@[^@<>",.\x00-\x20\x7f-\xa0]+(\.[^@<>",.\x00-\x20\x7f-\xa0]+)*$"#;

/// 1 to 64 characters of `[A-Za-z0-9._@-]`: safe in a URL path segment,
/// a log line and a terminal, and an email address can be one.
pub fn is_username(text: &str) -> bool {
    (1..=MAX_USERNAME_CHARS).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// Why a username is refused, for the error description.
pub fn check_username(text: &str) -> Result<(), String> {
    if is_username(text) {
        Ok(())
    } else {
        Err(format!(
            "username must be 1 to {MAX_USERNAME_CHARS} characters of A-Z, a-z, 0-9, `.`, `_`, `@` and `-`"
        ))
    }
}

/// The shape of an address, `local@domain` (RFC 5322 §3.4.1, loosely):
/// at most 254 characters, one `@` with something on both sides, no
/// spaces, control characters, quotes, angle brackets or commas, and a
/// domain of dot-separated non-empty labels. Whether mail reaches it is
/// for `email_verified` to say.
pub fn check_email(text: &str) -> Result<(), String> {
    static SHAPE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let shape = SHAPE.get_or_init(|| regex::Regex::new(EMAIL_PATTERN).expect("EMAIL_PATTERN"));
    if text.chars().count() > MAX_EMAIL_CHARS {
        return Err("email must be at most 254 characters".to_owned());
    }
    if !shape.is_match(text) {
        return Err(
            "email must have the form local@domain (one `@`, a domain of non-empty labels \
             separated by dots, no spaces, control characters, quotes, brackets or commas)"
                .to_owned(),
        );
    }
    Ok(())
}

/// A display name follows the rules of a client's name (1 to 200
/// characters, at least one visible).
pub fn check_display_name(text: &str) -> Result<(), String> {
    if crate::oauth::client::is_name(text) && !text.contains('\0') {
        Ok(())
    } else {
        Err("display_name must be 1 to 200 characters with at least one visible".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for good in ["alice", "Alice.B", "a", "bob_smith-2", "alice@example.com"] {
            assert!(is_username(good), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "al ice",
            "alice/",
            "ålice",
            "a\0b",
            long.as_str(),
            "a:b",
            "%61",
        ] {
            assert!(!is_username(bad), "{bad:?}");
        }
        assert!(is_username(&"a".repeat(64)));
        assert!(check_username("a b").unwrap_err().contains("1 to 64"));
    }

    #[test]
    fn emails() {
        for good in ["alice@example.com", "a.b+c@sub.example.org", "x@localhost"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        let long = format!("{}@example.com", "a".repeat(243));
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@@example.com",
            "a@b@example.com",
            "alice@example..com",
            "alice@.com",
            "ali ce@example.com",
            "alice@exa\0mple.com",
            "<alice@example.com>",
            long.as_str(),
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        assert!(check_email(&format!("{}@example.com", "a".repeat(242))).is_ok());
    }

    #[test]
    fn display_names() {
        assert!(check_display_name("Alice Liddell").is_ok());
        assert!(check_display_name("   ").is_err());
        assert!(check_display_name("").is_err());
        assert!(check_display_name(&"é".repeat(200)).is_ok());
        assert!(check_display_name(&"é".repeat(201)).is_err());
        assert!(check_display_name("a\0b").is_err());
    }
}
