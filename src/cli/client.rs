//! A small HTTP client for the admin API. Failures become one line:
//! the server's `error_description` and `error`, or why it was unreachable.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use zeroize::Zeroizing;

use super::AdminArgs;
use super::login;
use super::login::store::{Login, Place};
use crate::secret::Secret;

const DEFAULT_TOKEN_FILE: &str = "keys/admin.token";
const DEFAULT_URL: &str = "http://127.0.0.1:8080";

pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Zeroizing<String>,
    /// The `tessera login` the token came from, if it did.
    pub login: Option<(Login, Place)>,
}

/// `--url`, else TESSERA_URL, else the default.
pub fn base_url(given: Option<&Url>) -> anyhow::Result<Url> {
    match (given, std::env::var("TESSERA_URL")) {
        (Some(url), _) => Ok(url.clone()),
        (None, Ok(url)) => Url::parse(&url).context("TESSERA_URL is not a URL"),
        (None, Err(_)) => Ok(Url::parse(DEFAULT_URL).expect("the default URL parses")),
    }
}

impl AdminClient {
    /// A client for the options given, completed from the environment:
    /// TESSERA_URL, TESSERA_TOKEN, TESSERA_TOKEN_FILE. Without any of
    /// these, the token is that of `tessera login` for the server (its
    /// access token, refreshed when due), else `keys/admin.token`. A token
    /// given with --token gets a warning, since other users can read
    /// arguments in `ps`; a token is never sent in clear to a host that is
    /// not loopback unless --insecure says so.
    pub async fn connect(args: &AdminArgs) -> anyhow::Result<Self> {
        let base = base_url(args.url.as_ref())?;
        refuse_cleartext(&base, args.insecure)?;
        if args.token.is_some() {
            eprintln!(
                "warning: --token is visible to other users of this machine (ps); \
                 set TESSERA_TOKEN or use --token-file instead"
            );
        }
        let token = args
            .token
            .clone()
            .or_else(|| std::env::var("TESSERA_TOKEN").ok().map(Secret::new));
        let token_file = args
            .token_file
            .clone()
            .or_else(|| std::env::var_os("TESSERA_TOKEN_FILE").map(PathBuf::from));
        let no_token_given = token.is_none() && token_file.is_none();
        if no_token_given
            && let Some((token, login, place)) = login::session::access_token(&base).await?
        {
            let mut client = Self::with_token(&base, token)?;
            client.login = Some((login, place));
            return Ok(client);
        }
        Self::new(&base, token, token_file)
    }

    /// The token comes from --token, else --token-file, else
    /// `keys/admin.token` when it exists (the embedded default's file).
    pub fn new(
        base: &Url,
        token: Option<Secret>,
        token_file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let token = match (token, token_file) {
            (Some(token), _) => token,
            (None, Some(file)) => std::fs::read_to_string(&file)
                .map(Secret::new)
                .with_context(|| format!("cannot read the token file {}", file.display()))?,
            (None, None) => std::fs::read_to_string(DEFAULT_TOKEN_FILE)
                .map(Secret::new)
                .map_err(|_| {
                    anyhow!(
                        "no admin token: run `tessera login`, pass --token, set TESSERA_TOKEN, \
                         or use --token-file"
                    )
                })?,
        };
        Self::with_token(base, token)
    }

    pub fn with_token(base: &Url, token: Secret) -> anyhow::Result<Self> {
        // No redirects: a redirect could take the token to another scheme
        // or host than the one checked above.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AdminClient {
            http,
            base: base.clone(),
            token: Zeroizing::new(token.expose().trim().to_owned()),
            login: None,
        })
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let request = self.http.get(self.url(path)?).query(query);
        self.send(request).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let request = self.http.post(self.url(path)?).json(body);
        self.send(request).await
    }

    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let request = self.http.patch(self.url(path)?).json(body);
        self.send(request).await
    }

    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let request = self.http.put(self.url(path)?).json(body);
        self.send(request).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let request = self.http.delete(self.url(path)?);
        self.send::<serde_json::Value>(request).await.map(drop)
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("bad server URL {}", self.base))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(self.token.as_str())
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach Tessera at {}: {}", self.base, root_cause(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("the server's answer was cut short")?;
        if !status.is_success() {
            match ErrorBody::parse(&body) {
                Some(ErrorBody {
                    code,
                    description: Some(description),
                }) => bail!("{description} ({code}, HTTP {status})"),
                _ => bail!("the server answered HTTP {status}"),
            }
        }
        // 204 No Content carries no JSON: read it as `null`.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).context("the server's answer is not the expected JSON")
    }
}

/// Plain `http` carries the bearer token readable by anyone on the path:
/// only to loopback, where it never leaves the machine, unless `insecure`.
pub(crate) fn refuse_cleartext(base: &Url, insecure: bool) -> anyhow::Result<()> {
    let loopback = match base.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if base.scheme() == "http" && !loopback && !insecure {
        bail!(
            "refusing to send a token over plain http to {}: use https, \
             or pass --insecure if this network is trusted",
            base.host_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Text from the server made safe to print: control characters (a
/// terminal's escape sequences) become `?`, and it is cut at 300.
/// An RFC 6749 §5.2 error body, made printable.
pub(crate) struct ErrorBody {
    pub code: String,
    pub description: Option<String>,
}

impl ErrorBody {
    /// `None` when the body is not an OAuth error.
    pub(crate) fn parse(body: &[u8]) -> Option<ErrorBody> {
        let error: serde_json::Value = serde_json::from_slice(body).ok()?;
        Some(ErrorBody {
            code: printable(error["error"].as_str()?),
            description: error["error_description"].as_str().map(printable),
        })
    }
}

/// `description (code)`, or the code alone.
impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.description {
            Some(description) => write!(f, "{description} ({})", self.code),
            None => f.write_str(&self.code),
        }
    }
}

pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(300)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_only_to_loopback_unless_insecure() {
        let allowed = |url: &str, insecure| refuse_cleartext(&Url::parse(url).unwrap(), insecure);
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:8080",
            "http://localhost:8080",
            "https://id.example.com",
            "https://10.0.0.1",
        ] {
            assert!(allowed(url, false).is_ok(), "{url}");
        }
        for url in [
            "http://id.example.com",
            "http://10.0.0.1",
            "http://[2001:db8::1]",
        ] {
            assert!(allowed(url, false).is_err(), "{url}");
            assert!(allowed(url, true).is_ok(), "{url} with --insecure");
        }
    }
}
