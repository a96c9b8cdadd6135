//! `GET/POST /login` (username and password) and `POST /login/code` (the
//! TOTP or recovery code, for users who enrolled one). The protocol lives
//! in `accounts::login`; this renders it.

use axum::extract::State;
use axum::http::header::{RETRY_AFTER, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::csrf::{self, Csrf};
use super::{PageError, PageForm, PageQuery, clean_field, layout, render, see_other, session};
use crate::accounts::login::{self, Step};
use crate::http::extract::RemoteAddr;
use crate::secret::Secret;
use crate::server::AppState;

const USERNAME_MAX: usize = 256;
const PASSWORD_MAX: usize = 1024;
const CODE_MAX: usize = 64;
const TOKEN_MAX: usize = 512;
const RETURN_TO_MAX: usize = 8192;

/// The message for every refused sign-in, whatever the reason.
const REFUSED: &str = "Incorrect username or password.";
const REFUSED_CODE: &str = "That code is not valid. Try again, or use a recovery code.";

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Secret,
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pending: String,
    #[serde(default)]
    code: String,
    return_to: Option<String>,
}

fn throttled_message(seconds: u64) -> String {
    format!("Too many attempts. Try again in {seconds} s.")
}

fn login_form(csrf: &Csrf, return_to: &str, username: &str, message: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            @if let Some(message) = message {
                p.alert role="alert" id="message" { (message) }
            }
            form method="post" action="/login" {
                (csrf.field())
                input type="hidden" name="return_to" value=(return_to);
                div.field {
                    label for="username" { "Username" }
                    input #username type="text" name="username" value=(username)
                        autocomplete="username" autocapitalize="none" spellcheck="false"
                        required autofocus[username.is_empty()] maxlength=(USERNAME_MAX);
                }
                div.field {
                    label for="password" { "Password" }
                    input #password type="password" name="password"
                        autocomplete="current-password" required
                        autofocus[!username.is_empty()] maxlength=(PASSWORD_MAX);
                }
                button #submit type="submit" { "Sign in" }
            }
        },
    )
}

fn code_form(csrf: &Csrf, return_to: &str, pending: &str, message: Option<&str>) -> Markup {
    layout(
        "Two-factor authentication",
        html! {
            @if let Some(message) = message {
                p.alert role="alert" id="message" { (message) }
            }
            form method="post" action="/login/code" {
                (csrf.field())
                input type="hidden" name="return_to" value=(return_to);
                input type="hidden" name="pending" value=(pending);
                div.field {
                    label for="code" { "Code from your authenticator app" }
                    p.hint id="code-hint" { "Six digits, or one of your recovery codes." }
                    input #code type="text" name="code" autocomplete="one-time-code"
                        inputmode="text" autocapitalize="none" spellcheck="false"
                        aria-describedby="code-hint" required autofocus maxlength=(CODE_MAX);
                }
                button #submit type="submit" { "Verify" }
            }
        },
    )
}

/// The return target as the form carries it: a safe local path or
/// `/account`, never an outside URL echoed back.
fn target(return_to: Option<&str>) -> String {
    login::safe_return_to(return_to.filter(|r| r.len() <= RETURN_TO_MAX)).to_owned()
}

/// `GET /login?return_to=/path`.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageQuery(query): PageQuery<LoginQuery>,
) -> Response {
    let csrf = csrf::issue(&state, &headers);
    let return_to = target(query.return_to.as_deref());
    csrf.apply(render(
        StatusCode::OK,
        login_form(&csrf, &return_to, "", None),
    ))
}

/// The known-browser cookie (`accounts::throttle`): a signed nonce and
/// its issue time, no personal data, kept as long as it is good.
const DEVICE_COOKIE: &str = "tessera_device";
const DEVICE_COOKIE_AGE: u64 = crate::accounts::throttle::DEVICE_COOKIE_LIFETIME_SECS as u64;

/// The device cookie the browser sent, if a plausible one.
fn presented_device<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    super::cookie(headers, &super::cookie_name(state, DEVICE_COOKIE)).filter(|v| v.len() <= 128)
}

/// Login steps running at once in this process, at most: each may wait
/// for a password hash, and one running to completion no longer holds a
/// connection (which bounded them before), so this bounds the queue.
const MAX_PENDING_STEPS: usize = 256;

/// Runs a login step on a task of its own, so that a browser that goes
/// away mid-step (a closed tab, a dropped connection) cannot leave its
/// attempt counted in the throttle without the refund a right password
/// earns, nor a session half made. Past [`MAX_PENDING_STEPS`] the step is
/// not started: 503, nothing counted.
async fn to_completion(
    step: impl std::future::Future<Output = Result<Step, crate::store::StoreError>> + Send + 'static,
) -> Result<Step, PageError> {
    static PENDING: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::LazyLock::new(|| {
            std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_STEPS))
        });
    let Ok(permit) = PENDING.clone().try_acquire_owned() else {
        return Err(PageError::from(crate::oauth::OAuthError::unavailable(
            "too many sign-ins at once",
        )));
    };
    let task = tokio::spawn(async move {
        let _permit = permit;
        step.await
    });
    match task.await {
        Ok(step) => Ok(step?),
        Err(e) => Err(PageError::from(crate::oauth::OAuthError::server_error(
            format!("a login step failed: {e}"),
        ))),
    }
}

/// `POST /login`.
pub async fn submit(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<LoginForm>,
) -> Result<Response, PageError> {
    if !clean_field(&form.username, USERNAME_MAX)
        || form.password.expose().len() > PASSWORD_MAX
        || form.password.expose().contains('\0')
        || !clean_field(&form.csrf, TOKEN_MAX)
    {
        return Err(PageError::bad_request());
    }
    csrf::verify(&state, &headers, &form.csrf)?;
    let csrf = csrf::issue(&state, &headers);
    let return_to = target(form.return_to.as_deref());
    let username = form.username.trim().to_owned();
    if username.is_empty() || form.password.is_empty() {
        return Ok(render(
            StatusCode::UNAUTHORIZED,
            login_form(&csrf, &return_to, &username, Some(REFUSED)),
        ));
    }
    let device = presented_device(&state, &headers).map(str::to_owned);
    let step = to_completion({
        let (state, username) = (state.clone(), username.clone());
        async move {
            let device = device.as_deref();
            login::password_step(&state, &username, form.password, remote.as_deref(), device).await
        }
    })
    .await?;
    finish(&state, &headers, &csrf, &return_to, step, |message| {
        login_form(&csrf, &return_to, &username, Some(message))
    })
    .await
}

/// `POST /login/code`.
pub async fn submit_code(
    State(state): State<AppState>,
    RemoteAddr(remote): RemoteAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<CodeForm>,
) -> Result<Response, PageError> {
    if !clean_field(&form.code, CODE_MAX)
        || !clean_field(&form.pending, TOKEN_MAX)
        || !clean_field(&form.csrf, TOKEN_MAX)
    {
        return Err(PageError::bad_request());
    }
    csrf::verify(&state, &headers, &form.csrf)?;
    let csrf = csrf::issue(&state, &headers);
    let return_to = target(form.return_to.as_deref());
    let device = presented_device(&state, &headers).map(str::to_owned);
    let step = to_completion({
        let (state, pending, code) = (state.clone(), form.pending.clone(), form.code);
        async move {
            let device = device.as_deref();
            login::code_step(&state, &pending, &code, remote.as_deref(), device).await
        }
    })
    .await?;
    if let Step::Refused = step {
        return Ok(render(
            StatusCode::UNAUTHORIZED,
            code_form(&csrf, &return_to, &form.pending, Some(REFUSED_CODE)),
        ));
    }
    finish(&state, &headers, &csrf, &return_to, step, |message| {
        code_form(&csrf, &return_to, &form.pending, Some(message))
    })
    .await
}

/// Renders a step's outcome; `again` is the form to show with a message.
async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &Csrf,
    return_to: &str,
    step: Step,
    again: impl Fn(&str) -> Markup,
) -> Result<Response, PageError> {
    let response = match step {
        Step::Throttled { retry_after } => {
            let mut response = render(
                StatusCode::TOO_MANY_REQUESTS,
                again(&throttled_message(retry_after)),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
        Step::Refused => render(StatusCode::UNAUTHORIZED, again(REFUSED)),
        Step::Expired => render(
            StatusCode::UNAUTHORIZED,
            login_form(
                csrf,
                return_to,
                "",
                Some("The sign-in took too long. Enter your password again."),
            ),
        ),
        Step::NeedsCode { pending } => {
            render(StatusCode::OK, code_form(csrf, return_to, &pending, None))
        }
        Step::SignedIn { secret, device, .. } => {
            // Rotation: whatever session the browser had before ends now.
            if let Some(old) = session::current(state, headers).await? {
                session::end(state, &old.sid).await;
            }
            let mut response = see_other(return_to);
            let cookies = response.headers_mut();
            cookies.append(SET_COOKIE, session::cookie(state, &secret));
            cookies.append(
                SET_COOKIE,
                super::set_cookie(state, DEVICE_COOKIE, &device, Some(DEVICE_COOKIE_AGE)),
            );
            response
        }
    };
    Ok(csrf.apply(response))
}
