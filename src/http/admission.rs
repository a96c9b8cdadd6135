//! Who gets a connection slot when they are scarce.
//!
//! - One address holds at most `server.max_connections_per_address`
//!   connections; more are closed as soon as they are accepted, so one host
//!   cannot take the whole of `server.max_connections`. Trusted proxies are
//!   exempt (every client behind them shares their address). IPv6 peers
//!   count per /64, the block one subscriber is usually given.
//! - When every slot is taken and a new connection waits, connections idle
//!   between requests are asked to close ([`IdleShedding`]): a keep-alive
//!   connection costs its client one reconnect, while a waiting client
//!   would otherwise get nothing until the idle timeout. Connections in the
//!   middle of a request are never shed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use tokio::sync::Notify;

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

    /// A slot for a connection from `peer`, or `None` if that address
    /// already holds its share.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<AddressSlot> {
        let peer = peer.to_canonical();
        if self.exempt.iter().any(|net| net.contains(&peer)) {
            return Some(AddressSlot {
                table: self.clone(),
                key: None,
            });
        }
        let key = Self::key(peer);
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

    fn key(peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V4(_) => peer,
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        }
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

/// The signal that asks idle connections to close. Each idle connection
/// waits on it (see `timeouts::TimedIo`); the accept loop raises it while a
/// new connection waits for a slot.
#[derive(Default)]
pub struct IdleShedding {
    notify: Arc<Notify>,
}

impl IdleShedding {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Asks every connection idle now to close.
    pub fn shed(&self) {
        self.notify.notify_waiters();
    }

    /// Resolves when [`Self::shed`] is next called after its first poll.
    pub fn requested(&self) -> tokio::sync::futures::OwnedNotified {
        self.notify.clone().notified_owned()
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
}
