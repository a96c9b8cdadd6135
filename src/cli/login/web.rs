//! Signing in through the browser: authorization code + PKCE with a
//! loopback redirect (RFC 8252 §7.3, §8.1). The CLI listens on
//! `http://127.0.0.1:<ephemeral port>/callback`, accepts the one answer
//! that carries its `state` (RFC 6749 §10.12), and closes the listener.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::oauth::{self, Client, Tokens};

/// How long the browser has to come back.
const WAIT: Duration = Duration::from_secs(300);

/// The query of the redirect back (RFC 6749 §4.1.2, §4.1.2.1).
#[derive(Debug, Deserialize)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The listener's one-time outcome.
type Answer = Result<String, String>;

struct Waiting {
    state: String,
    answer: Mutex<Option<oneshot::Sender<Answer>>>,
}

/// Runs the browser sign-in: `show` gets the authorization URL to open or
/// print once the listener is up.
pub async fn sign_in(
    client: &Client,
    http: &reqwest::Client,
    scopes: &[String],
    show: impl FnOnce(&url::Url),
) -> anyhow::Result<Tokens> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("cannot listen on 127.0.0.1 for the browser's answer")?;
    let port = listener.local_addr()?.port();
    let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/callback"))
        .expect("a loopback URL parses");
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .set_redirect_uri(Cow::Borrowed(&redirect))
        .url();

    let (tx, rx) = oneshot::channel();
    let waiting = Arc::new(Waiting {
        state: state.secret().clone(),
        answer: Mutex::new(Some(tx)),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let app = axum::Router::new()
        .route("/callback", axum::routing::get(callback))
        .with_state(waiting);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    show(&url);
    let answer = tokio::time::timeout(WAIT, rx).await;
    // One answer only: the listener closes before the code is redeemed.
    let _ = stop.send(());
    let abort = server.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .is_err()
    {
        abort.abort();
    }
    let code = match answer {
        Err(_) => bail!(
            "the browser did not come back within {} minutes",
            WAIT.as_secs() / 60
        ),
        Ok(Err(_)) => bail!("the loopback listener stopped"),
        Ok(Ok(Err(refused))) => bail!("the sign-in was refused: {refused}"),
        Ok(Ok(Ok(code))) => code,
    };
    client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .set_redirect_uri(Cow::Borrowed(&redirect))
        .request_async(http)
        .await
        .map_err(|e| anyhow!("the code could not be redeemed: {}", oauth::describe(&e)))
}

async fn callback(
    State(waiting): State<Arc<Waiting>>,
    Query(callback): Query<Callback>,
) -> (StatusCode, Html<&'static str>) {
    let state_matches = callback
        .state
        .as_deref()
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(waiting.state.as_bytes())));
    if !state_matches {
        // Not the answer to this sign-in (another tab, or a forged
        // request): refused, and the real one is still awaited.
        return (StatusCode::BAD_REQUEST, Html(page::WRONG_STATE));
    }
    let Some(tx) = waiting.answer.lock().ok().and_then(|mut slot| slot.take()) else {
        return (StatusCode::CONFLICT, Html(page::ALREADY_ANSWERED));
    };
    let (answer, page) = match (callback.code, callback.error) {
        (Some(code), None) => (Ok(code), (StatusCode::OK, Html(page::SIGNED_IN))),
        (_, error) => {
            let description = callback.error_description.unwrap_or_default();
            let error = error.unwrap_or_else(|| "no code".to_owned());
            (
                Err(format!("{description} ({error})").trim().to_owned()),
                (StatusCode::OK, Html(page::REFUSED)),
            )
        }
    };
    let _ = tx.send(answer);
    page
}

/// The pages the browser shows at the end. Fixed text: nothing from the
/// request is echoed.
mod page {
    pub const SIGNED_IN: &str = "<!doctype html><meta charset=utf-8><title>Signed in</title>\
        <h1>Signed in</h1><p>tessera login has what it needs. You can close this tab.</p>";
    pub const REFUSED: &str = "<!doctype html><meta charset=utf-8><title>Not signed in</title>\
        <h1>Not signed in</h1><p>The sign-in was refused; tessera login says why.</p>";
    pub const WRONG_STATE: &str = "<!doctype html><meta charset=utf-8><title>Not this sign-in</title>\
        <h1>Not this sign-in</h1><p>This answer does not belong to the sign-in tessera login \
        is waiting for. Start again from the address it printed.</p>";
    pub const ALREADY_ANSWERED: &str = "<!doctype html><meta charset=utf-8><title>Already answered</title>\
        <h1>Already answered</h1><p>tessera login took one answer already.</p>";
}
