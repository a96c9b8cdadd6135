//! Calls to the server, sorted into transient failures (retried with
//! backoff), a disabled agent, and final errors.

use std::time::Duration;

use anyhow::anyhow;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::client::{printable, root_cause};
use crate::random::random_bytes;

/// The request a failure came from: what an error answer means depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Discover,
    Register,
    Token,
    Rotate,
}

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The network, or a server fault: try again later.
    Transient,
    /// The server no longer accepts this agent.
    Disabled,
    /// Anything else: another try would get the same answer.
    Final,
}

#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: Kind,
    pub(super) error: anyhow::Error,
}

impl Failure {
    pub(super) fn final_(error: anyhow::Error) -> Failure {
        Failure {
            kind: Kind::Final,
            error,
        }
    }
}

/// Sorts an error answer. RFC 6749 §5.2 `invalid_client` from the token
/// endpoint is final: the key is the agent's own, so no transient cause
/// explains it; the agent, its service user or its key was disabled,
/// deleted or expired. RFC 7592 §3: a 401 from the registration's own URI
/// says the registration is gone (or its access token is dead).
pub(super) fn classify(call: Call, status: StatusCode, error: Option<&str>) -> Kind {
    let transient = status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT;
    let unauthorized = status == StatusCode::UNAUTHORIZED;
    match call {
        _ if transient => Kind::Transient,
        Call::Token if error == Some("invalid_client") => Kind::Disabled,
        Call::Rotate if unauthorized => Kind::Disabled,
        _ => Kind::Final,
    }
}

/// Sends `request` and reads a JSON answer. Not reaching the server is
/// transient; an error answer is sorted by [`classify`].
pub(super) async fn send_json<T: DeserializeOwned>(
    call: Call,
    request: reqwest::RequestBuilder,
) -> Result<T, Failure> {
    let transient = |what: &str, e: reqwest::Error| Failure {
        kind: Kind::Transient,
        error: anyhow!("{what}: {}", root_cause(&e)),
    };
    let response = request
        .send()
        .await
        .map_err(|e| transient("cannot reach Tessera", e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| transient("the answer was cut short", e))?;
    if !status.is_success() {
        let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = answer["error"].as_str();
        let error = match (code, answer["error_description"].as_str()) {
            (Some(code), Some(text)) => {
                anyhow!("{} ({}, HTTP {status})", printable(text), printable(code))
            }
            (Some(code), None) => anyhow!("{} (HTTP {status})", printable(code)),
            _ => anyhow!("the server answered HTTP {status}"),
        };
        let kind = classify(call, status, code);
        return Err(Failure { kind, error });
    }
    serde_json::from_slice(&body).map_err(|e| {
        Failure::final_(anyhow!(
            "the server's answer is not the expected JSON: {}",
            json_error(&e)
        ))
    })
}

/// serde's message can quote a value from the body, and the body holds
/// tokens: say which field is missing, else only where the error is.
pub(super) fn json_error(error: &serde_json::Error) -> String {
    let message = error.to_string();
    if message.starts_with("missing field") {
        return message;
    }
    format!("line {} column {}", error.line(), error.column())
}

/// How long to wait between tries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Backoff {
    pub(super) first: Duration,
    pub(super) longest: Duration,
}

impl Backoff {
    /// 1 s, doubling up to a minute.
    pub(super) const DEFAULT: Backoff = Backoff {
        first: Duration::from_secs(1),
        longest: Duration::from_secs(60),
    };
}

/// Between half of `delay` and all of it, at random: agents restarted
/// together then do not all knock at the same moment.
pub(super) fn jittered(delay: Duration) -> Duration {
    let millis = delay.as_millis() as u64;
    let half = millis / 2;
    let spread = u64::from_le_bytes(random_bytes::<8>()) % (millis - half + 1);
    Duration::from_millis(half + spread)
}

/// The backoff of one piece of work across its failed attempts.
#[derive(Debug)]
pub(super) struct Retry {
    pub(super) backoff: Backoff,
    pub(super) delay: Duration,
    pub(super) failed_before: bool,
}

impl Retry {
    pub(super) fn new(backoff: Backoff) -> Retry {
        Retry {
            backoff,
            delay: backoff.first,
            failed_before: false,
        }
    }

    /// After a failed attempt at `what`: how long to wait before the next
    /// one, or, for a failure that is not transient, the error to stop
    /// with. `Disabled` is also logged, as the event it is.
    pub(super) fn after_failure(
        &mut self,
        what: &str,
        failure: Failure,
    ) -> anyhow::Result<Duration> {
        // A transient failure may hide an attempt that reached the server
        // (only its answer was lost), which matters for single-use tokens.
        let hint = if self.failed_before {
            " (an earlier attempt failed on the way and may have reached the server)"
        } else {
            ""
        };
        match failure.kind {
            Kind::Transient => {
                let wait = jittered(self.delay);
                let retry_in = humantime::format_duration(wait);
                tracing::warn!(%retry_in, "{what} failed: {:#}", failure.error);
                self.delay = (self.delay * 2).min(self.backoff.longest);
                self.failed_before = true;
                Ok(wait)
            }
            Kind::Disabled => {
                tracing::error!("disabled: {:#}", failure.error);
                Err(failure.error.context(format!(
                    "Tessera no longer accepts this agent: the agent, its service user or its \
                     key was disabled, deleted or expired{hint}"
                )))
            }
            Kind::Final => Err(failure.error.context(format!("{what} failed{hint}"))),
        }
    }
}

/// Makes `attempt` until it succeeds, retrying transient failures with
/// backoff for as long as it takes.
pub(super) async fn retrying<T, F, Fut>(
    backoff: Backoff,
    what: &str,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retry = Retry::new(backoff);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) => tokio::time::sleep(retry.after_failure(what, failure)?).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::agent_run::http_client;

    #[test]
    fn errors_are_sorted_into_transient_disabled_and_final() {
        use Call::*;
        let cases = [
            (Token, 401, Some("invalid_client"), Kind::Disabled),
            (Token, 400, Some("invalid_client"), Kind::Disabled),
            (Token, 400, Some("invalid_scope"), Kind::Final),
            (Token, 400, Some("unauthorized_client"), Kind::Final),
            (Token, 500, Some("server_error"), Kind::Transient),
            (Token, 503, None, Kind::Transient),
            (Token, 429, None, Kind::Transient),
            (Register, 401, Some("invalid_token"), Kind::Final),
            (Register, 400, Some("invalid_client_metadata"), Kind::Final),
            (Register, 502, None, Kind::Transient),
            (Rotate, 401, Some("invalid_token"), Kind::Disabled),
            (Rotate, 400, Some("invalid_client_metadata"), Kind::Final),
            (Rotate, 504, None, Kind::Transient),
            (Discover, 404, None, Kind::Final),
            (Discover, 302, None, Kind::Final),
        ];
        for (call, status, error, kind) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                classify(call, status, error),
                kind,
                "{call:?} {status} {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let request = http_client().unwrap().get(url);
        let failure = send_json::<Value>(Call::Token, request).await.unwrap_err();
        assert_eq!(failure.kind, Kind::Transient);
    }

    #[tokio::test]
    async fn retries_transient_failures_and_stops_at_a_final_one() {
        let quick = Backoff {
            first: Duration::from_millis(1),
            longest: Duration::from_millis(4),
        };
        let fail = |kind| Failure {
            kind,
            error: anyhow!("HTTP 503"),
        };
        let mut calls = 0;
        let value = retrying(quick, "test", || {
            calls += 1;
            let result = if calls < 4 {
                Err(fail(Kind::Transient))
            } else {
                Ok(calls)
            };
            async move { result }
        })
        .await
        .unwrap();
        assert_eq!(value, 4);
        let mut calls = 0;
        let error = retrying(quick, "registration", || {
            calls += 1;
            let kind = if calls == 1 {
                Kind::Transient
            } else {
                Kind::Final
            };
            async move { Err::<(), _>(fail(kind)) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, 2);
        assert!(format!("{error:#}").starts_with("registration failed (an earlier attempt"));
        let error = retrying(quick, "token request", || async {
            Err::<(), _>(fail(Kind::Disabled))
        })
        .await
        .unwrap_err();
        assert!(format!("{error:#}").starts_with("Tessera no longer accepts this agent"));
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        for _ in 0..200 {
            let wait = jittered(Duration::from_secs(8));
            assert!(
                wait >= Duration::from_secs(4) && wait <= Duration::from_secs(8),
                "{wait:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
