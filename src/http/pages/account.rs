//! `GET /account`: who is signed in, how, and the second factor's state;
//! `POST /account/mfa`: TOTP enrolment (begun by a CSRF-checked form from a
//! recent login; QR code and manual secret, confirmed with a code; recovery
//! codes shown once).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{PreEscaped, html};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{PageError, PageForm, clean_field, csrf, layout, render, see_other, session};
use crate::accounts::sessions::SessionInfo;
use crate::accounts::totp;
use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::http::extract::RemoteAddr;
use crate::server::AppState;
use crate::store::{MfaStore, StoreError, TotpRecord, UserRecord, UserStore};

/// The signed-in user, or the redirect to the login page that comes back.
pub(crate) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
) -> Result<Result<(SessionInfo, UserRecord), Response>, PageError> {
    let Some(session) = session::current(state, headers).await? else {
        return Ok(Err(to_login(here)));
    };
    match state.store.user_by_id(session.user_id.clone()).await? {
        Some(user) => Ok(Ok((session, user))),
        None => Ok(Err(to_login(here))),
    }
}

/// To the login page, and back to `here` afterwards.
pub(crate) fn to_login(here: &str) -> Response {
    see_other(&format!(
        "/login?return_to={}",
        utf8_percent_encode(here, NON_ALPHANUMERIC)
    ))
}

/// `GET /account`.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let (session, user) = match signed_in(&state, &headers, "/account").await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let totp = state.store.totp_for(user.id.clone()).await?;
    let enrolled = totp.is_some_and(|t| t.confirmed_at.is_some());
    let codes_left = if enrolled {
        state.store.recovery_codes_left(user.id.clone()).await?
    } else {
        0
    };
    let csrf = csrf::issue(&state, &headers);
    let page = layout(
        "Your account",
        html! {
            p #signed-in { "Signed in as " strong { (user.username) } "." }
            dl {
                @if let Some(name) = &user.display_name {
                    dt { "Name" } dd { (name) }
                }
                @if let Some(email) = &user.email {
                    dt { "Email" } dd { (email) }
                }
                dt { "Signed in" } dd { (crate::clock::rfc3339(session.auth_time)) }
                dt { "Sign-in methods" } dd { (session.amr.join(", ")) }
                dt { "Two-factor authentication" }
                dd #mfa-status {
                    @if enrolled {
                        "On (" (codes_left) " recovery codes left)"
                    } @else {
                        "Off"
                    }
                }
            }
            @if !enrolled {
                form method="post" action="/account/mfa" {
                    (csrf.field())
                    button #enrol type="submit" name="step" value="begin" {
                        "Set up two-factor authentication"
                    }
                }
            }
            h2 { "Security" }
            nav aria-label="Account" {
                ul {
                    li { a #tokens-link href="/account/tokens" { "Personal access tokens" } }
                    li { a #logout href="/logout" { "Sign out" } }
                }
            }
        },
    );
    Ok(csrf.apply(render(StatusCode::OK, page)))
}

#[derive(Deserialize)]
pub struct MfaForm {
    #[serde(default)]
    csrf: String,
    /// `begin` starts an enrolment; absent, `code` confirms it.
    #[serde(default)]
    step: String,
    #[serde(default)]
    code: String,
}

fn enrol_page(
    state: &AppState,
    csrf: &csrf::Csrf,
    user: &UserRecord,
    secret: &[u8],
    message: Option<&str>,
) -> maud::Markup {
    let issuer = state
        .config
        .server
        .issuer
        .host_str()
        .unwrap_or("Tessera")
        .to_owned();
    let uri = totp::otpauth_uri(&format!("Tessera {issuer}"), &user.username, secret);
    let svg = totp::qr_svg(&uri).unwrap_or_default();
    let manual = totp::base32(secret);
    layout(
        "Set up two-factor authentication",
        html! {
            @if let Some(message) = message {
                p.alert role="alert" id="message" { (message) }
            }
            ol.steps {
                li { "Scan this QR code with an authenticator app." }
            }
            figure.qr role="img" aria-label="QR code of the authenticator key" {
                (PreEscaped(svg))
            }
            p { "Cannot scan it? Enter this key by hand:" }
            p { code #secret.secret { (manual.as_str()) } }
            form method="post" action="/account/mfa" {
                (csrf.field())
                div.field {
                    label for="code" { "Code shown by the app" }
                    input #code type="text" name="code" inputmode="numeric"
                        autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6"
                        required autofocus;
                }
                button #submit type="submit" { "Turn on" }
                " "
                a.secondary href="/account" { "Cancel" }
            }
        },
    )
}

/// `GET /account/mfa`: enrolment starts from the account page's form (a
/// POST with its CSRF token), so a link cannot start or reset one.
pub async fn mfa_show() -> Response {
    see_other("/account")
}

/// Starts a pending enrolment with a new secret (the caller checked that
/// the login is recent).
async fn begin_enrolment(
    state: &AppState,
    headers: &HeaderMap,
    user: &UserRecord,
) -> Result<Response, PageError> {
    let secret = totp::new_secret();
    let (sealed, key_id) = totp::seal(state.keys.master(), &user.id, &secret);
    let begun = state
        .store
        .begin_totp(TotpRecord {
            user_id: user.id.clone(),
            sealed_secret: sealed,
            master_key_id: key_id,
            confirmed_at: None,
            last_step: 0,
            created_at: crate::clock::now(),
        })
        .await;
    match begun {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Ok(see_other("/account")),
        Err(e) => return Err(e.into()),
    }
    let csrf = csrf::issue(state, headers);
    Ok(csrf.apply(render(
        StatusCode::OK,
        enrol_page(state, &csrf, user, &secret, None),
    )))
}

/// `POST /account/mfa`: `step=begin` starts an enrolment; otherwise the
/// code confirms the pending one and the recovery codes are shown, once.
pub async fn mfa_post(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<MfaForm>,
) -> Result<Response, PageError> {
    if !clean_field(&form.code, 64) || !clean_field(&form.csrf, 512) {
        return Err(PageError::bad_request());
    }
    csrf::verify(&state, &headers, &form.csrf)?;
    let (session, user) = match signed_in(&state, &headers, "/account").await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    // Both steps need a recent login: the confirm step shows the pending
    // secret again after a wrong code.
    let recent = state.config.sessions.reauthenticate_after.as_secs() as i64;
    let now = crate::clock::now();
    if now.saturating_sub(session.auth_time) > recent {
        return Ok(to_login("/account"));
    }
    match form.step.as_str() {
        "begin" => return begin_enrolment(&state, &headers, &user).await,
        "" => {}
        _ => return Err(PageError::bad_request()),
    }
    let Some(record) = state
        .store
        .totp_for(user.id.clone())
        .await?
        // A pending enrolment lasts as long as a recent login does.
        .filter(|r| r.confirmed_at.is_none() && now.saturating_sub(r.created_at) <= recent)
    else {
        return Ok(see_other("/account"));
    };
    let secret = totp::open(state.keys.master(), &record).ok_or_else(|| {
        PageError::from(crate::oauth::OAuthError::server_error(
            "a TOTP secret could not be opened with the master key",
        ))
    })?;
    let now = crate::clock::now();
    let Some(step) = totp::matching_step(&secret, form.code.trim(), now) else {
        let csrf = csrf::issue(&state, &headers);
        return Ok(csrf.apply(render(
            StatusCode::UNPROCESSABLE_ENTITY,
            enrol_page(
                &state,
                &csrf,
                &user,
                &secret,
                Some("That code is not valid. Check the app's clock and try the next code."),
            ),
        )));
    };
    let codes = totp::new_recovery_codes();
    let digests = codes
        .iter()
        .map(|c| totp::recovery_digest(&state.digest_key, &user.id, c))
        .collect();
    if !state
        .store
        .confirm_totp(user.id.clone(), step, now, digests)
        .await?
    {
        return Ok(see_other("/account"));
    }
    Event::new(
        Actor {
            id: Some(user.id.clone()),
            kind: ActorKind::Human,
            owner: None,
        },
        "mfa.enrolled",
        Outcome::Success,
    )
    .target(&user.username)
    .remote(remote)
    .details(serde_json::json!({ "method": "totp", "recovery_codes": codes.len() }))
    .record(&state.store)
    .await;
    let page = layout(
        "Two-factor authentication is on",
        html! {
            p { "From now on, signing in asks for a code from your authenticator app." }
            h2 { "Recovery codes" }
            p {
                "If you lose your device, each of these codes signs you in once. "
                strong { "They are shown only now:" } " store them somewhere safe."
            }
            ul #recovery-codes.codes {
                @for code in &codes { li { code { (code.as_str()) } } }
            }
            p { a href="/account" { "Back to your account" } }
        },
    );
    Ok(render(StatusCode::OK, page))
}
