//! Who gets a connection slot when they are scarce.
//!
//! - One address holds at most `server.max_connections_per_address`
//!   connections; more are closed as soon as they are accepted, so one host
//!   cannot take the whole of `server.max_connections`. Trusted proxies are
//!   exempt (every client behind them shares their address). IPv6 peers
//!   count per /64, the block one subscriber is usually given.
//! - When every slot is taken and a new connection waits, one connection
//!   is asked to close for it ([`Shedding`]): a stalled request head
//!   first, else one idle between requests. A keep-alive connection costs
//!   its client one reconnect, while a waiting client would otherwise get
//!   nothing until the idle timeout. A request being handled, or its
//!   response being written, is never shed.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use ipnet::IpNet;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;

/// Counts open connections per address (per /64 for IPv6).
pub struct PerAddress {
    limit: usize,
    exempt: Vec<IpNet>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Held while a connection is open; releases its count when dropped.
pub struct AddressSlot {
    table: Arc<PerAddress>,
    key: Option<IpAddr>,
}

impl PerAddress {
    pub fn new(limit: usize, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(PerAddress {
            limit,
            exempt,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `peer` is a trusted proxy (exempt from shares and shedding).
    pub fn is_exempt(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.exempt.iter().any(|net| net.contains(&peer))
    }

    /// A slot for a connection from `peer`, or `None` if that address
    /// already holds its share.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<AddressSlot> {
        let peer = peer.to_canonical();
        if self.is_exempt(peer) {
            return Some(AddressSlot {
                table: self.clone(),
                key: None,
            });
        }
        let key = crate::audit::host_of(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            table: self.clone(),
            key: Some(key),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.open.lock().unwrap().len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            // Addresses with no connection are forgotten: the table never
            // holds more entries than there are open connections.
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

/// Which connections are asked to close when a new one waits at the
/// cap, one per wait: first a connection whose request head has been
/// arriving for a while (a slow or stalled client, as slowloris keeps
/// them), then one idle between requests, each the longest waiting first
/// (tokio's `Notify::notify_one` wakes its waiters in order). Trusted
/// proxies' connections never wait here: a balancer's upstream pool is
/// not cut.
#[derive(Default)]
pub struct Shedding {
    stalled: Queue,
    idle: Queue,
}

/// Which queue a connection waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sheddable {
    /// Its request head has been arriving for [`STALLED_AFTER`] or more.
    Stalled,
    /// Between requests.
    Idle,
}

/// How long a request head may take before its connection counts as
/// stalled (ahead of idle ones when room is needed). Clients send a head in
/// one write; two seconds is many round trips.
pub const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    notify: Arc<Notify>,
    waiting: Arc<AtomicUsize>,
}

/// A connection's place in a queue, held while it is in that state.
pub struct Ticket {
    pub kind: Sheddable,
    asked: Pin<Box<OwnedNotified>>,
    waiting: Arc<AtomicUsize>,
}

impl Ticket {
    /// Whether this connection has been asked to close.
    pub fn asked(&mut self, cx: &mut Context<'_>) -> bool {
        self.asked.as_mut().poll(cx).is_ready()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shedding {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Asks one connection to close, stalled ones first; none if none
    /// waits (so no stray permit is left for a connection that goes idle
    /// later).
    pub fn shed_one(&self) {
        for queue in [&self.stalled, &self.idle] {
            if queue.waiting.load(Ordering::Relaxed) > 0 {
                queue.notify.notify_one();
                return;
            }
        }
    }

    /// A place in the `kind` queue.
    pub fn ticket(&self, kind: Sheddable) -> Ticket {
        let queue = match kind {
            Sheddable::Stalled => &self.stalled,
            Sheddable::Idle => &self.idle,
        };
        queue.waiting.fetch_add(1, Ordering::Relaxed);
        Ticket {
            kind,
            asked: Box::pin(queue.notify.clone().notified_owned()),
            waiting: queue.waiting.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_gets_its_share_and_no_more() {
        let table = PerAddress::new(2, vec![]);
        let a = table.admit(ip("192.0.2.1")).unwrap();
        let _b = table.admit(ip("192.0.2.1")).unwrap();
        assert!(table.admit(ip("192.0.2.1")).is_none());
        // An IPv4-mapped peer is the same address.
        assert!(table.admit(ip("::ffff:192.0.2.1")).is_none());
        assert!(table.admit(ip("192.0.2.2")).is_some());
        drop(a);
        assert!(table.admit(ip("192.0.2.1")).is_some());
    }

    #[test]
    fn ipv6_counts_per_slash_64() {
        let table = PerAddress::new(1, vec![]);
        let _a = table.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(table.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(table.admit(ip("2001:db8:1:3::1")).is_some());
    }

    #[test]
    fn trusted_proxies_are_exempt_and_untracked() {
        let table = PerAddress::new(1, vec!["10.0.0.0/8".parse().unwrap()]);
        let slots: Vec<_> = (0..5)
            .map(|_| table.admit(ip("10.1.2.3")).unwrap())
            .collect();
        assert_eq!(table.tracked(), 0);
        drop(slots);
    }

    #[test]
    fn the_table_forgets_closed_addresses() {
        let table = PerAddress::new(4, vec![]);
        let slots: Vec<_> = (0..100u8)
            .map(|i| table.admit(IpAddr::from([198, 51, 100, i])).unwrap())
            .collect();
        assert_eq!(table.tracked(), 100);
        drop(slots);
        assert_eq!(table.tracked(), 0);
    }

    async fn asked(ticket: &mut Ticket) -> bool {
        std::future::poll_fn(|cx| std::task::Poll::Ready(ticket.asked(cx))).await
    }

    #[tokio::test]
    async fn stalled_heads_go_before_idle_connections_and_one_at_a_time() {
        let shedding = Shedding::new();
        let mut idle_1 = shedding.ticket(Sheddable::Idle);
        let mut idle_2 = shedding.ticket(Sheddable::Idle);
        let mut stalled = shedding.ticket(Sheddable::Stalled);
        for t in [&mut idle_1, &mut idle_2, &mut stalled] {
            assert!(!asked(t).await);
        }
        shedding.shed_one();
        assert!(asked(&mut stalled).await, "the stalled head first");
        assert!(!asked(&mut idle_1).await);
        drop(stalled);
        shedding.shed_one();
        assert!(asked(&mut idle_1).await, "then the longest idle");
        assert!(!asked(&mut idle_2).await, "one per call");
        drop((idle_1, idle_2));
        // Nobody waits: nothing is stored for a connection idle later.
        shedding.shed_one();
        let mut later = shedding.ticket(Sheddable::Idle);
        assert!(!asked(&mut later).await);
    }
}
