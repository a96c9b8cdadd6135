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

/// Whether `text` is written as the URL parser would write it (host in
/// lower case, no default port, no dot segments), allowing only the
/// parser's added `/` for an empty path. An issuer is compared byte for byte
/// with the `iss` of tokens, which platforms write canonically: a
/// non-canonical one would silently match nothing.
pub fn is_canonical(text: &str) -> bool {
    Url::parse(text).is_ok_and(|url| {
        let written = url.as_str();
        written == text || written.strip_suffix('/') == Some(text)
    })
}

/// Whether a `jwks_uri` that `issuer`'s discovery document names may be
/// fetched: as acceptable as an issuer, and on a loopback or private
/// address only when the issuer itself is on that host, so that a
/// discovery document cannot point Tessera at its own neighbours.
pub fn may_fetch_keys_from(issuer: &str, jwks_uri: &str) -> bool {
    let (Ok(issuer), Ok(keys)) = (Url::parse(issuer), Url::parse(jwks_uri)) else {
        return false;
    };
    if !is_acceptable_url(jwks_uri) {
        return false;
    }
    let internal = |url: &Url| match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Some(Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.is_unique_local() || ip.is_unicast_link_local()
        }
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => true,
    };
    !internal(&keys) || issuer.host() == keys.host()
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
    fn canonical_issuers_only() {
        assert!(is_canonical("https://token.actions.githubusercontent.com"));
        assert!(is_canonical("https://example.auth0.com/"));
        assert!(is_canonical("https://ghe.example.com/_services/token"));
        assert!(!is_canonical("https://TOKEN.actions.githubusercontent.com"));
        assert!(!is_canonical("https://gitlab.com:443"));
        assert!(!is_canonical("https://gitlab.com/./x"));
    }

    #[test]
    fn keys_on_internal_hosts_only_for_internal_issuers() {
        let github = "https://token.actions.githubusercontent.com";
        assert!(may_fetch_keys_from(
            github,
            &format!("{github}/.well-known/jwks")
        ));
        assert!(may_fetch_keys_from(
            "https://accounts.example.com",
            "https://keys.example.net/certs"
        ));
        assert!(!may_fetch_keys_from(github, "http://127.0.0.1:8080/jwks"));
        assert!(!may_fetch_keys_from(github, "https://10.0.0.5/jwks"));
        assert!(!may_fetch_keys_from(github, "https://[::1]/jwks"));
        assert!(may_fetch_keys_from(
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/jwks"
        ));
        assert!(!may_fetch_keys_from(
            "http://127.0.0.1:9000",
            "http://127.0.0.2:9000/jwks"
        ));
    }

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
