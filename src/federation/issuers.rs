//! Which issuer URLs Tessera will trust and fetch from.

use std::net::IpAddr;

use url::{Host, Url};

/// Issuer URLs are compared byte for byte and become database keys.
pub const MAX_ISSUER_LEN: usize = 255;

/// An issuer (or a `jwks_uri` it names) Tessera may fetch from: an
/// absolute `https` URL, or `http` on a loopback address (a local test
/// issuer), without credentials, query or fragment (OIDC Discovery §3
/// forbids the last two in an issuer).
pub fn is_acceptable_url(text: &str) -> bool {
    if text.len() > MAX_ISSUER_LEN || text.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return false;
    }
    let Ok(url) = Url::parse(text) else {
        return false;
    };
    let secure = match url.scheme() {
        "https" => true,
        "http" => is_loopback(&url),
        _ => false,
    };
    secure
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether the unverified `iss` of a token could name a trusted issuer at
/// all: only such values are looked up, so a service user's id (the other
/// thing a JWT-bearer assertion's `iss` may be) never is.
pub fn could_be_issuer(iss: &str) -> bool {
    iss.len() <= MAX_ISSUER_LEN && (iss.starts_with("https://") || iss.starts_with("http://"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_on_loopback_only() {
        for ok in [
            "https://token.actions.githubusercontent.com",
            "https://ghe.example.com/_services/token",
            "https://gitlab.com",
            "http://127.0.0.1:8080",
            "http://[::1]:9000/issuer",
            "http://localhost:3000",
        ] {
            assert!(is_acceptable_url(ok), "{ok}");
        }
        for bad in [
            "http://gitlab.example.com",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?q=1",
            "https://example.com/#frag",
            "https://exa mple.com",
            "token.actions.githubusercontent.com",
            "",
        ] {
            assert!(!is_acceptable_url(bad), "{bad}");
        }
        assert!(!is_acceptable_url(&format!(
            "https://{}.com",
            "a".repeat(300)
        )));
    }
}
