//! OAuth clients (RFC 6749 §2): what a client may do, and the validation of
//! a registration before it is stored.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ErrorCode, OAuthError, scope};
use crate::keys::Alg;
use crate::store::ClientRecord;

/// RFC 6749 §2.3, OIDC Core §9: how a client authenticates at the token
/// endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 4] = [
        AuthMethod::ClientSecretBasic,
        AuthMethod::ClientSecretPost,
        AuthMethod::PrivateKeyJwt,
        AuthMethod::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }

    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// Grant types a client may be registered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum GrantType {
    /// RFC 6749 §4.4.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    /// RFC 7523 §2.1.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
    /// RFC 8693 §2.1: a CI job's token exchanged under a trust policy.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
    /// RFC 6749 §4.1, OIDC Core §3.1: browser sign-in.
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    /// RFC 6749 §6.
    #[serde(rename = "refresh_token")]
    RefreshToken,
    /// RFC 8628 §3.4: a CLI's login, approved in a browser.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:device_code")]
    DeviceCode,
}

impl GrantType {
    pub const ALL: [GrantType; 6] = [
        GrantType::ClientCredentials,
        GrantType::JwtBearer,
        GrantType::TokenExchange,
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::DeviceCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::JwtBearer => "urn:ietf:params:oauth:grant-type:jwt-bearer",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == text)
    }
}

/// A registration as an administrator sends it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "[^\\x00-\\x20\\x7f-\\xa0]"
    )]
    pub name: Option<String>,
    #[serde(default)]
    pub public: bool,
    #[schema(value_type = Option<Vec<GrantType>>)]
    pub grant_types: Option<Vec<String>>,
    #[schema(value_type = Option<AuthMethod>)]
    pub token_endpoint_auth_method: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Space-separated scopes the client may ask for.
    pub scope: Option<String>,
    /// Audiences (resource indicators) the client may ask for: printable
    /// ASCII without spaces.
    #[schema(inline, value_type = Option<Vec<Audience>>)]
    pub audiences: Option<Vec<String>>,
    pub default_audience: Option<String>,
    /// Seconds; capped by `tokens.max_lifetime`.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1)]
    pub access_token_lifetime: Option<u64>,
    pub access_token_alg: Option<Alg>,
    /// A JWK Set (RFC 7517 §5) for `private_key_jwt`.
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
    pub enabled: Option<bool>,
    /// A client of the same organisation: its users are not asked for
    /// consent.
    pub first_party: Option<bool>,
    /// OIDC Registration §2: how ID tokens for this client are signed
    /// (RS256 by default).
    pub id_token_signed_response_alg: Option<Alg>,
    /// RFC 7636: PKCE (S256) on every authorization request. Only a
    /// confidential client may turn it off.
    pub require_pkce: Option<bool>,
}

/// A client as the protocol core uses it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub grant_types: Vec<GrantType>,
    pub token_endpoint_auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub default_audience: Option<String>,
    /// Seconds; the server default when absent.
    pub access_token_lifetime: Option<u64>,
    pub access_token_alg: Alg,
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub first_party: bool,
    pub id_token_signed_response_alg: Alg,
    pub require_pkce: bool,
    /// An agent's service user: the client's tokens are that user's
    /// (`sub`), with the agent as `client_id`. Set from the `agents` row.
    #[serde(skip)]
    pub agent_of: Option<String>,
}

impl Client {
    /// Whether the client is registered for `grant`; never a public client
    /// for client credentials (RFC 6749 §4.4: confidential clients only).
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant) && !(self.public && grant == GrantType::ClientCredentials)
    }

    /// RFC 6749 §3.3: see [`scope::grant_scopes`].
    pub fn grant_scopes(&self, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
        scope::grant_scopes(&self.scopes, requested)
    }

    /// The access token's `aud`: the requested audiences, else the default
    /// audience, else the client itself.
    pub fn grant_audience(&self, requested: &[String]) -> Result<Vec<String>, OAuthError> {
        let default = self
            .default_audience
            .clone()
            .unwrap_or_else(|| self.client_id.clone());
        scope::grant_audience(&self.audiences, default, requested)
    }

    pub fn lifetime(&self, default: Duration, cap: Duration) -> Duration {
        self.access_token_lifetime
            .map(Duration::from_secs)
            .unwrap_or(default)
            .min(cap)
    }
}

/// How the errors of [`Client::consistent`] begin.
const INCONSISTENT: &str = "inconsistent settings: ";

pub const NAME_RULE: &str = "name must be 1 to 200 characters, at least one of them visible (not a space or control character)";

/// A display name: 1 to 200 characters, one of them outside U+0000-U+0020
/// and U+007F-U+00A0 (spaces and control characters), as the document's
/// pattern says.
pub fn is_name(text: &str) -> bool {
    let count = text.chars().count();
    (1..=200).contains(&count)
        && text
            .chars()
            .any(|c| !matches!(c, '\0'..=' ' | '\x7f'..='\u{a0}'))
}

/// [`is_name`] as a schema.
pub fn name_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(200))
        .pattern(Some(r"[^\x00-\x20\x7f-\xa0]"))
        .build()
}

/// An audience value: `1*%x21-7E`, so that lists of them can be stored and
/// sent space-separated.
#[derive(ToSchema)]
#[schema(pattern = "^[!-~]+$")]
pub struct Audience(#[allow(dead_code)] String);

pub fn is_audience(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// JSON Schema counts `60.0` as an integer and serde does not: where the
/// API document says `integer`, a number without a fraction is accepted.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let value = if let Some(n) = number.as_u64() {
        T::try_from(n).ok()
    } else if let Some(n) = number.as_i64() {
        T::try_from(n).ok()
    } else {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .and_then(|f| T::try_from(f as i64).ok())
    };
    value
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number in range")))
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

impl From<ClientRecord> for Client {
    fn from(r: ClientRecord) -> Self {
        Client {
            client_id: r.id,
            name: r.name,
            public: !r.confidential,
            grant_types: r
                .grant_types
                .split_whitespace()
                .filter_map(GrantType::parse)
                .collect(),
            token_endpoint_auth_method: AuthMethod::parse(&r.auth_method)
                .unwrap_or(AuthMethod::None),
            redirect_uris: json_list(&r.redirect_uris),
            post_logout_redirect_uris: json_list(&r.post_logout_redirect_uris),
            scopes: words(&r.scopes),
            audiences: words(&r.audiences),
            default_audience: r.default_audience,
            access_token_lifetime: r.access_token_lifetime.map(|s| s.max(0) as u64),
            access_token_alg: Alg::parse(&r.access_token_alg).unwrap_or(Alg::ES256),
            jwks: r.jwks.and_then(|j| serde_json::from_str(&j).ok()),
            jwks_uri: r.jwks_uri,
            enabled: r.enabled,
            created_at: r.created_at,
            updated_at: r.updated_at,
            first_party: r.first_party,
            id_token_signed_response_alg: Alg::parse(&r.id_token_alg).unwrap_or(Alg::RS256),
            // Fail safe: a public client always uses PKCE.
            require_pkce: r.require_pkce || !r.confidential,
            agent_of: None,
        }
    }
}

impl Client {
    pub fn to_record(&self) -> ClientRecord {
        ClientRecord {
            id: self.client_id.clone(),
            name: self.name.clone(),
            confidential: !self.public,
            grant_types: self
                .grant_types
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            auth_method: self.token_endpoint_auth_method.as_str().to_owned(),
            redirect_uris: serde_json::to_string(&self.redirect_uris).unwrap_or_default(),
            post_logout_redirect_uris: serde_json::to_string(&self.post_logout_redirect_uris)
                .unwrap_or_default(),
            scopes: self.scopes.join(" "),
            audiences: self.audiences.join(" "),
            default_audience: self.default_audience.clone(),
            access_token_lifetime: self.access_token_lifetime.map(|s| s as i64),
            access_token_alg: self.access_token_alg.as_str().to_owned(),
            jwks: self.jwks.as_ref().map(|j| j.to_string()),
            jwks_uri: self.jwks_uri.clone(),
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            first_party: self.first_party,
            id_token_alg: self.id_token_signed_response_alg.as_str().to_owned(),
            require_pkce: self.require_pkce,
        }
    }

    /// Applies `spec` over this client (a new client starts from
    /// [`Client::blank`]) and validates the result.
    pub fn apply(mut self, spec: ClientSpec, max_lifetime: Duration) -> Result<Client, OAuthError> {
        let bad = |message: String| OAuthError::invalid_request(message);
        if let Some(name) = spec.name {
            if !is_name(&name) {
                return Err(bad(NAME_RULE.into()));
            }
            self.name = name;
        }
        if spec.public {
            self.public = true;
            self.token_endpoint_auth_method = AuthMethod::None;
        }
        if let Some(method) = spec.token_endpoint_auth_method {
            self.token_endpoint_auth_method = AuthMethod::parse(&method).ok_or_else(|| {
                bad(format!(
                    "unknown token_endpoint_auth_method `{}`",
                    printable(&method)
                ))
            })?;
        }
        if let Some(grants) = spec.grant_types {
            let mut parsed = Vec::new();
            for grant in grants {
                let grant = GrantType::parse(&grant).ok_or_else(|| {
                    bad(format!(
                        "grant type `{}` is not supported",
                        printable(&grant)
                    ))
                })?;
                if !parsed.contains(&grant) {
                    parsed.push(grant);
                }
            }
            self.grant_types = parsed;
        }
        if let Some(uris) = spec.redirect_uris {
            self.redirect_uris = validate_uris(uris, "redirect_uris")?;
        }
        if let Some(uris) = spec.post_logout_redirect_uris {
            self.post_logout_redirect_uris = validate_uris(uris, "post_logout_redirect_uris")?;
        }
        if let Some(scope) = spec.scope {
            let scopes = words(&scope);
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if let Some(bad_scope) = scopes.iter().find(|s| {
                !s.bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            }) {
                return Err(bad(format!(
                    "`{}` is not a valid scope token",
                    printable(bad_scope)
                )));
            }
            self.scopes = scopes;
        }
        if let Some(audiences) = spec.audiences {
            if !audiences.iter().all(|a| is_audience(a)) {
                return Err(bad(
                    "audiences must be non-empty printable ASCII without spaces".into(),
                ));
            }
            self.audiences = audiences;
        }
        if let Some(default) = spec.default_audience {
            // Empty clears it; otherwise it joins the space-separated list.
            if !default.is_empty() && !is_audience(&default) {
                return Err(bad(
                    "default_audience must be printable ASCII without spaces".into(),
                ));
            }
            self.default_audience = Some(default).filter(|d| !d.is_empty());
        }
        if let Some(default) = &self.default_audience
            && !self.audiences.contains(default)
        {
            self.audiences.push(default.clone());
        }
        if let Some(lifetime) = spec.access_token_lifetime {
            if lifetime == 0 || lifetime > max_lifetime.as_secs() {
                return Err(bad(format!(
                    "access_token_lifetime must be between 1 and {} seconds",
                    max_lifetime.as_secs()
                )));
            }
            self.access_token_lifetime = Some(lifetime);
        }
        if let Some(alg) = spec.access_token_alg {
            self.access_token_alg = alg;
        }
        if let Some(jwks) = spec.jwks {
            validate_jwks(&jwks)?;
            self.jwks = Some(jwks);
            self.jwks_uri = None;
        }
        if let Some(uri) = spec.jwks_uri {
            let parsed = url::Url::parse(&uri).map_err(|_| bad("jwks_uri is not a URL".into()))?;
            if parsed.scheme() != "https" && !is_loopback(&parsed) {
                return Err(bad("jwks_uri must use https".into()));
            }
            if !uri_patterns().jwks.is_match(&uri) {
                return Err(bad(format!("jwks_uri {UNCOMMON_FORM}")));
            }
            self.jwks_uri = Some(uri);
            self.jwks = None;
        }
        if let Some(enabled) = spec.enabled {
            self.enabled = enabled;
        }
        if let Some(first_party) = spec.first_party {
            self.first_party = first_party;
        }
        if let Some(alg) = spec.id_token_signed_response_alg {
            self.id_token_signed_response_alg = alg;
        }
        if let Some(require) = spec.require_pkce {
            self.require_pkce = require;
        }
        self.public = self.token_endpoint_auth_method == AuthMethod::None;
        self.consistent(ErrorCode::InvalidRequest)
    }

    /// As [`Client::apply`], on a stored client: a result that contradicts
    /// the client's current state is a conflict (409), not a bad request.
    pub fn change(self, spec: ClientSpec, max_lifetime: Duration) -> Result<Client, OAuthError> {
        let was = self.token_endpoint_auth_method;
        let changed = self.apply(spec, max_lifetime).map_err(|e| {
            if e.code == ErrorCode::InvalidRequest && e.description.starts_with(INCONSISTENT) {
                OAuthError::new(ErrorCode::Conflict, e.description)
            } else {
                e
            }
        })?;
        if changed.token_endpoint_auth_method.uses_secret() && !was.uses_secret() {
            return Err(OAuthError::new(
                ErrorCode::Conflict,
                "switching to a secret-based method needs a secret: run rotate-secret after the update",
            ));
        }
        Ok(changed)
    }

    /// The settings that depend on each other.
    fn consistent(self, code: ErrorCode) -> Result<Client, OAuthError> {
        if self.public && self.grant_types.contains(&GrantType::ClientCredentials) {
            return Err(OAuthError::new(
                code,
                format!(
                    "{INCONSISTENT}a public client cannot use client_credentials (RFC 6749 section 4.4)"
                ),
            ));
        }
        if self.public && !self.require_pkce {
            return Err(OAuthError::new(
                code,
                format!(
                    "{INCONSISTENT}a public client must use PKCE (RFC 7636; OAuth 2.0 Security BCP section 2.1.1)"
                ),
            ));
        }
        if self.grant_types.contains(&GrantType::AuthorizationCode) && self.redirect_uris.is_empty()
        {
            return Err(OAuthError::new(
                code,
                format!(
                    "{INCONSISTENT}a client with authorization_code needs at least one redirect URI (RFC 6749 section 3.1.2.2)"
                ),
            ));
        }
        if self.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt
            && self.jwks.is_none()
            && self.jwks_uri.is_none()
        {
            return Err(OAuthError::new(
                code,
                format!("{INCONSISTENT}private_key_jwt needs jwks or jwks_uri"),
            ));
        }
        Ok(self)
    }

    pub fn blank(client_id: String, now: i64) -> Client {
        Client {
            client_id,
            name: String::new(),
            public: false,
            grant_types: vec![GrantType::ClientCredentials],
            token_endpoint_auth_method: AuthMethod::ClientSecretBasic,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            scopes: vec![],
            audiences: vec![],
            default_audience: None,
            access_token_lifetime: None,
            access_token_alg: Alg::ES256,
            jwks: None,
            jwks_uri: None,
            enabled: true,
            created_at: now,
            updated_at: now,
            first_party: false,
            id_token_signed_response_alg: Alg::RS256,
            require_pkce: true,
            agent_of: None,
        }
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// RFC 6749 §3.1.2 and RFC 8252 §7: absolute URIs without a fragment,
/// each of one of three kinds:
/// - `https` (RFC 6749 §3.1.2.1);
/// - `http` on a loopback IP literal, `127.0.0.1` or `[::1]` (RFC 8252
///   §7.3); the name `localhost` is refused because it can resolve to
///   another interface (§8.3);
/// - a private-use scheme in reverse-domain form such as
///   `com.example.app:/callback` (§7.1).
///
/// Schemes that run or embed content (`javascript:`, `data:`, `file:`) are
/// refused by name.
fn validate_uris(uris: Vec<String>, field: &str) -> Result<Vec<String>, OAuthError> {
    for uri in &uris {
        check_redirect_uri(uri).map_err(|why| {
            OAuthError::invalid_request(format!("{field}: `{}` {why}", printable(uri)))
        })?;
    }
    Ok(uris)
}

fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|_| "is not an absolute URI".to_owned())?;
    check_redirect_target(&parsed)?;
    if !uri_patterns().redirect.is_match(uri) {
        return Err(UNCOMMON_FORM.into());
    }
    Ok(())
}

/// Why a URI the rules would allow is still refused: it is outside the
/// conservative RFC 3986 subset the API document's pattern describes.
const UNCOMMON_FORM: &str = "is not in the form the API document describes: ASCII host names, \
     percent-encoding only as %XX, no user information";

fn check_redirect_target(parsed: &url::Url) -> Result<(), String> {
    if parsed.fragment().is_some() {
        return Err("has a fragment (RFC 6749 section 3.1.2)".into());
    }
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "https" => Err("has no host".into()),
        "http" => match parsed.host() {
            Some(url::Host::Ipv4(ip)) if ip == std::net::Ipv4Addr::LOCALHOST => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip == std::net::Ipv6Addr::LOCALHOST => Ok(()),
            Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => Err(
                "names localhost: use the loopback IP literal 127.0.0.1 (or [::1]) instead, \
                 as RFC 8252 section 8.3 advises"
                    .into(),
            ),
            _ => Err("must use https unless its host is 127.0.0.1 or [::1] (RFC 8252 section 7.3)".into()),
        },
        "javascript" | "data" | "file" | "blob" | "vbscript" => {
            Err(format!("uses the {} scheme, which is never a redirect target", parsed.scheme()))
        }
        scheme if is_reverse_domain(scheme) => Ok(()),
        _ => Err("must use https, http on 127.0.0.1 or [::1], or a private-use scheme in reverse-domain form such as com.example.app (RFC 8252 section 7.1)".into()),
    }
}

/// The URI forms the API document promises, as regular expressions the
/// server applies too, so that the document and the server agree on every
/// string: a conservative subset of RFC 3986 §3 (ASCII host names whose
/// last label starts with a letter, ports 0-65535, `%XX` escapes, no user
/// information, no fragment).
pub struct UriPatterns {
    /// `redirect_uris` and `post_logout_redirect_uris`.
    pub redirect: Pattern,
    /// `jwks_uri`: https, or http on a loopback host.
    pub jwks: Pattern,
}

/// A regular expression with its source text, for the API document.
pub struct Pattern {
    pub source: String,
    regex: regex_automata::meta::Regex,
}

impl Pattern {
    fn new(source: String) -> Pattern {
        let regex = regex_automata::meta::Regex::new(&source).expect("a valid pattern");
        Pattern { source, regex }
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

pub fn uri_patterns() -> &'static UriPatterns {
    static PATTERNS: std::sync::LazyLock<UriPatterns> = std::sync::LazyLock::new(|| {
        // Only constructs that Rust's regex and ECMA-262 (JSON Schema)
        // read alike: classes, groups, alternation, bounded repeats.
        let label = "[A-Za-z0-9]+(-[A-Za-z0-9]+)*";
        let host = format!("({label}\\.)*[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*");
        let port = "(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0))?";
        let pchar = "([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})";
        let rest = format!("(/{pchar}*)*(\\?({pchar}|[/?])*)?");
        let loopback = "127\\.0\\.0\\.1|\\[::1\\]";
        // RFC 8252 §7.1: reverse-domain scheme, then an absolute path.
        let private_use = format!(
            "[a-z][a-z0-9-]*(\\.[a-z0-9-]+)+:/({pchar}+(/{pchar}*)*)?(\\?({pchar}|[/?])*)?"
        );
        UriPatterns {
            redirect: Pattern::new(format!(
                "^((https://{host}|http://({loopback})){port}{rest}|{private_use})$"
            )),
            jwks: Pattern::new(format!(
                "^(https://{host}|http://({loopback}|localhost)){port}{rest}$"
            )),
        }
    });
    &PATTERNS
}

/// RFC 8252 §7.1: a private-use scheme is a domain name its owner controls,
/// reversed: at least two non-empty labels separated by dots.
fn is_reverse_domain(scheme: &str) -> bool {
    let labels: Vec<&str> = scheme.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// `text` percent-encoded where it is not printable ASCII or is `"` or
/// `\`, and cut short, so it can be named in an `error_description`
/// (RFC 6749 §5.2 allows only %x20-21 / %x23-5B / %x5D-7E there).
fn printable(text: &str) -> String {
    const UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'"').add(b'\\');
    let mut shown: String = percent_encoding::utf8_percent_encode(text, UNSAFE).collect();
    if shown.len() > 200 {
        shown.truncate(200);
        shown.push_str("...");
    }
    shown
}

/// A JWK Set (RFC 7517 §5) of public keys Tessera can verify: see
/// [`crate::keys::public::check_public_jwk`].
fn validate_jwks(jwks: &serde_json::Value) -> Result<(), OAuthError> {
    let bad = |m: &str| OAuthError::invalid_request(format!("jwks: {m}"));
    let keys = jwks["keys"]
        .as_array()
        .ok_or_else(|| bad("expected an object with a keys array (RFC 7517 section 5)"))?;
    if keys.is_empty() {
        return Err(bad("no keys"));
    }
    for key in keys {
        crate::keys::public::check_public_jwk(key).map_err(|e| bad(e.0))?;
    }
    Ok(())
}
