//! Account → Security → Personal access tokens (`/account/tokens`): the
//! signed-in person's tokens, with name, environment, scopes, created,
//! expires, last used and status; tokens close to expiry are marked. A new
//! token's value is shown once, with a copy button and a warning. Disable,
//! enable, roll and revoke each ask for confirmation on a page of their
//! own (a second POST), so no stray click changes a token. The creation
//! form is good once: sent again (a reload of the page that showed the
//! value, a double click), it makes no second token.
//!
//! The page acts as the person through `oauth::personal_tokens`, the same
//! code the admin API runs; its own tokens only, even for an
//! administrator. Offering the admin scopes needs a recent sign-in, as the
//! authorization endpoint does.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::account::{signed_in, to_login};
use super::{PageError, PageForm, clean_field, csrf, layout, render, see_other};
use crate::accounts::sessions::SessionInfo;
use crate::audit::ActorKind;
use crate::clock;
use crate::http::extract::{Path, RemoteAddr};
use crate::oauth::api_scopes::{ADMIN, ADMIN_READ, AUDIT_READ, TOKENS_SELF};
use crate::oauth::bearer::Principal;
use crate::oauth::personal_tokens::{
    self, CreatedToken, ListOptions, RollSpec, TokenSpec, TokenView,
};
use crate::oauth::{ErrorCode, OAuthError};
use crate::server::AppState;
use crate::store::UserRecord;

const HERE: &str = "/account/tokens";
/// A token with less than this left is marked as close to expiry.
const EXPIRING_SECS: i64 = 3 * 86400;
/// The API scopes an administrator may put on a token here.
const ADMIN_SCOPES: [&str; 3] = [ADMIN_READ, AUDIT_READ, ADMIN];
/// How long a creation form may be sent after it was shown.
const FORM_LIFETIME: i64 = 12 * 3600;
const FORM_SENT: &str = "This form was already sent, or is more than 12 hours old, so \
     nothing was made now. If it made a token then, that token is in the list below (its \
     value was shown once). To make another, fill in the form again.";

/// A creation form's single-use value: when it was shown, and a random
/// part.
fn form_once() -> String {
    format!("{}.{}", clock::now(), crate::random::random_base62(22))
}

/// Whether this is the first time the creation form holding `once` is
/// sent, and it is fresh. Recorded in the store of used assertion ids, so
/// a repeat is caught on whichever replica it reaches.
async fn first_sending(state: &AppState, once: &str) -> Result<bool, PageError> {
    let now = clock::now();
    let fresh = once.split_once('.').is_some_and(|(at, random)| {
        let at = at.parse::<i64>().unwrap_or(i64::MIN);
        random.len() == 22
            && random.bytes().all(|b| b.is_ascii_alphanumeric())
            && at <= now.saturating_add(60)
            && now.saturating_sub(at) <= FORM_LIFETIME
    });
    if !fresh {
        return Ok(false);
    }
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    digest.update(b"tessera token form\0");
    digest.update(once.as_bytes());
    let key = crate::keys::hex(digest.finish().as_ref());
    let until = now.saturating_add(FORM_LIFETIME + 120);
    Ok(state
        .writer
        .consume(key, until)
        .await
        .map_err(OAuthError::from)?)
}

/// Whether the sign-in is recent enough to hand out the admin scopes.
fn recent(state: &AppState, session: &SessionInfo) -> bool {
    let limit = state.config.sessions.reauthenticate_after.as_secs() as i64;
    clock::now().saturating_sub(session.auth_time) <= limit
}

/// The person as the token operations see them: `tokens:self` (their own
/// tokens), and, to create a token, for an administrator who signed in
/// recently the admin scopes too (so that they may put them on it).
fn principal(
    state: &AppState,
    session: &SessionInfo,
    user: &UserRecord,
    creating: bool,
) -> Principal {
    let mut scopes = vec![TOKENS_SELF.to_owned()];
    if creating && user.admin && recent(state, session) {
        scopes.extend(ADMIN_SCOPES.iter().map(|s| (*s).to_owned()));
    }
    Principal {
        id: user.id.clone(),
        name: user.username.clone(),
        kind: ActorKind::Human,
        is_admin: user.admin,
        token_id: session.sid.clone(),
        scopes,
        token_kind: None,
        expires_at: None,
    }
}

fn own() -> ListOptions {
    ListOptions {
        own_only: true,
        ..ListOptions::default()
    }
}

/// `GET /account/tokens`.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let (session, user) = match signed_in(&state, &headers, HERE).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    list_page(&state, &headers, &session, &user, StatusCode::OK, None).await
}

async fn list_page(
    state: &AppState,
    headers: &HeaderMap,
    session: &SessionInfo,
    user: &UserRecord,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Response, PageError> {
    let caller = principal(state, session, user, false);
    let tokens = personal_tokens::list(state, &caller, own()).await?;
    let csrf = csrf::issue(state, headers);
    let config = &state.config.personal_tokens;
    let now = clock::now();
    // Only what `max_lifetime` allows; an environment's own cap is named
    // beside it.
    let expiries: Vec<&String> = config
        .expiry_choices
        .iter()
        .filter(|c| config.choice(c).is_some_and(|d| d <= config.max_lifetime))
        .collect();
    let default_expiry = expiries
        .iter()
        .find(|c| c.as_str() == "7d")
        .or(expiries.first())
        .copied();
    let env_cap = |env: &str| {
        config
            .env_max_lifetime
            .get(env)
            .filter(|_| config.max_for(env) < config.max_lifetime)
    };
    let page = layout(
        "Personal access tokens",
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href="/account" { "Account" } " → Security → Personal access tokens"
            }
            @if let Some(message) = message {
                p.alert role="alert" #message { (message) }
            }
            p {
                "Tokens let scripts and tools act as you: "
                code { "TESSERA_TOKEN=… tessera …" } ". Each expires; give each the least it needs."
            }
            @if tokens.is_empty() {
                p #no-tokens { "You have no tokens." }
            } @else {
                ul #tokens.tokens {
                    @for token in &tokens { (token_item(&csrf, token, now)) }
                }
            }
            h2 { "New token" }
            form #create method="post" action=(HERE) {
                (csrf.field())
                input type="hidden" name="once" value=(form_once());
                div.field {
                    label for="name" { "Name" }
                    p.hint { "What it is for, such as “deploy script”." }
                    input #name type="text" name="name" required maxlength="200";
                }
                fieldset.field {
                    legend { "Environment" }
                    @for env in &config.environments {
                        label.choice {
                            input type="radio" name="env" value=(env) id={ "env-" (env) } required;
                            " " (env)
                            @if let Some(cap) = env_cap(env) { " (at most " (cap) ")" }
                        }
                    }
                }
                fieldset.field {
                    legend { "Expires after" }
                    @for choice in &expiries {
                        label.choice {
                            input type="radio" name="expires" value=(choice) id={ "expires-" (choice) }
                                checked[Some(*choice) == default_expiry];
                            " " (choice)
                        }
                    }
                }
                fieldset.field {
                    legend { "Scopes" }
                    p.hint { "None: the token only says who you are (tessera whoami)." }
                    label.choice {
                        input type="checkbox" name="scope" value=(TOKENS_SELF) id="scope-tokens-self";
                        " " code { (TOKENS_SELF) } " manage your tokens"
                    }
                    @if user.admin {
                        @for scope in ADMIN_SCOPES {
                            label.choice {
                                input type="checkbox" name="scope" value=(scope) id={ "scope-" (scope.replace(':', "-")) };
                                " " code { (scope) }
                            }
                        }
                    }
                }
                button #create-token type="submit" { "Create token" }
            }
        },
    );
    Ok(csrf.apply(render(status, page)))
}

fn when(at: Option<i64>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), clock::rfc3339)
}

fn token_item(csrf: &csrf::Csrf, token: &TokenView, now: i64) -> Markup {
    let expiring = token.status == "active"
        && token
            .expires_at
            .is_some_and(|exp| exp.saturating_sub(now) < EXPIRING_SECS);
    let actions: &[(&str, &str)] = match token.status {
        "active" => &[
            ("roll", "Roll"),
            ("disable", "Disable"),
            ("revoke", "Revoke"),
        ],
        "disabled" => &[("enable", "Enable"), ("revoke", "Revoke")],
        "expired" => &[("revoke", "Revoke")],
        _ => &[],
    };
    html! {
        li.token.expiring[expiring] id={ "token-" (token.id) } {
            h3 { (token.name) " " span.env { (token.env) } }
            dl {
                dt { "Token" } dd { code { (token.hint) } }
                dt { "Scopes" } dd {
                    @if token.scope.is_empty() { "none (identifies you only)" } @else { (token.scope) }
                }
                dt { "Created" } dd { (when(Some(token.created_at), "")) }
                dt { "Expires" } dd.expires {
                    (when(token.expires_at, "never"))
                    @if expiring { " " strong { "(expires soon)" } }
                }
                dt { "Last used" } dd {
                    (when(token.last_used_at, "never"))
                    @if let Some(ip) = &token.last_used_ip { " from " (ip) }
                }
                dt { "Status" } dd.status { (token.status) }
            }
            @if !actions.is_empty() {
                form.actions method="post" action={ (HERE) "/" (token.id) } {
                    (csrf.field())
                    @for (action, label) in actions {
                        button.secondary type="submit" name="action" value=(action)
                            id={ (action) "-" (token.id) } { (label) }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    env: String,
    #[serde(default)]
    expires: String,
    /// The form's single-use value ([`form_once`]).
    #[serde(default)]
    once: String,
    /// Checkboxes: the field repeats, so the form is read as pairs.
    #[serde(default)]
    scope: Vec<String>,
}

/// `POST /account/tokens`: creates a token and shows it once.
pub async fn create(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = create_form(form)?;
    csrf::verify(&state, &headers, &form.csrf)?;
    let (session, user) = match signed_in(&state, &headers, HERE).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let wants_admin = form
        .scope
        .iter()
        .any(|s| ADMIN_SCOPES.contains(&s.as_str()));
    if wants_admin && user.admin && !recent(&state, &session) {
        return Ok(to_login(HERE));
    }
    let spec = TokenSpec {
        name: form.name,
        env: form.env,
        expires: form.expires,
        scope: Some(form.scope.join(" ")),
        service_user: None,
    };
    if !first_sending(&state, &form.once).await? {
        let status = StatusCode::CONFLICT;
        return list_page(&state, &headers, &session, &user, status, Some(FORM_SENT)).await;
    }
    let caller = principal(&state, &session, &user, true);
    match personal_tokens::create(&state, &caller, spec, remote).await {
        Ok(created) => Ok(shown_once(&created, "Your new token")),
        Err(refused) => refused_page(&state, &headers, &session, &user, refused).await,
    }
}

fn create_form(pairs: Vec<(String, String)>) -> Result<CreateForm, PageError> {
    let mut form = CreateForm {
        csrf: String::new(),
        name: String::new(),
        env: String::new(),
        expires: String::new(),
        once: String::new(),
        scope: Vec::new(),
    };
    for (key, value) in pairs {
        if !clean_field(&value, 512) {
            return Err(PageError::bad_request());
        }
        match key.as_str() {
            "csrf" => form.csrf = value,
            "name" => form.name = value,
            "env" => form.env = value,
            "expires" => form.expires = value,
            "once" => form.once = value,
            "scope" if form.scope.len() < 16 => form.scope.push(value),
            _ => return Err(PageError::bad_request()),
        }
    }
    Ok(form)
}

/// A refusal the person can act on (a bad field, the limit) shown on the
/// list page; anything else as an error page.
async fn refused_page(
    state: &AppState,
    headers: &HeaderMap,
    session: &SessionInfo,
    user: &UserRecord,
    refused: OAuthError,
) -> Result<Response, PageError> {
    let status = match refused.code {
        ErrorCode::InvalidRequest | ErrorCode::InvalidScope => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        _ => return Err(refused.into()),
    };
    let message = crate::oauth::error::safe_description(&refused.description).into_owned();
    list_page(state, headers, session, user, status, Some(&message)).await
}

/// The value of a new or rolled token, once, with a copy button (the one
/// script of these pages, `/assets/copy.js`) and a warning.
fn shown_once(created: &CreatedToken, title: &str) -> Response {
    let page = layout(
        title,
        html! {
            p.alert role="alert" #warning {
                strong { "Copy it now." }
                " It is not stored and cannot be shown again. Anyone who has it can act as you within its scopes."
            }
            p { (created.view.name) " (" (created.view.env) "), expires "
                (when(created.view.expires_at, "never")) "." }
            pre.secret { code #new-token { (created.token.expose()) } }
            button #copy type="button" hidden { "Copy" }
            p { a #back href=(HERE) { "Back to your tokens" } }
            script src={ "/assets/copy.js?v=" (super::copy_script_version()) } {}
        },
    );
    super::allow_own_script(render(StatusCode::OK, page))
}

#[derive(Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    /// `yes` on the confirmation page's submit.
    #[serde(default)]
    confirm: String,
    /// Roll only: how long the old token keeps working.
    #[serde(default)]
    grace: String,
}

/// `POST /account/tokens/{id}`: disable, enable, roll or revoke, each
/// after a confirmation page.
pub async fn act(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    PageForm(form): PageForm<ActionForm>,
) -> Result<Response, PageError> {
    let valid_id = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid_id || !clean_field(&form.csrf, 512) || !clean_field(&form.grace, 16) {
        return Err(PageError::bad_request());
    }
    csrf::verify(&state, &headers, &form.csrf)?;
    let (session, user) = match signed_in(&state, &headers, HERE).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let caller = principal(&state, &session, &user, false);
    let Some(question) = question(&form.action) else {
        return Err(PageError::bad_request());
    };
    // This page reaches the person's own tokens only, at both steps.
    let token = match personal_tokens::show(&state, &caller, &id).await {
        Ok(token) if token.owner.id == user.id => token,
        Ok(_) => return Err(OAuthError::not_found("no such token").into()),
        Err(refused) => {
            return refused_page(&state, &headers, &session, &user, refused).await;
        }
    };
    if form.confirm != "yes" {
        return Ok(confirm_page(
            &state,
            &headers,
            &token,
            &form.action,
            question,
        ));
    }
    let done = match form.action.as_str() {
        "disable" => personal_tokens::disable(&state, &caller, &id, remote).await,
        "enable" => personal_tokens::enable(&state, &caller, &id, remote).await,
        "revoke" => personal_tokens::revoke(&state, &caller, &id, remote).await,
        _ => {
            let grace_seconds = match form.grace.trim() {
                "" => None,
                text => match humantime::parse_duration(text) {
                    Ok(grace) => Some(grace.as_secs()),
                    Err(_) => {
                        let refused =
                            OAuthError::invalid_request("the grace must be a duration such as 15m");
                        return refused_page(&state, &headers, &session, &user, refused).await;
                    }
                },
            };
            let spec = RollSpec { grace_seconds };
            return match personal_tokens::roll(&state, &caller, &id, spec, remote).await {
                Ok(rolled) => Ok(shown_once(&rolled, "Your rolled token")),
                Err(refused) => refused_page(&state, &headers, &session, &user, refused).await,
            };
        }
    };
    match done {
        Ok(_) => Ok(see_other(HERE)),
        Err(refused) => refused_page(&state, &headers, &session, &user, refused).await,
    }
}

/// What each action asks before it is done.
fn question(action: &str) -> Option<&'static str> {
    Some(match action {
        "disable" => {
            "Disable this token? Every use of it is refused (403) until you enable it again."
        }
        "enable" => "Enable this token again? It works again at once.",
        "roll" => {
            "Roll this token? A new token replaces it, with the same name, environment, scopes \
             and lifetime; the old one stops working at once unless you give it a grace."
        }
        "revoke" => "Revoke this token? This is permanent: it can never be used again.",
        _ => return None,
    })
}

fn confirm_page(
    state: &AppState,
    headers: &HeaderMap,
    token: &TokenView,
    action: &str,
    question: &str,
) -> Response {
    let csrf = csrf::issue(state, headers);
    let page = layout(
        "Are you sure?",
        html! {
            p #question { (question) }
            p { "Token: " strong { (token.name) } " (" (token.env) ", " code { (token.hint) } ")" }
            form method="post" action={ (HERE) "/" (token.id) } {
                (csrf.field())
                input type="hidden" name="action" value=(action);
                input type="hidden" name="confirm" value="yes";
                @if action == "roll" {
                    div.field {
                        label for="grace" { "Keep the old token working for (optional)" }
                        p.hint { "Such as 15m, so that whatever uses it can switch." }
                        input #grace type="text" name="grace" maxlength="16";
                    }
                }
                button #confirm type="submit" { "Yes, " (action) }
                " "
                a.secondary #cancel href=(HERE) { "Cancel" }
            }
        },
    );
    csrf.apply(render(StatusCode::OK, page))
}
