//! Signing in with the device flow (RFC 8628): the code and the address
//! are printed, the browser opened where there is one, and the token
//! endpoint polled at the server's `interval`, five seconds more after
//! each `slow_down` (§3.5), with a spinner on a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use oauth2::{Scope, StandardDeviceAuthorizationResponse};

use super::oauth::{self, Client, Tokens};

/// Asks for codes, shows them, and polls until the user answers.
/// `open` gets the address to open in a browser, when one should be.
pub async fn sign_in(
    client: &Client,
    http: &reqwest::Client,
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
    let code = details.user_code().secret();
    let uri = details.verification_uri().as_str();
    eprintln!("! First copy your one-time code: {code}");
    eprintln!("Then open {uri} in a browser, sign in and approve.");
    if let Some(complete) = details.verification_uri_complete() {
        eprintln!("(or open {} to have it filled in)", complete.secret());
    }
    open(
        details
            .verification_uri_complete()
            .map(|u| u.secret().as_str())
            .unwrap_or(uri),
    );

    let interval = Arc::new(AtomicU64::new(details.interval().as_secs()));
    let spinner = Spinner::start(interval.clone(), details.expires_in());
    let polled = client
        .exchange_device_access_token(&details)
        .request_async(
            http,
            |wait: Duration| {
                // Each wait is the interval in force: the server's, plus
                // 5 s per slow_down.
                interval.store(wait.as_secs(), Ordering::Relaxed);
                tokio::time::sleep(wait)
            },
            None,
        )
        .await;
    spinner.stop();
    polled.map_err(|e| match &e {
        oauth2::RequestTokenError::ServerResponse(response) => match response.error() {
            oauth2::DeviceCodeErrorResponseType::AccessDenied => {
                anyhow!("the request was denied in the browser")
            }
            oauth2::DeviceCodeErrorResponseType::ExpiredToken => {
                anyhow!("the code expired before it was approved: run `tessera login` again")
            }
            _ => anyhow!("the device login failed: {}", oauth::describe(&e)),
        },
        _ => anyhow!("the device login failed: {}", oauth::describe(&e)),
    })
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
