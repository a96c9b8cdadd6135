//! An agent's client metadata (RFC 7591 §2) as it registers or updates
//! itself, and what Tessera accepts of it: `private_key_jwt` with one
//! Ed25519 public key (P-256 where configured) given inline, for the
//! `client_credentials` grant only. Anything else is
//! `invalid_client_metadata` (§3.2.2). Members Tessera does not know are
//! ignored, as §2 says.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::oauth::client::{self, GrantType};
use crate::oauth::{ErrorCode, OAuthError, syntax};

pub const AUTH_METHOD: &str = "private_key_jwt";

/// The members of a registration or update request Tessera reads.
#[derive(Debug, Default, Deserialize)]
pub struct RequestedMetadata {
    pub client_id: Option<Value>,
    pub client_name: Option<Value>,
    pub token_endpoint_auth_method: Option<Value>,
    pub grant_types: Option<Value>,
    pub response_types: Option<Value>,
    pub redirect_uris: Option<Value>,
    pub jwks: Option<Value>,
    pub jwks_uri: Option<Value>,
    pub scope: Option<Value>,
    /// An agent has none. (What RFC 7592 §2.2 says a client must not send
    /// in an update, such as `registration_access_token`, is ignored with
    /// the other members Tessera does not read.)
    pub client_secret: Option<Value>,
}

/// What an agent may register: checked and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMetadata {
    pub name: String,
    /// The registered key set, with only the public members Tessera uses.
    pub jwks: Value,
    /// Requested scopes, checked against the service user's; `None`: all
    /// of them.
    pub scopes: Option<Vec<String>>,
}

pub fn invalid(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

/// Parses the request body; any JSON that is not an object of the right
/// member types is `invalid_client_metadata`.
pub fn parse(body: &[u8]) -> Result<RequestedMetadata, OAuthError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| invalid("the body must be a JSON object of client metadata"))?;
    if !value.is_object() {
        return Err(invalid("the body must be a JSON object of client metadata"));
    }
    serde_json::from_value(value).map_err(|_| invalid("the client metadata is malformed"))
}

fn string<'a>(value: &'a Option<Value>, name: &str) -> Result<Option<&'a str>, OAuthError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("{name} must be a string"))),
    }
}

fn strings<'a>(value: &'a Option<Value>, name: &str) -> Result<Option<Vec<&'a str>>, OAuthError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| invalid(format!("{name} must be an array of strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid(format!("{name} must be an array of strings"))),
    }
}

/// Checks the metadata an agent sent: one inline key of an allowed type,
/// `private_key_jwt`, `client_credentials`, no redirects, a valid name and
/// scope. `allow_p256` admits P-256 keys beside Ed25519.
pub fn check(requested: &RequestedMetadata, allow_p256: bool) -> Result<AgentMetadata, OAuthError> {
    if requested.client_secret.is_some() {
        return Err(invalid("an agent has no client secret"));
    }
    if let Some(method) = string(
        &requested.token_endpoint_auth_method,
        "token_endpoint_auth_method",
    )? && method != AUTH_METHOD
    {
        return Err(invalid(
            "token_endpoint_auth_method must be private_key_jwt",
        ));
    }
    if let Some(grants) = strings(&requested.grant_types, "grant_types")?
        && grants
            .iter()
            .any(|g| *g != GrantType::ClientCredentials.as_str())
    {
        return Err(invalid("grant_types may hold client_credentials only"));
    }
    if strings(&requested.response_types, "response_types")?.is_some_and(|r| !r.is_empty()) {
        return Err(invalid("an agent uses no response_types"));
    }
    if strings(&requested.redirect_uris, "redirect_uris")?.is_some_and(|r| !r.is_empty()) {
        return Err(invalid("an agent has no redirect_uris"));
    }
    if requested.jwks_uri.is_some() {
        return Err(invalid("give the key inline in jwks, not by jwks_uri"));
    }
    let name = match string(&requested.client_name, "client_name")? {
        Some(name) if client::is_name(name) && !name.chars().any(char::is_control) => {
            name.trim().to_owned()
        }
        Some(_) => return Err(invalid(format!("client_{}", client::NAME_RULE))),
        None => "agent".to_owned(),
    };
    let scopes = match string(&requested.scope, "scope")? {
        Some(scope) if !scope.trim().is_empty() => {
            syntax::check_parameter("scope", scope)
                .map_err(|_| invalid("scope is not a space-separated list of scope tokens"))?;
            let mut scopes: Vec<String> = Vec::new();
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if !scopes.iter().any(|known| known == s) {
                    scopes.push(s.to_owned());
                }
            }
            Some(scopes)
        }
        _ => None,
    };
    let jwks = requested
        .jwks
        .as_ref()
        .ok_or_else(|| invalid("jwks with the agent's public key is required"))?;
    Ok(AgentMetadata {
        name,
        jwks: public_key_set(jwks, allow_p256)?,
        scopes,
    })
}

/// The key set of exactly one public signing key, Ed25519 (or P-256 when
/// allowed), with only its public members (RFC 7517 §4, RFC 8037 §2); a
/// key without `kid` gets its RFC 7638 thumbprint.
fn public_key_set(jwks: &Value, allow_p256: bool) -> Result<Value, OAuthError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("jwks must be a JWK Set: an object with a keys array"))?;
    let [key] = keys.as_slice() else {
        return Err(invalid("jwks must hold exactly one key"));
    };
    let member = |name: &str| key.get(name).and_then(Value::as_str);
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|m| key.get(*m).is_some())
    {
        return Err(invalid(
            "jwks must hold the public key only, never private or secret parts",
        ));
    }
    if ["use", "alg", "kid"]
        .iter()
        .any(|m| key.get(*m).is_some_and(|v| !v.is_string()))
    {
        return Err(invalid("the key's use, alg and kid must be strings"));
    }
    if member("use").is_some_and(|u| u != "sig") {
        return Err(invalid("the key's use must be sig"));
    }
    let coordinate = |name: &str| {
        member(name)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| invalid(format!("the key's {name} must be 32 bytes, base64url")))
    };
    let (alg, mut public) = match (member("kty"), member("crv")) {
        (Some("OKP"), Some("Ed25519")) => {
            if !crate::keys::public::is_strong_ed25519(&coordinate("x")?) {
                return Err(invalid(
                    "the key is not a usable Ed25519 public key (a small-order or non-canonical point)",
                ));
            }
            (
                "EdDSA",
                json!({ "kty": "OKP", "crv": "Ed25519", "x": member("x") }),
            )
        }
        (Some("EC"), Some("P-256")) if allow_p256 => {
            coordinate("x")?;
            coordinate("y")?;
            (
                "ES256",
                json!({ "crv": "P-256", "kty": "EC", "x": member("x"), "y": member("y") }),
            )
        }
        _ => {
            let allowed = if allow_p256 {
                "Ed25519 (OKP) or P-256 (EC)"
            } else {
                "Ed25519 (OKP)"
            };
            return Err(invalid(format!(
                "the key must be an {allowed} public key; RSA and symmetric keys are refused"
            )));
        }
    };
    if member("alg").is_some_and(|a| a != alg) {
        return Err(invalid(format!("the key's alg must be {alg}")));
    }
    let kid = match key.get("kid") {
        None => thumbprint(&public),
        Some(Value::String(kid)) if syntax::is_identifier(kid) => kid.clone(),
        Some(_) => return Err(invalid("the key's kid must be printable ASCII")),
    };
    let fields = public.as_object_mut().expect("built as an object");
    fields.insert("kid".into(), kid.into());
    fields.insert("use".into(), "sig".into());
    fields.insert("alg".into(), alg.into());
    Ok(json!({ "keys": [public] }))
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order.
fn thumbprint(public: &Value) -> String {
    // Written out, not left to the map's order: the members in
    // lexicographic order, no white space (§3.3).
    let member = |name: &str| public.get(name).and_then(Value::as_str).unwrap_or_default();
    let canonical = match member("kty") {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv"),
            member("x"),
            member("y")
        ),
        _ => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            member("crv"),
            member("x")
        ),
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn first_key(set: &Value) -> Option<&Value> {
    set.get("keys")?.get(0)
}

/// Whether two key sets hold the same key (a rotation changes it): the
/// same public key, whatever `kid` each names it by.
pub fn same_key(a: &Value, b: &Value) -> bool {
    let key = |set: &Value| first_key(set).map(|k| (k.get("x").cloned(), k.get("y").cloned()));
    key(a) == key(b)
}

/// The `kid` of a set's key.
pub fn key_id(set: &Value) -> Option<&str> {
    first_key(set)?.get("kid")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519() -> Value {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pair = Ed25519KeyPair::generate().unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        json!({ "kty": "OKP", "crv": "Ed25519", "x": x })
    }

    fn metadata(jwks: Value) -> RequestedMetadata {
        RequestedMetadata {
            jwks: Some(jwks),
            ..Default::default()
        }
    }

    #[test]
    fn an_ed25519_key_is_kept_public_with_a_thumbprint_kid() {
        let checked = check(&metadata(json!({ "keys": [ed25519()] })), false).unwrap();
        let key = &checked.jwks["keys"][0];
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        // RFC 7638 §3.2.1 gives this form: {"crv","kty","x"}.
        let expected = thumbprint(&json!({ "crv": "Ed25519", "kty": "OKP", "x": key["x"] }));
        assert_eq!(key["kid"], expected.as_str());
        assert_eq!(checked.name, "agent");
        assert_eq!(checked.scopes, None);
    }

    #[test]
    fn rsa_symmetric_private_and_several_keys_are_refused() {
        let rsa = json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" });
        let oct = json!({ "kty": "oct", "k": "c2VjcmV0" });
        let mut private = ed25519();
        private["d"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        let p256 = json!({ "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32]) });
        for jwks in [
            json!({ "keys": [rsa] }),
            json!({ "keys": [oct] }),
            json!({ "keys": [private] }),
            json!({ "keys": [ed25519(), ed25519()] }),
            json!({ "keys": [] }),
            json!({ "keys": [p256.clone()] }),
            json!([ed25519()]),
        ] {
            let error = check(&metadata(jwks.clone()), false).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidClientMetadata, "{jwks}");
        }
        assert!(check(&metadata(json!({ "keys": [p256] })), true).is_ok());
    }

    #[test]
    fn small_order_and_non_canonical_points_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // (0, -1), of order 2.
        let mut order_two = [0xffu8; 32];
        order_two[0] = 0xec;
        order_two[31] = 0x7f;
        // y = p + 1 encodes the identity, non-canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        for weak in [identity, order_two, [0u8; 32], non_canonical] {
            let key = json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(weak) });
            let error = check(&metadata(json!({ "keys": [key] })), false).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidClientMetadata);
        }
        // (aws-lc verifies R = identity, S = 0 against the identity key
        // for any message: seen here with aws-lc-rs 1.x.)
    }

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        let key = json!({ "crv": "Ed25519", "kty": "OKP",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" });
        assert_eq!(
            thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn other_methods_grants_and_redirects_are_refused() {
        let good = json!({ "keys": [ed25519()] });
        let cases = [
            json!({ "token_endpoint_auth_method": "client_secret_basic" }),
            json!({ "grant_types": ["client_credentials", "authorization_code"] }),
            json!({ "redirect_uris": ["https://x.example/cb"] }),
            json!({ "response_types": ["code"] }),
            json!({ "jwks_uri": "https://x.example/jwks" }),
            json!({ "client_secret": "s" }),
            json!({ "client_name": "" }),
            json!({ "client_name": "pod\u{0}" }),
            json!({ "scope": "a\u{0}b" }),
            json!({ "scope": 5 }),
        ];
        for case in cases {
            let mut body = case.clone();
            body["jwks"] = good.clone();
            let requested = parse(body.to_string().as_bytes()).unwrap();
            let error = check(&requested, false).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidClientMetadata, "{case}");
        }
        let body = json!({ "jwks": good, "client_name": "pod-7", "scope": "read read write",
            "unknown_member": true, "grant_types": ["client_credentials"] });
        let checked = check(&parse(body.to_string().as_bytes()).unwrap(), false).unwrap();
        assert_eq!(checked.name, "pod-7");
        assert_eq!(checked.scopes, Some(vec!["read".into(), "write".into()]));
        assert_eq!(
            parse(b"[1]").unwrap_err().code,
            ErrorCode::InvalidClientMetadata
        );
    }
}
