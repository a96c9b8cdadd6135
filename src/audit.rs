//! Audit events: who did what to which target, and whether it worked.
//! Every issuance, use of a long-lived credential, lifecycle change and
//! failed authentication becomes one row of `audit_events`.

use serde::{Deserialize, Serialize};

use crate::store::{AuditStore, NewAuditRecord};

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
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Human => "human",
            ActorKind::Service => "service",
            ActorKind::Workload => "workload",
            ActorKind::System => "system",
            ActorKind::Anonymous => "anonymous",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Actor {
    pub id: Option<String>,
    pub kind: ActorKind,
}

impl Actor {
    pub fn system() -> Self {
        Actor {
            id: None,
            kind: ActorKind::System,
        }
    }

    pub fn anonymous() -> Self {
        Actor {
            id: None,
            kind: ActorKind::Anonymous,
        }
    }

    pub fn service(id: impl Into<String>) -> Self {
        Actor {
            id: Some(id.into()),
            kind: ActorKind::Service,
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

    pub fn into_record(self, occurred_at_ms: i64) -> NewAuditRecord {
        NewAuditRecord {
            occurred_at_ms,
            actor_id: self.actor.id,
            actor_kind: self.actor.kind.as_str().to_owned(),
            action: self.action.to_owned(),
            target: self.target,
            client_id: self.client_id,
            remote_addr: self.remote_addr,
            outcome: match self.outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
            }
            .to_owned(),
            details: self.details,
        }
    }

    /// Hands the event to the batching writer (the token endpoints' path).
    pub async fn record_via(self, writer: &crate::store::BatchWriter) {
        writer
            .append_audit(self.into_record(crate::clock::now_ms()))
            .await;
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
