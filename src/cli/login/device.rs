//! Signing in with the device flow (RFC 8628): the code and the address
//! are printed, the browser opened where there is one, and the token
//! endpoint polled at the server's `interval`, five seconds more for good
//! after each `slow_down` (§3.5), with a spinner on a terminal. A lost
//! connection or an overloaded server (5xx, 429, `temporarily_unavailable`)
//! backs off, never below the interval in force, until the code expires.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use oauth2::{Scope, StandardDeviceAuthorizationResponse};
use url::Url;

use super::oauth::{self, Client, Tokens};
use crate::cli::client::{ErrorBody, printable, root_cause};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The longest wait between polls while the server is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Asks for codes, shows them, and polls until the user answers.
/// `open` gets the address to open in a browser, when one should be.
pub async fn sign_in(
    client: &Client,
    http: &reqwest::Client,
    token_endpoint: &Url,
    scopes: &[String],
    open: impl FnOnce(&str),
) -> anyhow::Result<Tokens> {
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(scopes.iter().cloned().map(Scope::new))
        .request_async(http)
        .await
        .map_err(|e| {
            anyhow!(
                "the server refused the device login: {}",
                oauth::describe(&e)
            )
        })?;
    let uri = details.verification_uri().as_str();
    eprintln!(
        "! First copy your one-time code: {}",
        printable(details.user_code().secret())
    );
    eprintln!(
        "Then open {} in a browser, sign in and approve.",
        printable(uri)
    );
    let complete = details
        .verification_uri_complete()
        .map(|u| u.secret().as_str());
    if let Some(complete) = complete {
        eprintln!("(or open {} to have it filled in)", printable(complete));
    }
    // Only a web address goes to the browser opener, whatever the server sent.
    let address = complete.unwrap_or(uri);
    if Url::parse(address).is_ok_and(|u| matches!(u.scheme(), "https" | "http")) {
        open(address);
    }

    let interval = Arc::new(AtomicU64::new(details.interval().as_secs().max(1)));
    let spinner = Spinner::start(interval.clone(), details.expires_in());
    let polled = poll(
        http,
        token_endpoint,
        client.client_id().as_str(),
        &details,
        &interval,
    )
    .await;
    spinner.stop();
    polled
}

/// §3.4–3.5: polls until the user answers or the code expires.
async fn poll(
    http: &reqwest::Client,
    token_endpoint: &Url,
    client_id: &str,
    details: &StandardDeviceAuthorizationResponse,
    interval: &AtomicU64,
) -> anyhow::Result<Tokens> {
    let deadline = Instant::now() + details.expires_in();
    let current = || Duration::from_secs(interval.load(Ordering::Relaxed));
    let mut wait = current();
    loop {
        tokio::time::sleep(wait).await;
        if Instant::now() >= deadline {
            bail!("the code expired before it was approved: run `tessera login` again");
        }
        wait = current();
        match poll_once(
            http,
            token_endpoint,
            client_id,
            details.device_code().secret(),
        )
        .await
        {
            Polled::Tokens(tokens) => return Ok(*tokens),
            Polled::Pending => {}
            Polled::SlowDown => {
                interval.fetch_add(5, Ordering::Relaxed);
                wait = current();
            }
            Polled::Denied => bail!("the request was denied in the browser"),
            Polled::Expired => {
                bail!("the code expired before it was approved: run `tessera login` again")
            }
            Polled::Unavailable => {
                // Back off, doubling, never below the interval in force.
                wait = (wait * 2).clamp(current(), MAX_BACKOFF.max(current()));
            }
            Polled::Failed(why) => bail!("the device login failed: {why}"),
        }
    }
}

/// What one poll got.
enum Polled {
    Tokens(Box<Tokens>),
    Pending,
    SlowDown,
    Denied,
    Expired,
    /// Not reached, or the server could not answer now: try again later.
    Unavailable,
    Failed(String),
}

async fn poll_once(
    http: &reqwest::Client,
    token_endpoint: &Url,
    client_id: &str,
    device_code: &str,
) -> Polled {
    let sent = http
        .post(token_endpoint.clone())
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", client_id),
        ])
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            tracing::debug!("poll not answered: {}", root_cause(&e));
            return Polled::Unavailable;
        }
    };
    let status = response.status();
    let Ok(body) = response.bytes().await else {
        return Polled::Unavailable;
    };
    if status.is_success() {
        return match serde_json::from_slice::<Tokens>(&body) {
            Ok(tokens) => Polled::Tokens(Box::new(tokens)),
            Err(e) => Polled::Failed(format!("the server's token answer is not OAuth JSON: {e}")),
        };
    }
    let error = ErrorBody::parse(&body);
    match error.as_ref().map(|e| e.code.as_str()) {
        Some("authorization_pending") => Polled::Pending,
        Some("slow_down") => Polled::SlowDown,
        Some("access_denied") => Polled::Denied,
        Some("expired_token") => Polled::Expired,
        Some("temporarily_unavailable") => Polled::Unavailable,
        _ if status.is_server_error() || status.as_u16() == 429 => Polled::Unavailable,
        Some(_) => Polled::Failed(error.map(|e| e.to_string()).unwrap_or_default()),
        None => Polled::Failed(format!("the server answered HTTP {status}")),
    }
}

/// A line on stderr that turns while the CLI waits, when stderr is a
/// terminal: how long it has waited, how often it asks, and how long the
/// code has left.
struct Spinner {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spinner {
    fn start(interval: Arc<AtomicU64>, lifetime: Duration) -> Spinner {
        if !std::io::stderr().is_terminal() {
            eprintln!("Waiting for the approval…");
            return Spinner { task: None };
        }
        let started = Instant::now();
        let task = tokio::spawn(async move {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut tick = tokio::time::interval(Duration::from_millis(120));
            for frame in FRAMES.iter().cycle() {
                tick.tick().await;
                let left = lifetime.saturating_sub(started.elapsed()).as_secs();
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{frame} Waiting for the approval (checking every {} s, code valid {}:{:02} more)",
                    interval.load(Ordering::Relaxed),
                    left / 60,
                    left % 60
                );
                let _ = err.flush();
            }
        });
        Spinner { task: Some(task) }
    }

    fn stop(mut self) {
        self.clear();
    }

    fn clear(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Spinner {
    /// Interrupted (Ctrl-C drops the login future): the line is cleared
    /// so the shell's prompt starts clean.
    fn drop(&mut self) {
        self.clear();
    }
}
