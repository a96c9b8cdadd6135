//! Audit events: who did what to which target, and whether it worked.
//! Every issuance, use of a long-lived credential, lifecycle change and
//! failed authentication becomes one row of `audit_events`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::store::{AuditStore, NewAuditRecord};

/// The longest identifier, target or address stored, in characters.
pub const MAX_FIELD_CHARS: usize = 256;
/// The longest `details` document stored, in bytes.
pub const MAX_DETAILS_BYTES: usize = 4096;

/// `value` with control characters (NUL among them) escaped as `\u{..}`
/// and cut to `max` characters, marked with `…` when cut: text every
/// backend stores.
pub fn bounded(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max));
    for (count, c) in value.chars().enumerate() {
        if count == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// As [`bounded`], without a copy in the usual case of a short clean value
/// (the issuance path builds several per token).
fn bounded_owned(value: String, max: usize) -> String {
    if value.len() <= max && !value.chars().any(char::is_control) {
        value
    } else {
        bounded(&value, max)
    }
}

/// JSON serialisation escapes control characters already; a document
/// too long to keep is replaced by a valid one holding its start.
fn bounded_details(details: String) -> String {
    if details.len() <= MAX_DETAILS_BYTES {
        return details;
    }
    let start = bounded(&details, MAX_DETAILS_BYTES / 4);
    serde_json::json!({ "truncated": start }).to_string()
}

/// What kind of identity acted (DESIGN.md: human, service user, workload),
/// plus Tessera itself and callers that could not be identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    Human,
    Service,
    Workload,
    System,
    Anonymous,
    /// A personal access token, acting as itself (its owner alongside).
    Pat,
    /// A machine token, acting as itself (its owner alongside).
    Machine,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Human => "human",
            ActorKind::Service => "service",
            ActorKind::Workload => "workload",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
            ActorKind::Pat => "pat",
            ActorKind::Machine => "machine",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<String>,
    pub kind: ActorKind,
    /// For a credential acting as itself (`Pat`, `Machine`): its owner.
    pub owner: Option<String>,
}

impl Actor {
    pub fn new(id: impl Into<String>, kind: ActorKind) -> Self {
        Actor {
            id: Some(id.into()),
            kind,
            owner: None,
        }
    }

    pub fn system() -> Self {
        Actor {
            id: None,
            kind: ActorKind::System,
            owner: None,
        }
    }

    pub fn anonymous() -> Self {
        Actor {
            id: None,
            kind: ActorKind::Anonymous,
            owner: None,
        }
    }

    pub fn service(id: impl Into<String>) -> Self {
        Self::new(id, ActorKind::Service)
    }

    /// A personal or machine token acting as itself, with its owner.
    pub fn token(id: impl Into<String>, kind: ActorKind, owner: impl Into<String>) -> Self {
        Actor {
            owner: Some(owner.into()),
            ..Self::new(id, kind)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// One event, built fluently and then recorded.
#[derive(Debug, Clone)]
pub struct Event {
    actor: Actor,
    action: &'static str,
    outcome: Outcome,
    target: Option<String>,
    client_id: Option<String>,
    remote_addr: Option<String>,
    /// Serialised when set: the row stores JSON text, so no
    /// `serde_json::Value` tree is built and walked per event.
    details: String,
}

impl Event {
    pub fn new(actor: Actor, action: &'static str, outcome: Outcome) -> Self {
        Event {
            actor,
            action,
            outcome,
            target: None,
            client_id: None,
            remote_addr: None,
            details: "{}".to_owned(),
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn remote(mut self, remote_addr: Option<String>) -> Self {
        self.remote_addr = remote_addr;
        self
    }

    /// Details must never hold a secret: callers pass identifiers only.
    pub fn details(mut self, details: impl Serialize) -> Self {
        // Serialising plain data to a String cannot fail; `{}` would hide
        // a bug, not a client's input.
        self.details = serde_json::to_string(&details).unwrap_or_else(|_| "{}".to_owned());
        self
    }

    /// The row to store. Values that came from a request are bounded and
    /// escaped here, once for every path to the log, so that no request
    /// can hand the database a row it refuses.
    pub fn into_record(self, occurred_at_ms: i64) -> NewAuditRecord {
        let field = |value: Option<String>| value.map(|v| bounded_owned(v, MAX_FIELD_CHARS));
        NewAuditRecord {
            occurred_at_ms,
            actor_id: field(self.actor.id),
            actor_kind: self.actor.kind.as_str().to_owned(),
            action: self.action.to_owned(),
            target: field(self.target),
            client_id: field(self.client_id),
            remote_addr: field(self.remote_addr),
            outcome: match self.outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            }
            .to_owned(),
            details: bounded_details(self.details),
            actor_owner: field(self.actor.owner),
        }
    }

    /// Hands the event to the batching writer (the token endpoints' path).
    /// Best effort for events that do not gate an answer: when the queue
    /// stays full past `audit.queue_wait`, the loss is counted and logged.
    pub async fn record_via(self, writer: &crate::store::BatchWriter) {
        writer
            .append_audit_or_count(self.into_record(crate::clock::now_ms()))
            .await;
    }

    /// Hands the event to the batching writer, or says why it could not:
    /// what an issuance uses, so that no token leaves unaudited.
    pub async fn record_before_answering(
        self,
        writer: &crate::store::BatchWriter,
    ) -> Result<(), crate::store::StoreError> {
        writer
            .append_audit(self.into_record(crate::clock::now_ms()))
            .await
    }

    /// Appends the event on its own. An audit write that fails is logged
    /// loudly but does not turn the caller's answer into an error.
    pub async fn record(self, store: &impl AuditStore) {
        let action = self.action;
        if let Err(e) = store
            .append_audit(self.into_record(crate::clock::now_ms()))
            .await
        {
            tracing::error!(action, error = %e, "could not append an audit event");
        }
    }
}

/// Per-source sampling of a noisy failure event (a failed bearer
/// authentication): the first `SOURCE_BURST` from one address in each
/// `SOURCE_WINDOW` are recorded; the rest are counted, and the count goes
/// into the source's next recorded event as `suppressed`. A loop of bad
/// tokens thus costs the audit log a few rows a minute, not one a request.
#[derive(Debug, Default)]
pub struct SourceThrottle {
    sources: Mutex<HashMap<String, SourceWindow>>,
}

#[derive(Debug)]
struct SourceWindow {
    started: Instant,
    recorded: u32,
    suppressed: u64,
}

const SOURCE_BURST: u32 = 10;
const SOURCE_WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at once; past that, stale windows are dropped, and if
/// all are current, new sources share one window.
const MAX_SOURCES: usize = 10_000;

impl SourceThrottle {
    /// The details of a failure event from `source`, with the count of its
    /// failures skipped before, when one is to be recorded; `None` to skip.
    pub fn failure_details(&self, source: Option<&str>, reason: &str) -> Option<serde_json::Value> {
        self.admit(source).map(|suppressed| match suppressed {
            0 => serde_json::json!({ "reason": reason }),
            n => serde_json::json!({ "reason": reason, "suppressed": n }),
        })
    }

    /// `Some(suppressed)` when an event from `source` is to be recorded,
    /// with the number of its events skipped before; `None` to skip it.
    pub fn admit(&self, source: Option<&str>) -> Option<u64> {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut key = source_key(source);
        if !sources.contains_key(&key) && sources.len() >= MAX_SOURCES {
            sources.retain(|_, w| now.duration_since(w.started) < SOURCE_WINDOW);
            if sources.len() >= MAX_SOURCES {
                key = "*".to_owned();
            }
        }
        let window = sources.entry(key).or_insert(SourceWindow {
            started: now,
            recorded: 0,
            suppressed: 0,
        });
        if now.duration_since(window.started) >= SOURCE_WINDOW {
            window.started = now;
            window.recorded = 0;
        }
        if window.recorded < SOURCE_BURST {
            window.recorded += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}

/// An IPv4 address, or an IPv6 address's /64 (one host's usual share);
/// anything else, bounded, as it is.
fn source_key(source: Option<&str>) -> String {
    match source.map(|s| s.parse::<IpAddr>()) {
        Some(Ok(ip)) => match host_of(ip) {
            IpAddr::V6(block) => format!("{block}/64"),
            IpAddr::V4(v4) => v4.to_string(),
        },
        Some(Err(_)) => bounded(source.unwrap_or_default(), 64),
        None => String::new(),
    }
}

/// The address one host counts as: an IPv4 address (an IPv4-mapped IPv6
/// peer included) as it is, an IPv6 address as its /64, the block one
/// subscriber is usually given. Shared by the audit's sampling and the
/// per-address connection share.
pub fn host_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_sources_are_throttled_as_ipv4() {
        assert_eq!(source_key(Some("::ffff:127.0.0.1")), "127.0.0.1");
        assert_ne!(
            source_key(Some("::ffff:127.0.0.1")),
            source_key(Some("::ffff:127.0.0.2"))
        );
    }

    #[test]
    fn bounded_escapes_control_characters_and_cuts() {
        assert_eq!(bounded("a\0b", 10), "a\\u{0}b");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("é\n", 5), "é\\u{a}");
    }

    #[test]
    fn long_details_stay_valid_json() {
        let long = serde_json::json!({ "reason": "x".repeat(10_000) }).to_string();
        let kept = bounded_details(long);
        assert!(kept.len() <= MAX_DETAILS_BYTES + 16, "{}", kept.len());
        serde_json::from_str::<serde_json::Value>(&kept).unwrap();
    }

    #[test]
    fn throttle_records_a_burst_per_source_then_counts() {
        let throttle = SourceThrottle::default();
        for _ in 0..SOURCE_BURST {
            assert_eq!(throttle.admit(Some("192.0.2.1")), Some(0));
        }
        assert_eq!(throttle.admit(Some("192.0.2.1")), None);
        assert_eq!(throttle.admit(Some("192.0.2.2")), Some(0), "another source");
        // One IPv6 host's /64 is one source.
        for i in 0..SOURCE_BURST {
            assert!(throttle.admit(Some(&format!("2001:db8::{i}"))).is_some());
        }
        assert_eq!(throttle.admit(Some("2001:db8::ffff")), None);
    }
}
