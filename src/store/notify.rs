//! Changes made by any replica, heard by every other: PostgreSQL
//! `LISTEN`/`NOTIFY`. Triggers on the cached tables announce each change on
//! commit (migration `2026-12-01-000040_change_notifications`); one
//! dedicated connection per replica listens and passes the changes on.
//!
//! diesel has no asynchronous `LISTEN`, so the listening connection lives on
//! its own thread and polls libpq's input buffer every few milliseconds (no
//! round trip to the server). Anything heard while it was disconnected is
//! lost: each (re)connection therefore begins with [`Change::Missed`], and
//! the caches' TTL bounds what is stale until then.

use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use tokio::sync::mpsc;

/// One thing another replica (or this one) changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Client(String),
    ServiceUser(String),
    /// Every client: the notification did not name one.
    AllClients,
    /// Every service user: the notification did not name one.
    AllServiceUsers,
    /// A personal, machine or bootstrap token changed (by lookup prefix).
    Token(String),
    /// Every token: the notification did not name one.
    AllTokens,
    /// A signing key was added or changed.
    Keys,
    /// A trusted issuer or a trust policy was added, changed or removed
    /// (CI federation): every cached trust is stale.
    Trust,
    /// The listener has just (re)connected: changes made meanwhile were not
    /// heard, so nothing cached can be trusted.
    Missed,
}

impl Change {
    /// Reads a trigger's payload, `kind:id` or `kind`.
    fn parse(payload: &str) -> Option<Change> {
        let (kind, id) = match payload.split_once(':') {
            Some((kind, id)) => (kind, Some(id.to_owned())),
            None => (payload, None),
        };
        Some(match (kind, id) {
            ("client", Some(id)) => Change::Client(id),
            ("client", None) => Change::AllClients,
            ("service_user", Some(id)) => Change::ServiceUser(id),
            ("service_user", None) => Change::AllServiceUsers,
            ("token", Some(lookup)) => Change::Token(lookup),
            ("token", None) => Change::AllTokens,
            ("keys", _) => Change::Keys,
            ("trust", _) => Change::Trust,
            _ => return None,
        })
    }
}

/// How often the idle connection's input is read: well under the 100 ms a
/// change may take to reach every replica.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// How often the connection is checked with a round trip, so that a server
/// that went away silently is noticed.
const CHECK_INTERVAL: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Shown in `pg_stat_activity` followed by the schema, so an operator can
/// tell this connection from the pool's.
pub const APPLICATION_NAME: &str = "tessera listener";

/// Starts the listening thread; it stops once the receiver is dropped.
pub(super) fn listen(url: String, max_backoff: Duration) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(1024);
    thread::Builder::new()
        .name("tessera-listen".into())
        .spawn(move || run(&url, &tx, max_backoff))
        .expect("spawn the change listener thread");
    rx
}

fn run(url: &str, tx: &mpsc::Sender<Change>, max_backoff: Duration) {
    let mut backoff = FIRST_BACKOFF;
    let mut reported = false;
    while !tx.is_closed() {
        let outcome = subscribe(url).and_then(|conn| {
            tracing::debug!("listening for changes made by other replicas");
            backoff = FIRST_BACKOFF;
            reported = false;
            follow(conn, tx)
        });
        match outcome {
            Ok(()) => return,
            Err(e) if !reported => {
                tracing::warn!(
                    error = %e,
                    "not hearing other replicas' changes; caches fall back to their TTL; retrying"
                );
                reported = true;
            }
            Err(_) => {}
        }
        thread::sleep(backoff);
        backoff = (backoff * 2).min(max_backoff);
    }
}

#[derive(QueryableByName)]
struct Channel {
    #[diesel(sql_type = Text)]
    channel: String,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn subscribe(url: &str) -> Result<PgConnection, Failure> {
    let mut conn = PgConnection::establish(&super::connection::with_defaults(url))?;
    conn.batch_execute(&format!(
        "SELECT set_config('application_name', '{APPLICATION_NAME} ' || current_schema(), false)"
    ))?;
    let Channel { channel } =
        diesel::sql_query("SELECT tessera_change_channel(current_schema()) AS channel")
            .get_result(&mut conn)?;
    // The name is `tessera_changes_` and an MD5 in hex: nothing to escape.
    conn.batch_execute(&format!("LISTEN \"{channel}\""))?;
    Ok(conn)
}

/// Passes notifications on until the connection fails (`Err`) or nobody
/// listens any more (`Ok`).
fn follow(mut conn: PgConnection, tx: &mpsc::Sender<Change>) -> Result<(), Failure> {
    if tx.blocking_send(Change::Missed).is_err() {
        return Ok(());
    }
    let mut checked = Instant::now();
    loop {
        for notification in conn.notifications_iter() {
            let notification = notification?;
            let Some(change) = Change::parse(&notification.payload) else {
                continue;
            };
            if tx.blocking_send(change).is_err() {
                return Ok(());
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
        if checked.elapsed() >= CHECK_INTERVAL {
            conn.batch_execute("SELECT 1")?;
            checked = Instant::now();
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_what_changed() {
        assert_eq!(
            Change::parse("client:c1"),
            Some(Change::Client("c1".into()))
        );
        assert_eq!(
            Change::parse("client:a:b"),
            Some(Change::Client("a:b".into()))
        );
        assert_eq!(Change::parse("client"), Some(Change::AllClients));
        assert_eq!(
            Change::parse("service_user:u1"),
            Some(Change::ServiceUser("u1".into()))
        );
        assert_eq!(Change::parse("service_user"), Some(Change::AllServiceUsers));
        assert_eq!(Change::parse("keys"), Some(Change::Keys));
        assert_eq!(Change::parse("trust"), Some(Change::Trust));
        assert_eq!(Change::parse("other:x"), None);
    }
}
