//! The client's address behind reverse proxies. Only a connection from a
//! trusted proxy (`server.trusted_proxies`) has its forwarding header read;
//! the hops are walked right to left (nearest first) up to the first one
//! that is not a trusted proxy, which is the client. Everything to the right
//! of that hop was written by trusted proxies, so a client cannot choose
//! the address it is throttled and audited under.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use forwarded_header_value::ForwardedStanza;
use ipnet::IpNet;

use crate::config::ForwardingHeader;

fn header_name(header: ForwardingHeader) -> &'static str {
    match header {
        ForwardingHeader::XForwardedFor => "x-forwarded-for",
        ForwardingHeader::Forwarded => "forwarded",
    }
}

/// One hop's address; `None` for `unknown`, an obfuscated identifier
/// (RFC 7239 §6.3) or anything malformed.
fn hop(header: ForwardingHeader, element: &str) -> Option<IpAddr> {
    let element = element.trim();
    match header {
        ForwardingHeader::XForwardedFor => element
            .parse::<IpAddr>()
            .or_else(|_| element.parse::<SocketAddr>().map(|s| s.ip()))
            .ok(),
        // RFC 7239 §4: `for=` names the hop, quoted when it has a port or
        // is an IPv6 address.
        ForwardingHeader::Forwarded => element.parse::<ForwardedStanza>().ok()?.forwarded_for_ip(),
    }
}

/// The address of the client behind `peer`.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardingHeader,
) -> IpAddr {
    // On a dual-stack listener an IPv4 peer arrives as `::ffff:a.b.c.d`:
    // compare and report it as the IPv4 address it is.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // RFC 9110 §5.3: several field lines are one comma-separated list.
    let lines: Vec<&str> = headers
        .get_all(header_name(header))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let joined = lines.join(",");
    let mut client = peer;
    for element in joined.rsplit(',') {
        // A hop a trusted proxy could not name ends the walk at that proxy.
        let Some(hop) = hop(header, element) else {
            break;
        };
        let hop = hop.to_canonical();
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(peer: &str, name: &'static str, value: &str, header: ForwardingHeader) -> String {
        let mut headers = HeaderMap::new();
        if !value.is_empty() {
            headers.insert(name, value.parse().unwrap());
        }
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        client_address(peer.parse().unwrap(), &headers, &trusted, header).to_string()
    }

    fn xff(peer: &str, value: &str) -> String {
        resolve(
            peer,
            "x-forwarded-for",
            value,
            ForwardingHeader::XForwardedFor,
        )
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_listener_is_its_ipv4_address() {
        let xff = ForwardingHeader::XForwardedFor;
        assert_eq!(
            resolve("::ffff:10.0.0.5", "x-forwarded-for", "203.0.113.9", xff),
            "203.0.113.9"
        );
        assert_eq!(
            resolve("::ffff:198.51.100.1", "x-forwarded-for", "203.0.113.9", xff),
            "198.51.100.1"
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        assert_eq!(xff("203.0.113.9", "198.51.100.1"), "203.0.113.9");
    }

    #[test]
    fn hops_are_walked_right_to_left_up_to_the_first_untrusted_one() {
        assert_eq!(xff("10.0.0.1", "198.51.100.1"), "198.51.100.1");
        // The client wrote the first hop itself; the proxies appended theirs.
        assert_eq!(
            xff("10.0.0.1", "1.2.3.4, 198.51.100.1, 10.0.0.2"),
            "198.51.100.1"
        );
        assert_eq!(xff("10.0.0.1", "10.0.0.3, 10.0.0.2"), "10.0.0.3");
        assert_eq!(xff("10.0.0.1", "garbage, 198.51.100.1"), "198.51.100.1");
        assert_eq!(xff("10.0.0.1", "198.51.100.1, garbage"), "10.0.0.1");
        assert_eq!(xff("10.0.0.1", ""), "10.0.0.1");
        assert_eq!(xff("10.0.0.1", "198.51.100.1:4711"), "198.51.100.1");
    }

    #[test]
    fn forwarded_follows_rfc_7239() {
        let forwarded =
            |peer, value| resolve(peer, "forwarded", value, ForwardingHeader::Forwarded);
        assert_eq!(
            forwarded(
                "::1",
                r#"for=1.2.3.4, for="[2001:db8::1]:4711";proto=https"#
            ),
            "2001:db8::1"
        );
        assert_eq!(forwarded("::1", "for=_hidden"), "::1");
        assert_eq!(forwarded("::1", "for=unknown, for=10.1.1.1"), "10.1.1.1");
        // Only the configured header counts.
        assert_eq!(
            resolve(
                "10.0.0.1",
                "forwarded",
                "for=1.2.3.4",
                ForwardingHeader::XForwardedFor
            ),
            "10.0.0.1"
        );
    }
}
