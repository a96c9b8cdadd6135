//! Uses of personal and machine tokens, counted in memory and written at
//! most once per token per `personal_tokens.usage_flush_interval`: the
//! token's `last_used_at`, `last_used_ip` and `use_count`, and one
//! aggregated `token.used` audit event naming the token as the actor.
//! A use is a read; writing on every one would make every API call a
//! write on the one SQLite writer.
//!
//! Memory is bounded by the number of live tokens: only a token whose
//! digest matched is counted.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use crate::audit::{Actor, ActorKind, Event, Outcome};
use crate::clock;
use crate::oauth::Core;
use crate::oauth::bearer::Inspected;
use crate::store::{PersonalTokenStore, TokenUses};

#[derive(Debug, Default)]
pub struct UsageCounter {
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    kind: ActorKind,
    owner: String,
    env: String,
    count: i64,
    first_at: i64,
    last_at: i64,
    last_ip: Option<String>,
}

impl UsageCounter {
    /// Counts one use of a verified personal or machine token.
    pub fn count(&self, inspected: &Inspected, remote: Option<&str>) {
        let Some(kind) = inspected.principal.token_kind else {
            return;
        };
        let now = clock::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending
            .entry(inspected.record.id.clone())
            .or_insert_with(|| Pending {
                kind,
                owner: inspected.principal.id.clone(),
                env: inspected.record.env.clone(),
                count: 0,
                first_at: now,
                last_at: now,
                last_ip: None,
            });
        entry.count += 1;
        entry.last_at = now;
        if let Some(ip) = remote {
            entry.last_ip = Some(crate::audit::bounded(ip, crate::audit::MAX_FIELD_CHARS));
        }
    }

    /// Writes what was counted since the last flush. On failure the counts
    /// are put back, to be written with the next flush.
    pub async fn flush(&self, core: &Core) {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return;
        }
        let uses = taken
            .iter()
            .map(|(id, p)| TokenUses {
                id: id.clone(),
                count: p.count,
                last_at: p.last_at,
                last_ip: p.last_ip.clone(),
            })
            .collect();
        if let Err(e) = core.store.record_token_uses(uses).await {
            tracing::warn!(error = %e, "could not record token uses; keeping them for the next flush");
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (id, old) in taken {
                match pending.get_mut(&id) {
                    Some(new) => {
                        new.count += old.count;
                        new.first_at = old.first_at;
                    }
                    None => {
                        pending.insert(id, old);
                    }
                }
            }
            return;
        }
        for (id, used) in taken {
            let event = Event::new(
                Actor::token(id.clone(), used.kind, used.owner),
                "token.used",
                Outcome::Success,
            )
            .target(id)
            .remote(used.last_ip)
            .details(json!({
                "count": used.count,
                "env": used.env,
                "first_at": used.first_at,
                "last_at": used.last_at,
            }));
            event.record_via(&core.writer).await;
        }
    }
}
