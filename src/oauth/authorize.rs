//! The authorization endpoint's core (OIDC Core §3.1.2, RFC 6749 §4.1):
//! validating a request, deciding between login, consent and a code, and
//! issuing codes. Nothing here knows about HTTP; `http::authorize` renders
//! what these functions return.

use std::borrow::Cow;
use std::collections::HashMap;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::client::{Client, GrantType};
use super::{ErrorCode, OAuthError, api_scopes, pkce};
use crate::accounts::sessions::SessionInfo;
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::Core;
use crate::random::random_base62;
use crate::store::{AuthorizationStore, CodeRecord, UserRecord};

/// The scopes OpenID Connect defines (OIDC Core §5.4, §11); any client
/// registered for `authorization_code` may ask for them.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
/// Set on the `return_to` URL after a forced login (`prompt=login`,
/// `max_age`): a session authenticated at or after the time it names
/// satisfies the request, so that coming back from the login page does not
/// loop. The value is sealed ([`seal_auth_after`]): a hand-made one, or
/// one made for another browser, request or more than
/// [`AUTH_AFTER_WINDOW`] ago, is ignored and the login is forced again.
pub const AUTH_AFTER_PARAMETER: &str = "tessera_auth_after";
/// How long a forced login's mark stays good: the login must be done
/// within this time of being asked for.
pub const AUTH_AFTER_WINDOW: i64 = 600;
/// The longest `state` and `nonce` kept (they travel in URLs and tokens).
const MAX_ECHO_LEN: usize = 2048;

/// The parameters of an authorization request, from the query (GET) or
/// the form body (POST), OIDC Core §3.1.2.1.
#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// RFC 6749 §3.1: parameters are sent at most once; empty ones count
    /// as absent.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        for (name, value) in pairs {
            if value.is_empty() {
                continue;
            }
            if map.insert(name.clone(), value).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "the parameter `{}` is repeated",
                    super::error::named(&name)
                )));
            }
        }
        Ok(Params(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The parameters as pairs, in a stable order: for the consent form's
    /// hidden fields and the `return_to` URL.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        let mut pairs: Vec<(&str, &str)> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.sort();
        pairs
    }

    /// The request as a query string, with `prompt=login` removed and
    /// [`AUTH_AFTER_PARAMETER`] set when a login is forced.
    pub fn query_after_login(&self, auth_after: Option<&str>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs() {
            if name == AUTH_AFTER_PARAMETER {
                continue;
            }
            if name == "prompt" && auth_after.is_some() {
                let kept: Vec<&str> = value.split(' ').filter(|p| *p != "login").collect();
                if !kept.is_empty() {
                    query.append_pair(name, &kept.join(" "));
                }
                continue;
            }
            query.append_pair(name, value);
        }
        if let Some(mark) = auth_after {
            query.append_pair(AUTH_AFTER_PARAMETER, mark);
        }
        query.finish()
    }
}

/// OIDC Core §3.1.2.1 `prompt`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A request whose client and redirect URI are valid: from here on,
/// errors go back to the client.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// Requested scopes, each allowed for the client (user-dependent API
    /// scopes are filtered later, by [`granted_scopes`]).
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub auth_after: Option<i64>,
    pub params: Params,
}

/// An error of the authorization endpoint, and where it goes.
#[derive(Debug)]
pub enum Rejection {
    /// Shown on Tessera's own error page: the client or redirect URI is
    /// unknown, so redirecting would make Tessera an open redirector
    /// (RFC 6749 §4.1.2.1, §10.15).
    Page(OAuthError),
    /// Sent to the client's redirect URI (RFC 6749 §4.1.2.1).
    Redirect(ClientRedirect),
}

/// A redirect back to the client, with either a code or an error, `state`
/// as it was sent, and `iss` (RFC 9207 §2).
#[derive(Debug, Clone)]
pub struct ClientRedirect {
    pub location: String,
}

impl ClientRedirect {
    fn build(redirect_uri: &str, pairs: &[(&str, &str)]) -> ClientRedirect {
        // The URI was validated at registration and matched, so it parses.
        let location = match url::Url::parse(redirect_uri) {
            Ok(mut url) => {
                {
                    let mut query = url.query_pairs_mut();
                    for (name, value) in pairs {
                        query.append_pair(name, value);
                    }
                }
                url.to_string()
            }
            Err(_) => redirect_uri.to_owned(),
        };
        ClientRedirect { location }
    }

    /// RFC 6749 §4.1.2.1 with RFC 9207 `iss`.
    pub fn error(
        request: &AuthorizationRequest,
        issuer: &str,
        code: &str,
        description: &str,
    ) -> ClientRedirect {
        let description = super::error::safe_description(description);
        let mut pairs = vec![("error", code), ("error_description", &description)];
        if let Some(state) = &request.state {
            pairs.push(("state", state));
        }
        pairs.push(("iss", issuer));
        Self::build(&request.redirect_uri, &pairs)
    }
}

impl AuthorizationRequest {
    pub fn reject(&self, issuer: &str, code: &str, description: &str) -> Rejection {
        Rejection::Redirect(ClientRedirect::error(self, issuer, code, description))
    }
}

fn page(description: &'static str) -> Rejection {
    Rejection::Page(OAuthError::invalid_request(description))
}

/// An `http` redirect to a loopback IP literal (RFC 8252 §7.3).
fn is_loopback(u: &url::Url) -> bool {
    u.scheme() == "http"
        && match u.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            _ => false,
        }
}

/// Whether nothing tells which program asks: a public client (no secret
/// or key proves itself at the token endpoint) redirecting to a loopback
/// listener, where any program on the machine may be listening (RFC 8252
/// §8.6). A confidential client's code is useless to anyone else.
pub fn client_unproven(request: &AuthorizationRequest) -> bool {
    request.client.public && url::Url::parse(&request.redirect_uri).is_ok_and(|u| is_loopback(&u))
}

/// RFC 8252 §7.3: a loopback redirect URI matches on any port; every other
/// URI must match a registered one exactly (OAuth 2.0 Security BCP §4.1.3).
pub fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(mut a), Ok(mut b)) = (url::Url::parse(registered), url::Url::parse(presented)) else {
        return false;
    };
    if !is_loopback(&a) || !is_loopback(&b) {
        return false;
    }
    let _ = a.set_port(None);
    let _ = b.set_port(None);
    a == b
}

/// OIDC Core §3.1.2.1-§3.1.2.2: validates the request. The client and the
/// redirect URI are checked first; anything wrong with them is a
/// [`Rejection::Page`], everything after a [`Rejection::Redirect`].
pub async fn validate(state: &Core, params: Params) -> Result<AuthorizationRequest, Rejection> {
    let client_id = params
        .get("client_id")
        .ok_or_else(|| page("client_id is required"))?;
    if !super::syntax::is_identifier(client_id) {
        return Err(page("client_id is malformed"));
    }
    let cached = state
        .client_cache
        .get(&state.store, client_id)
        .await
        .map_err(|e| Rejection::Page(e.into()))?;
    let client = match cached {
        Some(c) if c.client.enabled && c.client.may_use(GrantType::AuthorizationCode) => {
            c.client.clone()
        }
        _ => {
            return Err(page(
                "the client is unknown, disabled, or not registered for the authorization code flow",
            ));
        }
    };
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| page("redirect_uri is required (OpenID Connect Core section 3.1.2.1)"))?;
    if !client
        .redirect_uris
        .iter()
        .any(|r| redirect_matches(r, redirect_uri))
    {
        return Err(page(
            "redirect_uri is not registered for this client; the error cannot be sent back to it",
        ));
    }
    let mut request = AuthorizationRequest {
        client,
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
        nonce: None,
        scopes: vec![],
        code_challenge: None,
        prompt: Prompt::default(),
        max_age: None,
        auth_after: None,
        params: params.clone(),
    };
    let issuer = state.config.issuer();
    let invalid = |request: &AuthorizationRequest, description: Cow<'static, str>| {
        request.reject(issuer, "invalid_request", &description)
    };
    if request
        .state
        .as_ref()
        .is_some_and(|s| s.len() > MAX_ECHO_LEN)
    {
        request.state = None;
        return Err(invalid(&request, "state is too long".into()));
    }
    match params.get("response_type") {
        Some("code") => {}
        None => return Err(invalid(&request, "response_type is required".into())),
        Some(_) => {
            return Err(request.reject(
                issuer,
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return Err(invalid(
            &request,
            "only response_mode=query is supported".into(),
        ));
    }
    // OIDC Core §3.1.2.6, §6: request objects are not supported.
    if params.get("request").is_some() {
        return Err(request.reject(
            issuer,
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if params.get("request_uri").is_some() {
        return Err(request.reject(
            issuer,
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    if let Some(nonce) = params.get("nonce") {
        if nonce.len() > MAX_ECHO_LEN || !nonce.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(invalid(&request, "nonce is malformed or too long".into()));
        }
        request.nonce = Some(nonce.to_owned());
    }
    request.code_challenge = pkce::check_challenge(
        params.get("code_challenge"),
        params.get("code_challenge_method"),
        request.client.require_pkce,
    )
    .map_err(|e| invalid(&request, e.description.clone()))?;
    if let Some(prompt) = params.get("prompt") {
        for value in prompt.split(' ').filter(|p| !p.is_empty()) {
            match value {
                "none" => request.prompt.none = true,
                "login" => request.prompt.login = true,
                "consent" => request.prompt.consent = true,
                _ => {
                    return Err(invalid(
                        &request,
                        "prompt may hold none, login and consent only".into(),
                    ));
                }
            }
        }
        // OIDC Core §3.1.2.1: `none` with any other value is an error.
        if request.prompt.none && (request.prompt.login || request.prompt.consent) {
            return Err(invalid(
                &request,
                "prompt=none cannot be combined with other values".into(),
            ));
        }
    }
    if let Some(max_age) = params.get("max_age") {
        let age = max_age
            .parse::<i64>()
            .ok()
            .filter(|a| *a >= 0)
            .ok_or_else(|| invalid(&request, "max_age must be a whole number of seconds".into()))?;
        request.max_age = Some(age);
    }
    request.scopes = requested_scopes(&request.client, params.get("scope"))
        .map_err(|e| request.reject(issuer, e.code.as_str(), &e.description))?;
    Ok(request)
}

/// RFC 6749 §3.3: each requested scope must be one OpenID Connect defines
/// or one registered for the client.
pub(crate) fn requested_scopes(
    client: &Client,
    scope: Option<&str>,
) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for token in scope.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if !token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope holds a character a scope token may not hold",
            ));
        }
        if !OIDC_SCOPES.contains(&token) && !client.scopes.iter().any(|s| s == token) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!(
                    "the client may not ask for the scope `{}`",
                    super::error::named(token)
                ),
            ));
        }
        if !scopes.iter().any(|s| s == token) {
            scopes.push(token.to_owned());
        }
    }
    Ok(scopes)
}

/// The scopes the user gets: Tessera's API scopes only as
/// [`api_scopes::allowed_for_user`] says, and `offline_access` only for a
/// client that may use refresh tokens. Others are left out, not refused
/// (RFC 6749 §3.3: the granted scope may differ from the request).
pub fn granted_scopes(client: &Client, requested: &[String], is_admin: bool) -> Vec<String> {
    requested
        .iter()
        .filter(|s| {
            if api_scopes::ALL.contains(&s.as_str()) {
                return api_scopes::allowed_for_user(is_admin, s);
            }
            if s.as_str() == "offline_access" {
                return client.may_use(GrantType::RefreshToken);
            }
            true
        })
        .cloned()
        .collect()
}

/// What a forced login's mark is bound to: the time the login was asked
/// for, the client, the redirect URI, and the browser (`browser`: a value
/// only that browser holds, its CSRF token), under `key`.
fn auth_after_mac(
    key: &hmac::Key,
    at: i64,
    request: &AuthorizationRequest,
    browser: &str,
) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    for part in [
        at.to_string().as_str(),
        &request.client.client_id,
        &request.redirect_uri,
        browser,
    ] {
        ctx.update(part.as_bytes());
        ctx.update(b"\0");
    }
    ctx.sign()
}

/// The key forced-login marks are sealed with.
pub fn auth_after_key(state: &Core) -> hmac::Key {
    crate::accounts::purpose_key(&state.digest_key, "tessera auth_after v1")
}

/// The value of [`AUTH_AFTER_PARAMETER`] for a login forced at `at`:
/// `<at>.<base64url MAC>`.
pub fn seal_auth_after(
    key: &hmac::Key,
    at: i64,
    request: &AuthorizationRequest,
    browser: &str,
) -> String {
    let tag = auth_after_mac(key, at, request, browser);
    format!("{at}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// OIDC Core §3.1.2.1 (`prompt=login`, `max_age`): takes the request's
/// forced-login mark only when this server sealed it for this client,
/// redirect URI and browser within [`AUTH_AFTER_WINDOW`]; anything else
/// is ignored, so a crafted URL cannot skip a forced login.
pub fn accept_auth_after(
    request: &mut AuthorizationRequest,
    key: &hmac::Key,
    browser: &str,
    now: i64,
) {
    request.auth_after = request
        .params
        .get(AUTH_AFTER_PARAMETER)
        .and_then(|value| value.split_once('.'))
        .and_then(|(at, mac)| Some((at.parse::<i64>().ok()?, URL_SAFE_NO_PAD.decode(mac).ok()?)))
        .filter(|(at, _)| *at <= now && now - *at <= AUTH_AFTER_WINDOW)
        .filter(|(at, mac)| {
            let expected = auth_after_mac(key, *at, request, browser);
            bool::from(expected.as_ref().ct_eq(mac.as_slice()))
        })
        .map(|(at, _)| at);
}

/// What the endpoint does next with a valid request.
#[derive(Debug)]
pub enum Next {
    /// Send the browser to the login page (and back here afterwards);
    /// `auth_after` is set when a login is forced.
    Login { auth_after: Option<i64> },
    /// Ask the user; `scopes` are those that would be granted.
    Consent { scopes: Vec<String> },
    /// Issue a code for these scopes.
    Issue { scopes: Vec<String> },
}

/// OIDC Core §3.1.2.3-§3.1.2.4: whether the session satisfies the request
/// (`prompt=login`, `max_age`), and whether consent is needed
/// (`prompt=consent`, first-party clients, remembered consent). With
/// `prompt=none`, needing either is an error for the client.
pub async fn decide(
    state: &Core,
    request: &AuthorizationRequest,
    session: Option<&(SessionInfo, UserRecord)>,
    consent_given: bool,
) -> Result<Next, Rejection> {
    let issuer = state.config.issuer();
    let now = clock::now();
    // `max_age=0` is `prompt=login` (OIDC Core 1.0 errata set 2,
    // §3.1.2.1; openid/connect issue 993): a sign-in in this same second
    // would otherwise satisfy it.
    let must_log_in = request.prompt.login || request.max_age == Some(0);
    let fresh_enough = |auth_time: i64| {
        request.auth_after.is_some_and(|after| auth_time >= after)
            || (!must_log_in
                && request
                    .max_age
                    .is_none_or(|max_age| auth_time.saturating_add(max_age) >= now))
    };
    let Some((session, user)) = session.filter(|(s, _)| fresh_enough(s.auth_time)) else {
        if request.prompt.none {
            return Err(request.reject(
                issuer,
                "login_required",
                "the user is not signed in (prompt=none)",
            ));
        }
        let forced = session.is_some() || request.prompt.login || request.max_age.is_some();
        return Ok(Next::Login {
            auth_after: forced.then_some(now),
        });
    };
    let scopes = granted_scopes(&request.client, &request.scopes, user.admin);
    // An administrator giving admin API scopes signs in again past
    // `sessions.reauthenticate_after`, as on the device page.
    if api_scopes::needs_recent_login(state, &scopes, user.admin, session.auth_time) {
        if request.prompt.none {
            return Err(request.reject(
                issuer,
                "login_required",
                "admin scopes need a recent sign-in (prompt=none)",
            ));
        }
        return Ok(Next::Login {
            auth_after: Some(now),
        });
    }
    // RFC 8252 §8.6: when nothing identifies the client, the user clicks
    // every time: no first-party shortcut, no remembered consent.
    let unproven = client_unproven(request);
    if consent_given || (request.client.first_party && !unproven && !request.prompt.consent) {
        return Ok(Next::Issue { scopes });
    }
    if !request.prompt.consent && !unproven {
        let remembered = state
            .store
            .consent(user.id.clone(), request.client.client_id.clone())
            .await
            .map_err(|e| Rejection::Page(e.into()))?
            .unwrap_or_default();
        if scopes.iter().all(|s| remembered.contains(s)) {
            return Ok(Next::Issue { scopes });
        }
    }
    if request.prompt.none {
        return Err(request.reject(
            issuer,
            "consent_required",
            "the user has not consented to this client (prompt=none)",
        ));
    }
    Ok(Next::Consent { scopes })
}

fn human(user_id: &str) -> Actor {
    Actor {
        id: Some(user_id.to_owned()),
        kind: ActorKind::Human,
        owner: None,
    }
}

/// The user allowed the client these scopes: remembered, and audited as
/// `consent.granted`.
pub async fn remember_consent(
    state: &Core,
    request: &AuthorizationRequest,
    user_id: &str,
    scopes: &[String],
    remote: Option<String>,
) -> Result<(), OAuthError> {
    state
        .store
        .grant_consent(
            user_id.to_owned(),
            request.client.client_id.clone(),
            scopes.to_vec(),
            clock::now(),
        )
        .await?;
    Event::new(human(user_id), "consent.granted", Outcome::Success)
        .client(request.client.client_id.clone())
        .remote(remote)
        .details(serde_json::json!({ "scope": scopes.join(" ") }))
        .record(&state.store)
        .await;
    Ok(())
}

/// The user refused: `access_denied` to the client (RFC 6749 §4.1.2.1).
pub async fn deny(
    state: &Core,
    request: &AuthorizationRequest,
    user_id: &str,
    remote: Option<String>,
) -> ClientRedirect {
    Event::new(human(user_id), "consent.denied", Outcome::Failure)
        .client(request.client.client_id.clone())
        .remote(remote)
        .record(&state.store)
        .await;
    ClientRedirect::error(
        request,
        state.config.issuer(),
        "access_denied",
        "the user denied the request",
    )
}

/// The keyed digest under which a code is stored, in hex.
pub fn code_digest(state: &Core, code: &str) -> String {
    let tag = aws_lc_rs::hmac::sign(&state.digest_key, code.as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct CodeIssued<'a> {
    scope: &'a str,
    sid: &'a str,
    redirect_uri: &'a str,
}

/// RFC 6749 §4.1.2: a single-use code bound to the client, redirect URI,
/// PKCE challenge, user, session, `nonce` and scopes; only its digest is
/// stored. Audited as `code.issued`.
pub async fn issue_code(
    state: &Core,
    request: &AuthorizationRequest,
    session: &SessionInfo,
    scopes: &[String],
    remote: Option<String>,
) -> Result<ClientRedirect, OAuthError> {
    let code = random_base62(43);
    let now = clock::now();
    let scope = scopes.join(" ");
    state
        .store
        .create_code(CodeRecord {
            digest: code_digest(state, &code),
            client_id: request.client.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            code_challenge: request.code_challenge.clone(),
            user_id: session.user_id.clone(),
            session_id: session.sid.clone(),
            auth_time: session.auth_time,
            amr: session.amr.join(" "),
            nonce: request.nonce.clone(),
            scopes: scope.clone(),
            created_at: now,
            expires_at: now + state.config.tokens.code_lifetime.as_secs() as i64,
            used_at: None,
            access_jti: None,
            access_exp: None,
            refresh_family: None,
        })
        .await?;
    Event::new(human(&session.user_id), "code.issued", Outcome::Success)
        .client(request.client.client_id.clone())
        .remote(remote)
        .details(CodeIssued {
            scope: &scope,
            sid: &session.sid,
            redirect_uri: &request.redirect_uri,
        })
        .record_before_answering(&state.writer)
        .await?;
    let mut pairs = vec![("code", code.as_str())];
    if let Some(s) = &request.state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", state.config.issuer()));
    Ok(ClientRedirect::build(&request.redirect_uri, &pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port_and_nothing_else_does() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_matches(reg, "http://127.0.0.1:53123/callback"));
        assert!(redirect_matches(
            "http://127.0.0.1:8000/cb",
            "http://127.0.0.1:9/cb"
        ));
        assert!(redirect_matches("http://[::1]/cb", "http://[::1]:7/cb"));
        assert!(!redirect_matches(reg, "http://127.0.0.1:1/other"));
        assert!(!redirect_matches(reg, "http://127.0.0.1:1/callback?x=1"));
        assert!(!redirect_matches(
            "https://app.example.com/cb",
            "https://app.example.com:444/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example.com/cb",
            "https://app.example.com/cb/"
        ));
        assert!(redirect_matches(
            "https://app.example.com/cb",
            "https://app.example.com/cb"
        ));
    }

    #[test]
    fn a_forced_login_drops_prompt_login_from_the_way_back() {
        let params = Params::from_pairs(vec![
            ("prompt".into(), "login consent".into()),
            ("client_id".into(), "c".into()),
        ])
        .unwrap();
        let query = params.query_after_login(Some("5.mac"));
        assert_eq!(query, "client_id=c&prompt=consent&tessera_auth_after=5.mac");
        assert!(
            Params::from_pairs(vec![("a".into(), "1".into()), ("a".into(), "2".into())]).is_err()
        );
    }
}
