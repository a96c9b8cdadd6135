//! RFC 8628: `POST /oauth/device_authorization` (§3.1) and the
//! verification page `/device` (§3.3). The page needs a signed-in session
//! (with the second factor where the user has one); the user types the
//! code or arrives with it from `verification_uri_complete`, and approving
//! always takes a click on a page that says who asks, for what, when and
//! from where (§5.4, remote phishing). Parse, call `oauth::device`, render.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use maud::{Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::authorize::describe;
use super::extract::RemoteAddr;
use super::pages::account::{signed_in, to_login};
use super::pages::{self, PageError, PageForm, PageQuery, clean_field, csrf};
use super::token::form_to_json;
use crate::accounts::sessions::SessionInfo;
use crate::oauth::device::{
    self, DEVICE_AUTHORIZATION_PATH, Lookup, VERIFICATION_PATH, display_user_code,
    normalize_user_code,
};
use crate::server::AppState;
use crate::store::{Decided, DeviceRecord};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(DEVICE_AUTHORIZATION_PATH, post(device_authorization))
        .route(VERIFICATION_PATH, get(show).post(submit))
}

/// RFC 8628 §3.1: a form body as at the token endpoint, the client
/// authenticated the same ways; §3.2: the JSON answer, never cached.
async fn device_authorization(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    request: Request,
) -> Response {
    form_to_json(request, remote, |parsed, context| async move {
        device::authorize(&state, &parsed, context).await
    })
    .await
}

#[derive(Deserialize)]
pub struct CodeQuery {
    #[serde(default)]
    user_code: String,
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_code: String,
    /// `approve` or `deny`; absent, the code is only looked up.
    #[serde(default)]
    decision: String,
    /// The confirmation page's mark (`device::seen_mark`).
    #[serde(default)]
    seen: String,
}

/// What a user code keeps unencoded in a URL: letters, digits, the dash.
const CODE_IN_URL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-');

/// The page's own address with the code, for the way back from the login.
fn here(user_code: &str) -> String {
    if user_code.is_empty() {
        return VERIFICATION_PATH.to_owned();
    }
    format!(
        "{VERIFICATION_PATH}?user_code={}",
        utf8_percent_encode(user_code, CODE_IN_URL)
    )
}

/// Whether the browser says the navigation came from another site (Fetch
/// Metadata, `Sec-Fetch-Site`): `none` is an address opened from outside
/// the browser, such as the link a CLI prints.
fn from_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
}

/// `GET /device[?user_code=…]`.
async fn show(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    PageQuery(query): PageQuery<CodeQuery>,
) -> Result<Response, PageError> {
    if !clean_field(&query.user_code, 64) {
        return Err(PageError::bad_request());
    }
    let (session, user) = match signed_in(&state, &headers, &here(&query.user_code)).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    if query.user_code.is_empty() {
        return Ok(entry_page(&state, &headers, "", None));
    }
    if from_another_site(&headers) {
        // A link on another site is not the user typing a code: shown
        // filled in, looked up (and counted as a guess) only when they
        // submit it, so a page cannot spend their guesses for them.
        return Ok(entry_page(&state, &headers, &query.user_code, None));
    }
    look_up(
        &state,
        &headers,
        &session,
        user.admin,
        &query.user_code,
        remote,
    )
    .await
}

/// `POST /device`: the typed code, or the answer to a looked-up one.
async fn submit(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    if !clean_field(&form.user_code, 64)
        || !clean_field(&form.csrf, 512)
        || !clean_field(&form.seen, 128)
    {
        return Err(PageError::bad_request());
    }
    csrf::verify(&state, &headers, &form.csrf)?;
    let (session, user) = match signed_in(&state, &headers, &here(&form.user_code)).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let approve = match form.decision.as_str() {
        "" => {
            return look_up(
                &state,
                &headers,
                &session,
                user.admin,
                &form.user_code,
                remote,
            )
            .await;
        }
        "approve" => true,
        "deny" => false,
        _ => return Err(PageError::bad_request()),
    };
    // An answer from the confirmation page this session was shown is not
    // a guess; any other is, and counts as one, so the form cannot be used
    // to try codes unthrottled.
    let record = if device::was_seen(&state, &session, &form.user_code, &form.seen) {
        device::find(&state, &form.user_code).await?
    } else {
        match device::lookup(&state, &form.user_code, &session, remote.as_deref()).await? {
            Lookup::Found(record) => Some(*record),
            other => return Ok(refusal(&state, &headers, &form.user_code, other)),
        }
    };
    let Some(record) = record else {
        return Ok(refusal(&state, &headers, &form.user_code, Lookup::Unknown));
    };
    if approve && device::needs_recent_login(&state, &record, user.admin, &session) {
        return Ok(to_login(&here(&form.user_code)));
    }
    let decided = device::decide(&state, &record, approve, &session, remote).await?;
    Ok(match decided {
        Decided::Recorded if approve => pages::render(
            StatusCode::OK,
            pages::layout(
                "Device connected",
                html! {
                    p #message { "You can close this window and go back to your device." }
                },
            ),
        ),
        Decided::Recorded => pages::render(
            StatusCode::OK,
            pages::layout(
                "Request denied",
                html! {
                    p #message { "Nothing was shared with the device. You can close this window." }
                },
            ),
        ),
        Decided::Expired => refusal(&state, &headers, &form.user_code, Lookup::Expired),
        Decided::AlreadyAnswered => {
            refusal(&state, &headers, &form.user_code, Lookup::AlreadyAnswered)
        }
        Decided::Unknown => refusal(&state, &headers, &form.user_code, Lookup::Unknown),
    })
}

async fn look_up(
    state: &AppState,
    headers: &HeaderMap,
    session: &SessionInfo,
    is_admin: bool,
    typed: &str,
    remote: Option<String>,
) -> Result<Response, PageError> {
    Ok(
        match device::lookup(state, typed, session, remote.as_deref()).await? {
            Lookup::Found(record)
                if device::needs_recent_login(state, &record, is_admin, session) =>
            {
                to_login(&here(typed))
            }
            Lookup::Found(record) => confirm_page(state, headers, session, &record, typed).await?,
            other => refusal(state, headers, typed, other),
        },
    )
}

/// The entry form again, saying why the code did not do.
fn refusal(state: &AppState, headers: &HeaderMap, typed: &str, lookup: Lookup) -> Response {
    let (status, message) = match lookup {
        Lookup::Throttled(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many wrong codes. Try again in {secs} s."),
        ),
        Lookup::Expired => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "That code has expired. Start again on your device to get a new one.".to_owned(),
        ),
        Lookup::AlreadyAnswered => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "That code has already been used. Start again on your device if you need to."
                .to_owned(),
        ),
        Lookup::Unknown | Lookup::Found(_) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "That code is not valid. Check the code your device shows and type it again."
                .to_owned(),
        ),
    };
    let mut response = entry_page(state, headers, typed, Some(&message));
    *response.status_mut() = status;
    response
}

/// Where the user types the code the device shows.
fn entry_page(
    state: &AppState,
    headers: &HeaderMap,
    typed: &str,
    message: Option<&str>,
) -> Response {
    let csrf = csrf::issue(state, headers);
    let body: Markup = html! {
        p { "Enter the code shown on your device." }
        @if let Some(message) = message {
            p.error #message role="alert" { (message) }
        }
        form method="post" action=(VERIFICATION_PATH) {
            (csrf.field())
            label for="user_code" { "Code" }
            input #user_code type="text" name="user_code" value=(typed)
                autocomplete="off" autocapitalize="characters" spellcheck="false"
                placeholder="XXXX-XXXX" maxlength="16" required autofocus;
            div.actions {
                button #submit type="submit" { "Continue" }
            }
        }
    };
    csrf.apply(pages::render(
        StatusCode::OK,
        pages::layout("Connect a device", body),
    ))
}

/// RFC 8628 §5.4: who asks, for what, when and from where, and an
/// explicit Approve (or Deny), even when the code came in the link.
async fn confirm_page(
    state: &AppState,
    headers: &HeaderMap,
    session: &SessionInfo,
    record: &DeviceRecord,
    typed: &str,
) -> Result<Response, PageError> {
    let client = state
        .client_cache
        .get(&state.store, &record.client_id)
        .await
        .map_err(crate::oauth::OAuthError::from)?;
    let name = client
        .as_ref()
        .map(|c| c.client.name.clone())
        .unwrap_or_else(|| record.client_id.clone());
    let scopes = crate::oauth::grants::human::words(&record.scopes);
    // Found, so it normalises.
    let code = normalize_user_code(typed)
        .map(|c| display_user_code(&c))
        .unwrap_or_default();
    let csrf = csrf::issue(state, headers);
    let body: Markup = html! {
        p { strong #client-name { (name) } " on a device is asking to sign in as you. It wants to:" }
        @if scopes.is_empty() {
            p #scopes { "Sign you in, with no other access." }
        } @else {
            ul.scopes #scopes {
                @for scope in &scopes {
                    li { (describe(scope, &name)) }
                }
            }
        }
        dl {
            dt { "Code" } dd #user-code { (code) }
            dt { "Requested" } dd #requested-at { (crate::clock::rfc3339(record.requested_at)) }
            dt { "From" } dd #requested-from { (record.requested_from.as_deref().unwrap_or("an unknown address")) }
        }
        p.warning #warning {
            strong { "Only approve if you started this yourself on a device you have in front of you." }
            " Check that the code above is the one your device shows. \
              If someone sent you this code or link, deny it."
        }
        form method="post" action=(VERIFICATION_PATH) {
            (csrf.field())
            input type="hidden" name="user_code" value=(code);
            @if let Some(seen) = device::seen_mark(state, session, typed) {
                input type="hidden" name="seen" value=(seen);
            }
            div.actions {
                button #approve type="submit" name="decision" value="approve" { "Approve" }
                " "
                button.secondary #deny type="submit" name="decision" value="deny" { "Deny" }
            }
        }
    };
    Ok(csrf.apply(pages::render(
        StatusCode::OK,
        pages::layout(&format!("Connect {name}?"), body),
    )))
}
