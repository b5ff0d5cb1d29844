//! The address a request came from: the connection's peer, or, when the peer is a proxy this server is told
//! to trust (a load balancer), the address that proxy names in `X-Forwarded-For`. AuditEvents record it
//! (the client agent's `network`), and failed authentications are counted by it (see `failed_auth`).
//!
//! `X-Forwarded-For` is read from its end: each trusted proxy appends the address it was reached from, so
//! the entries nearest the end are the ones trusted proxies wrote, and the first one from the end that is not
//! a trusted proxy's is the client. Entries before it are the client's own words and are never believed.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The peer of the connection a request came on, put in the request's extensions by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// The address a request came from (see the module's comment), put in the request's extensions by the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The client's address, from the peer's and, through trusted proxies, `X-Forwarded-For`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*address)));
    let mut client = canonical(peer);
    if !is_trusted(&client) {
        return client;
    }
    // Several X-Forwarded-For headers are one list, in order. Split as bytes: a client's entry that is not
    // text must not take the trusted proxies' entries after it with it.
    let forwarded: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .collect();
    for entry in forwarded.iter().rev() {
        // An entry that is no address (garbled, or `unknown`) ends the walk: nothing before it can be placed.
        let Some(address) = parse(entry) else { break };
        client = address;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// An address as `X-Forwarded-For` may write it: bare, or IPv6 in brackets, either with a port.
fn parse(entry: &[u8]) -> Option<IpAddr> {
    let entry = std::str::from_utf8(entry).ok()?.trim();
    let bare = entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(entry);
    if let Ok(address) = bare.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    None
}

/// An IPv4 address as IPv6 (`::ffff:10.0.0.1`, as a dual-stack socket reports one) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_peer_counts_unless_it_is_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // An untrusted peer's X-Forwarded-For is its own claim.
        assert_eq!(
            resolve(ip("203.0.113.9"), &headers(&["198.51.100.1"]), &trusted),
            ip("203.0.113.9")
        );
        // Nothing trusted: the peer, whatever the header says.
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["198.51.100.1"]), &[]),
            ip("10.0.0.1")
        );
        // Through a trusted load balancer: the address it appended.
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["198.51.100.1"]), &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn forwarded_entries_are_read_from_the_end_past_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "192.0.2.7/32".parse().unwrap()];
        // The client wrote a spoofed first entry; two trusted proxies appended theirs.
        let chain = headers(&["1.1.1.1, 198.51.100.1", "192.0.2.7"]);
        assert_eq!(resolve(ip("10.0.0.1"), &chain, &trusted), ip("198.51.100.1"));
        // Every entry trusted: the first of them.
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["10.1.1.1, 10.2.2.2"]), &trusted),
            ip("10.1.1.1")
        );
        // A garbled entry stops the walk at the last address placed.
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["198.51.100.1, unknown, 10.2.2.2"]), &trusted),
            ip("10.2.2.2")
        );
        // Ports and brackets are taken off.
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["[2001:db8::1]:4711"]), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["198.51.100.1:80"]), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["[2001:db8::2]"]), &trusted),
            ip("2001:db8::2")
        );
    }

    #[test]
    fn a_client_entry_that_is_not_text_keeps_the_proxies_entries_after_it() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut chain = HeaderMap::new();
        let value = HeaderValue::from_bytes(b"\xe9t\xe9, 198.51.100.1").unwrap();
        chain.append("x-forwarded-for", value);
        assert_eq!(resolve(ip("10.0.0.1"), &chain, &trusted), ip("198.51.100.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("::ffff:10.0.0.1"), &headers(&["::ffff:198.51.100.1"]), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(resolve(ip("::ffff:127.0.0.1"), &HeaderMap::new(), &[]), ip("127.0.0.1"));
    }
}
