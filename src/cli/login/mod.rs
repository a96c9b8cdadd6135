//! `tessera login`, `logout` and the login behind the admin commands: a
//! person signs in once, in a browser, and later commands act as them
//! with short-lived access tokens, as `gh auth login` does.

mod device;
mod oauth;
pub mod session;
pub mod store;
mod web;

use std::process::{Command, Stdio};

use anyhow::Context;
use clap::Args;
use url::Url;

use store::{Login, Place};

/// The scopes asked for unless --scope says otherwise.
const DEFAULT_SCOPE: &str = "openid offline_access admin:read tokens:self";

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Base URL of the Tessera server [env: TESSERA_URL] [default: http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<Url>,
    /// The public client to sign in with.
    #[arg(long, default_value = "tessera-cli")]
    pub client_id: String,
    /// The scopes to ask for.
    #[arg(long, default_value = DEFAULT_SCOPE)]
    pub scope: String,
    /// Also ask for `admin` (administrators only: the server grants it to
    /// nobody else).
    #[arg(long)]
    pub admin: bool,
    /// Sign in with a code typed into a browser anywhere (RFC 8628): the
    /// way over SSH or without a display.
    #[arg(long, conflicts_with = "web")]
    pub device: bool,
    /// Sign in through a browser on this machine (PKCE with a loopback
    /// redirect, RFC 8252).
    #[arg(long)]
    pub web: bool,
    /// Print the address instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// Talk to a host that is not loopback over plain http.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// Base URL of the Tessera server [env: TESSERA_URL] [default: http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<Url>,
}

/// `--url`, else TESSERA_URL, else the default.
pub fn server_url(given: Option<&Url>) -> anyhow::Result<Url> {
    super::client::base_url(given)
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let url = server_url(args.url.as_ref())?;
    let http = oauth::http()?;
    let endpoints = oauth::discover(&http, &url, args.insecure).await?;
    let client = oauth::client(&args.client_id, &endpoints);
    let mut scopes: Vec<String> = args.scope.split_whitespace().map(str::to_owned).collect();
    if args.admin && !scopes.iter().any(|s| s == "admin") {
        scopes.push("admin".to_owned());
    }
    let use_browser = !args.no_browser && browser_available();
    let by_web = args.web || (!args.device && use_browser);
    let signing_in = async {
        if by_web {
            web::sign_in(&client, &http, &scopes, |address| {
                if use_browser && open_browser(address.as_str()) {
                    eprintln!("Opened your browser to sign in. If it did not open, visit:");
                } else {
                    eprintln!("Open this address in a browser on this machine to sign in:");
                }
                eprintln!("  {address}");
                eprintln!("Waiting for the browser…");
            })
            .await
        } else {
            device::sign_in(
                &client,
                &http,
                &endpoints.token_endpoint,
                &scopes,
                |address| {
                    if use_browser && open_browser(address) {
                        eprintln!("Opened your browser.");
                    }
                },
            )
            .await
        }
    };
    // Ctrl-C: the flow is dropped (the spinner clears its line, the
    // listener closes) and nothing is stored.
    let tokens = tokio::select! {
        tokens = signing_in => tokens?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\nLogin cancelled; nothing was stored.");
            std::process::exit(130);
        }
    };
    let login = oauth::login_from(
        &url,
        &args.client_id,
        &endpoints.token_endpoint,
        endpoints.revocation_endpoint.as_ref(),
        &tokens,
    )?;
    let me = whoami_with(&url, &login).await?;
    let _lock = store::lock(&url).await?;
    let (previous, _) = store::load_everywhere(&url).await.unwrap_or_default();
    let (place, passed_over) = store::save(&login).await?;
    // The logins this one replaces are of no more use: ended at the
    // server, and removed wherever the new one is not.
    for (old, old_place) in previous {
        let _ = oauth::revoke(&http, &old).await;
        if old_place != place {
            let _ = store::delete(&url, &old_place).await;
        }
    }
    if let Some(reason) = passed_over {
        eprintln!("No OS keyring answered ({reason}): the login is stored in {place}.");
    } else {
        eprintln!("The login is stored in {place}.");
    }
    eprintln!(
        "✓ Logged in to {} as {}",
        url.as_str().trim_end_matches('/'),
        me["name"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let url = server_url(args.url.as_ref())?;
    let shown = url.as_str().trim_end_matches('/').to_owned();
    let _lock = store::lock(&url).await?;
    let (logins, keyring_unreadable) = store::load_everywhere(&url).await?;
    if let Some(why) = &keyring_unreadable {
        eprintln!("warning: the OS keyring could not be read ({why}): a login kept there stays");
    }
    if logins.is_empty() {
        eprintln!("Not logged in to {shown}.");
        return Ok(());
    }
    let http = oauth::http()?;
    let mut failed = None;
    for (login, place) in logins {
        let revoked = oauth::revoke(&http, &login).await;
        store::delete(&url, &place).await?;
        match revoked {
            Ok(()) => {
                eprintln!("✓ Logged out of {shown}: the login is revoked and removed from {place}.")
            }
            Err(e) => {
                failed = Some(e.context(format!(
                    "the login was removed from {place}, but the server did not revoke it: \
                     it stays valid until it expires"
                )))
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The identity behind a login's access token (`GET /admin/v1/whoami`).
async fn whoami_with(url: &Url, login: &Login) -> anyhow::Result<serde_json::Value> {
    let client = super::AdminClient::with_token(url, login.access_token.clone())?;
    client
        .get("/admin/v1/whoami", &[])
        .await
        .context("signed in, but the token does not work with the admin API")
}

/// What `tessera whoami` adds for a login: where it is kept and when it
/// ends.
pub fn describe(login: &Login, place: &Place) -> serde_json::Value {
    let time = |seconds: i64| {
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    };
    serde_json::json!({
        "url": login.url.as_str().trim_end_matches('/'),
        "client_id": login.client_id,
        "scope": login.scope,
        "access_token_expires_at": time(login.access_expires_at),
        "session_ends_at": login.session_ends_at.and_then(time),
        "stored_in": place.to_string(),
    })
}

/// Whether a browser can be opened here: not over SSH, and on Linux and
/// the BSDs only with a display (or a $BROWSER to run).
fn browser_available() -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("BROWSER") {
        return true;
    }
    if set("SSH_CONNECTION") || set("SSH_TTY") {
        return false;
    }
    cfg!(any(target_os = "macos", windows)) || set("DISPLAY") || set("WAYLAND_DISPLAY")
}

/// Opens `address` in the user's browser: $BROWSER, else the platform's
/// opener. Whether it started.
fn open_browser(address: &str) -> bool {
    let mut command = match std::env::var("BROWSER").ok().filter(|b| !b.is_empty()) {
        Some(browser) => Command::new(browser),
        None if cfg!(target_os = "macos") => Command::new("open"),
        None if cfg!(windows) => {
            let mut command = Command::new("rundll32");
            command.arg("url.dll,FileProtocolHandler");
            command
        }
        None => Command::new("xdg-open"),
    };
    command
        .arg(address)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .is_ok()
}
