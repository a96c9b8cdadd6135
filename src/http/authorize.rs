//! `GET`/`POST /oauth/authorize` (OIDC Core §3.1.2) and the consent form's
//! `POST /oauth/authorize/decision`. Parse, call `oauth::authorize`,
//! render: a redirect to the login page, the consent page, a redirect back
//! to the client, or Tessera's error page.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use super::extract::RemoteAddr;
use super::pages::{self, csrf, session};
use crate::accounts::sessions::SessionInfo;
use crate::clock;
use crate::oauth::OAuthError;
use crate::oauth::authorize::{
    self, AuthorizationRequest, ClientRedirect, Next, Params, Rejection,
};
use crate::oauth::discovery::AUTHORIZATION_PATH;
use crate::server::AppState;
use crate::store::{UserRecord, UserStore};

pub const DECISION_PATH: &str = "/oauth/authorize/decision";

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(AUTHORIZATION_PATH, get(authorize_get).post(authorize_post))
        .route(DECISION_PATH, post(decision))
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

fn error_page(error: &OAuthError) -> Response {
    let status = match error.code {
        crate::oauth::ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        crate::oauth::ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    if status != StatusCode::BAD_REQUEST {
        return pages::PageError::from(error.clone()).into_response();
    }
    pages::error::page(
        status,
        "Sign-in request refused",
        &format!(
            "The application sent a sign-in request Tessera cannot accept: {}. \
             Go back to the application and try again.",
            error.description
        ),
    )
}

fn rejected(rejection: Rejection) -> Response {
    match rejection {
        Rejection::Page(error) => error_page(&error),
        Rejection::Redirect(redirect) => pages::see_other(&redirect.location),
    }
}

fn to_client(redirect: ClientRedirect) -> Response {
    pages::see_other(&redirect.location)
}

/// RFC 6749 §3.1: GET with the query.
async fn authorize_get(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::from_pairs(pairs(query.unwrap_or_default().as_bytes()));
    proceed(&state, &headers, remote, params, None).await
}

/// OIDC Core §3.1.2.1: POST with a form body, the same parameters.
async fn authorize_post(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = Params::from_pairs(pairs(&body));
    proceed(&state, &headers, remote, params, None).await
}

/// The consent form: the request's parameters as hidden fields, `csrf`,
/// and `decision` (`allow` or `deny`).
async fn decision(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut token = None;
    let mut allow = None;
    let mut rest = Vec::new();
    for (name, value) in pairs(&body) {
        match name.as_str() {
            "csrf" => token = Some(value),
            "decision" => allow = Some(value == "allow"),
            _ => rest.push((name, value)),
        }
    }
    if let Err(refused) = csrf::verify(&state, &headers, token.as_deref().unwrap_or("")) {
        return refused.into_response();
    }
    let Some(allow) = allow else {
        return error_page(&OAuthError::invalid_request(
            "the form's decision is missing",
        ));
    };
    proceed(
        &state,
        &headers,
        remote,
        Params::from_pairs(rest),
        Some(allow),
    )
    .await
}

/// The signed-in session and its user, if usable.
async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(SessionInfo, UserRecord)>, OAuthError> {
    let Some(info) = session::current(state, headers).await? else {
        return Ok(None);
    };
    Ok(state
        .store
        .user_by_id(info.user_id.clone())
        .await?
        .filter(|u| !u.disabled)
        .map(|user| (info, user)))
}

async fn proceed(
    state: &AppState,
    headers: &HeaderMap,
    remote: Option<String>,
    params: Result<Params, OAuthError>,
    consent: Option<bool>,
) -> Response {
    let params = match params {
        Ok(params) => params,
        Err(error) => return error_page(&error),
    };
    let mut request = match authorize::validate(state, params).await {
        Ok(request) => request,
        Err(rejection) => return rejected(rejection),
    };
    // The browser's CSRF token binds a forced login's mark to it.
    let browser = csrf::issue(state, headers);
    let mark_key = authorize::auth_after_key(state);
    authorize::accept_auth_after(&mut request, &mark_key, browser.token(), clock::now());
    let session = match signed_in(state, headers).await {
        Ok(session) => session,
        Err(error) => return error_page(&error),
    };
    if let (Some(false), Some((_, user))) = (consent, &session) {
        return to_client(authorize::deny(state, &request, &user.id, remote).await);
    }
    let next =
        match authorize::decide(state, &request, session.as_ref(), consent == Some(true)).await {
            Ok(next) => next,
            Err(rejection) => return rejected(rejection),
        };
    match next {
        Next::Login { auth_after } => {
            let mark = auth_after
                .map(|at| authorize::seal_auth_after(&mark_key, at, &request, browser.token()));
            let back = format!(
                "{AUTHORIZATION_PATH}?{}",
                request.params.query_after_login(mark.as_deref())
            );
            let login = format!(
                "/login?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("return_to", &back)
                    .finish()
            );
            browser.apply(pages::see_other(&login))
        }
        Next::Consent { scopes } => consent_page(state, headers, &request, &scopes),
        Next::Issue { scopes } => {
            let Some((info, user)) = session else {
                return error_page(&OAuthError::server_error("issue without a session"));
            };
            if consent == Some(true)
                && let Err(error) =
                    authorize::remember_consent(state, &request, &user.id, &scopes, remote.clone())
                        .await
            {
                return error_page(&error);
            }
            match authorize::issue_code(state, &request, &info, &scopes, remote).await {
                Ok(redirect) => to_client(redirect),
                Err(error) => error_page(&error),
            }
        }
    }
}

/// What each scope lets the application do, in words.
pub(crate) fn describe(scope: &str, client: &str) -> String {
    match scope {
        "openid" => "Know who you are on Tessera (an identifier, not your username)".into(),
        "profile" => "See your name and username".into(),
        "email" => "See your email address".into(),
        "offline_access" => {
            format!("Stay signed in: {client} may keep using these permissions when you are away")
        }
        "admin" => "Administer Tessera: read and change everything in the admin API".into(),
        "admin:read" => "Read all of Tessera's configuration through the admin API".into(),
        "audit:read" => "Read Tessera's audit log".into(),
        "tokens:self" => "Manage your own access tokens".into(),
        other => format!("Use the permission “{other}”"),
    }
}

/// The consent page: the client's name, the scopes in words, Allow and
/// Deny; the request travels in hidden fields (no server-side state).
fn consent_page(
    state: &AppState,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    scopes: &[String],
) -> Response {
    let csrf = csrf::issue(state, headers);
    let name = request.client.name.as_str();
    let body: Markup = html! {
        p { strong { (name) } " wants to:" }
        @if scopes.is_empty() {
            p { "Sign you in, with no other access." }
        } @else {
            ul.scopes {
                @for scope in scopes {
                    li { (describe(scope, name)) }
                }
            }
        }
        form method="post" action=(DECISION_PATH) {
            (csrf.field())
            // The form's own fields are never taken from the request: a
            // crafted `csrf` or `decision` would break or decide the form.
            @for (field, value) in request.params.pairs() {
                @if field != "csrf" && field != "decision" {
                    input type="hidden" name=(field) value=(value);
                }
            }
            @if authorize::client_unproven(request) {
                // RFC 8252 §8.6: any program here could be listening.
                p.warning #warning {
                    "The answer goes to a program on this computer. Only allow if you \
                     started this yourself just now, on this computer (for example with \
                     tessera login)."
                }
            }
            div.actions {
                button #allow type="submit" name="decision" value="allow" { "Allow" }
                " "
                button.secondary #deny type="submit" name="decision" value="deny" { "Deny" }
            }
        }
        p.hint { "You will be sent back to " (name) " at " code { (request.redirect_uri) } "." }
    };
    let title = format!("Allow {name}?");
    csrf.apply(pages::render(StatusCode::OK, pages::layout(&title, body)))
}
