//! A small HTTP client for the admin API. Failures become one line:
//! the server's `error_description` and `error`, or why it was unreachable.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;
use zeroize::Zeroizing;

const DEFAULT_TOKEN_FILE: &str = "keys/admin.token";

pub struct AdminClient {
    http: reqwest::Client,
    base: Url,
    token: Zeroizing<String>,
}

impl AdminClient {
    /// The token comes from --token, else --token-file, else
    /// `keys/admin.token` when it exists (the embedded default's file).
    pub fn new(
        base: &Url,
        token: Option<String>,
        token_file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let token = match (token, token_file) {
            (Some(token), _) => token,
            (None, Some(file)) => std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?,
            (None, None) => std::fs::read_to_string(DEFAULT_TOKEN_FILE).map_err(|_| {
                anyhow!("no admin token: pass --token, set TESSERA_TOKEN, or use --token-file")
            })?,
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AdminClient {
            http,
            base: base.clone(),
            token: Zeroizing::new(token.trim().to_owned()),
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
            let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match (error["error"].as_str(), error["error_description"].as_str()) {
                (Some(code), Some(description)) => bail!("{description} ({code}, HTTP {status})"),
                _ => bail!("the server answered HTTP {status}"),
            }
        }
        // 204 No Content carries no JSON: read it as `null`.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).context("the server's answer is not the expected JSON")
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
