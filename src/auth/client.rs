//! Who is asking: the client's address (through trusted proxies only) and the network key that auth rate limits count it under.
//!
//! The address is the TCP peer, unless the peer is one of `TRUSTED_PROXIES`: then it is the
//! rightmost `X-Forwarded-For` hop that is not itself a trusted proxy (each proxy appends
//! the address it saw, so hops to the left of the first untrusted one are the client's own
//! say-so). A peer that is not trusted cannot move its requests to another address by
//! sending the header.
//!
//! Limits count IPv4 clients per address and IPv6 clients per /64: one host is handed a
//! whole /64, so counting single IPv6 addresses would give it 2^64 budgets.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use actix_web::HttpRequest;

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a block of
/// one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (addr, prefix) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{raw:?} is not an IP address or CIDR block"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?} has a prefix length outside 0..={max}"))?,
        };
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`: compare like with like.
        Ok(match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Self {
                    addr: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => Self { addr, prefix },
            },
            _ => Self { addr, prefix },
        })
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`); empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR blocks; blanks are skipped.
    pub fn parse_list(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`, what a dual-stack socket reports) as the
/// IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One `X-Forwarded-For` hop: an address, or an address with a port (`1.2.3.4:5`,
/// `[2001:db8::1]:5`), as some proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
/// forwarded hop that is not a trusted proxy. A hop that cannot be read stops the walk at
/// the last address that could. `None` only when the peer address is unknown.
pub fn client_addr(req: &HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    let mut client = canonical(req.peer_addr()?.ip());
    if !trusted.contains(client) {
        return Some(client);
    }
    // Several headers are one list, in order; an unreadable header is an unreadable hop.
    let hops: Vec<Option<IpAddr>> = req
        .headers()
        .get_all("x-forwarded-for")
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.split(',').map(parse_hop).collect::<Vec<_>>(),
            Err(_) => vec![None],
        })
        .collect();
    for hop in hops.into_iter().rev() {
        if !trusted.contains(client) {
            break;
        }
        match hop {
            Some(ip) => client = ip,
            None => break,
        }
    }
    Some(client)
}

/// The key limits count a client under: an IPv4 address, or an IPv6 address's /64.
pub fn network_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{net}/64")
        }
    }
}

/// [`network_key`] of the request's client (`unknown` without a peer address).
pub fn client_network(req: &HttpRequest, trusted: &TrustedProxies) -> String {
    client_addr(req, trusted).map_or_else(|| "unknown".to_owned(), network_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn from(peer: &str, forwarded: &[&str], trusted: &str) -> String {
        let mut req = TestRequest::default().peer_addr(SocketAddr::new(ip(peer), 40_000));
        for value in forwarded {
            req = req.append_header(("x-forwarded-for", *value));
        }
        let trusted = TrustedProxies::parse_list(trusted).expect("trusted list");
        client_addr(&req.to_http_request(), &trusted)
            .expect("peer known")
            .to_string()
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_ipv4_per_address() {
        assert_eq!(
            network_key(ip("2001:db8:1:2::1")),
            network_key(ip("2001:db8:1:2:ffff:ffff:ffff:fffe"))
        );
        assert_eq!(network_key(ip("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_ne!(
            network_key(ip("2001:db8:1:2::1")),
            network_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(network_key(ip("192.0.2.1")), "192.0.2.1");
        assert_ne!(network_key(ip("192.0.2.1")), network_key(ip("192.0.2.2")));
        // A dual-stack socket's view of an IPv4 client is that IPv4 client.
        assert_eq!(network_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }

    #[test]
    fn blocks_parse_and_match() {
        let list =
            TrustedProxies::parse_list(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,").expect("ok");
        assert!(list.contains(ip("10.200.3.4")));
        assert!(list.contains(ip("::ffff:10.1.1.1")));
        assert!(!list.contains(ip("11.0.0.1")));
        assert!(list.contains(ip("192.0.2.7")));
        assert!(!list.contains(ip("192.0.2.8")));
        assert!(list.contains(ip("2001:db8:ffff::1")));
        assert!(!list.contains(ip("2001:db9::1")));
        assert!(TrustedProxies::parse_list("0.0.0.0/0")
            .expect("all of IPv4")
            .contains(ip("203.0.113.9")));
        assert_eq!(
            TrustedProxies::parse_list("").expect("empty"),
            TrustedProxies::default()
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "proxy.local",
            "10.0.0.0/x",
            "1.2.3.4/-1",
        ] {
            assert!(TrustedProxies::parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_peer() {
        // Untrusted peer: the header is the client's say-so, ignored.
        assert_eq!(from("198.51.100.1", &["203.0.113.5"], ""), "198.51.100.1");
        assert_eq!(
            from("198.51.100.1", &["203.0.113.5"], "10.0.0.0/8"),
            "198.51.100.1"
        );
        // Trusted peer: the rightmost hop that is not a trusted proxy.
        assert_eq!(
            from(
                "10.0.0.2",
                &["6.6.6.6, 203.0.113.5, 10.0.0.9"],
                "10.0.0.0/8"
            ),
            "203.0.113.5"
        );
        // Several headers are one list.
        assert_eq!(
            from("10.0.0.2", &["6.6.6.6", "203.0.113.5"], "10.0.0.0/8"),
            "203.0.113.5"
        );
        // Ports and brackets, as some proxies write them.
        assert_eq!(
            from("10.0.0.2", &["[2001:db8::7]:443"], "10.0.0.0/8"),
            "2001:db8::7"
        );
        assert_eq!(
            from("10.0.0.2", &["203.0.113.5:80"], "10.0.0.0/8"),
            "203.0.113.5"
        );
        // Nothing forwarded, or garbage: the last address that could be read.
        assert_eq!(from("10.0.0.2", &[], "10.0.0.0/8"), "10.0.0.2");
        assert_eq!(
            from("10.0.0.2", &["203.0.113.5, unknown"], "10.0.0.0/8"),
            "10.0.0.2"
        );
        // Every hop a trusted proxy: the leftmost.
        assert_eq!(from("10.0.0.2", &["10.0.0.3"], "10.0.0.0/8"), "10.0.0.3");
    }
}
