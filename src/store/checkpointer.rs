//! SQLite's WAL checkpoints, on a thread and a connection of their own.
//!
//! In WAL mode a commit appends pages to the `-wal` file; a checkpoint
//! copies them back into the database file and syncs both. SQLite runs it
//! by default inside the commit that pushes the WAL past 1,000 pages, so
//! the batch writer stopped, every few dozen milliseconds under load, for
//! a copy and two fsyncs while every request waiting for a `jti` verdict
//! waited with it (the `private_key_jwt` benchmark left a fifth of the
//! cores idle at 7 ms p50). SQLite's own advice is to turn automatic
//! checkpoints off and run them from another thread
//! (<https://sqlite.org/wal.html#automatic_checkpoint>): a `PASSIVE`
//! checkpoint takes no write lock, so commits go on while it copies.
//!
//! Every database call of the store pokes this thread
//! ([`Checkpoints::poke`]; reads too, which is cheap and lets a round that
//! a reader cut short finish later); it waits a moment so that one
//! checkpoint covers many commits, and checkpoints. An idle server is never
//! woken. Connections keep a high automatic threshold
//! ([`super::connection::SQLITE_WAL_BACKSTOP_PAGES`]) as a backstop, should
//! this thread fall behind or fail.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Duration;

use diesel::sql_types::Integer;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

/// How long after a poke the checkpoint runs: commits meanwhile are
/// copied by the same checkpoint.
const GATHER: Duration = Duration::from_millis(10);
/// Rounds in a row that may be cut short (another checkpoint running, a
/// reader on an older snapshot) before the thread waits for a new poke.
const RETRIES: u32 = 100;

/// The handle database calls poke. The thread ends when the last handle
/// is gone.
#[derive(Clone)]
pub(crate) struct Checkpoints {
    poke: SyncSender<()>,
}

impl Checkpoints {
    /// Starts the checkpoint thread for the SQLite file at `path`.
    pub(crate) fn spawn(path: PathBuf) -> std::io::Result<Checkpoints> {
        // One poke pending is enough: it means "there may be pages to copy".
        let (poke, pokes) = sync_channel(1);
        std::thread::Builder::new()
            .name("tessera-checkpoint".into())
            .spawn(move || run(&path, &pokes))?;
        Ok(Checkpoints { poke })
    }

    /// Says that something may have been committed; never blocks.
    pub(crate) fn poke(&self) {
        let _ = self.poke.try_send(());
    }
}

/// `PRAGMA wal_checkpoint`'s one row.
#[derive(QueryableByName)]
struct Outcome {
    /// 1 when another connection's checkpoint held the lock.
    #[diesel(sql_type = Integer)]
    busy: i32,
    /// Frames in the WAL, and how many of them are in the database file.
    #[diesel(sql_type = Integer)]
    log: i32,
    #[diesel(sql_type = Integer)]
    checkpointed: i32,
}

fn run(path: &Path, pokes: &Receiver<()>) {
    let mut conn = None;
    let mut failures = 0u64;
    while pokes.recv().is_ok() {
        let mut retries = 0;
        loop {
            std::thread::sleep(GATHER);
            if let Err(TryRecvError::Disconnected) = pokes.try_recv() {
                // Every handle dropped: the store is gone.
                return;
            }
            match checkpoint(path, &mut conn) {
                // A round cut short is tried again without waiting for a
                // poke: an idle server would not send one.
                Ok(outcome) if outcome.busy != 0 || outcome.checkpointed < outcome.log => {
                    retries += 1;
                    if retries >= RETRIES {
                        break;
                    }
                }
                Ok(_) => break,
                Err(error) => {
                    // The backstop still runs; the connection is opened
                    // again at the next poke.
                    conn = None;
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::warn!(%error, failures, "SQLite checkpoint failed");
                    }
                    break;
                }
            }
        }
    }
}

fn checkpoint(path: &Path, conn: &mut Option<SqliteConnection>) -> Result<Outcome, String> {
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(
            SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| e.to_string())?,
        ),
    };
    // PASSIVE takes no lock a writer waits for, and never waits itself.
    diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
        .get_result::<Outcome>(conn)
        .map_err(|e| e.to_string())
}
