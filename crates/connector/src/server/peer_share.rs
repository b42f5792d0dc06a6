//! The share of the public listener one client address may hold. The
//! listener's own rule (a full listener drops the connection that has waited
//! longest without a complete request) keeps out silent and stalled
//! connections, but a client opening connections fast enough could still push
//! a newer, complete one out before its request is read. So no address holds
//! more than a quarter of `callback.max_connections` (at least 8): at its
//! share, its own oldest incomplete connection makes room for its next one,
//! and other clients' places are not touched. Reverse proxies carry many
//! clients on one address and are exempt (`callback.trusted_proxies`;
//! loopback by default, where a proxy on the same machine connects from).

use std::net::IpAddr;

use ipnet::IpNet;

/// The addresses exempt from the per-address share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Why an entry of `callback.trusted_proxies` is not an address or block.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR block (e.g. \"10.0.0.5\", \"10.0.0.0/8\", \"::1\")")]
pub struct NotAnAddress(String);

impl TrustedProxies {
    /// Loopback: a reverse proxy on the same machine.
    pub fn loopback() -> Self {
        Self(vec![
            IpNet::new_assert(IpAddr::from([127, 0, 0, 0]), 8),
            IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
        ])
    }

    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, NotAnAddress> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| NotAnAddress(e.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether connections from `ip` are exempt (an IPv4 address mapped into
    /// IPv6, as a dual-stack listener sees it, counts as itself).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// As the configuration shows them.
    pub fn shown(&self) -> Vec<String> {
        self.0.iter().map(|n| n.to_string()).collect()
    }
}

/// How many connections one address may hold.
pub fn per_address(max_connections: usize) -> usize {
    (max_connections / 4).max(8).min(max_connections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_blocks_are_read_and_anything_else_is_named() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]).unwrap();
        assert!(t.contains("10.1.2.3".parse().unwrap()));
        assert!(t.contains("192.0.2.7".parse().unwrap()));
        assert!(!t.contains("192.0.2.8".parse().unwrap()));
        assert!(t.contains("2001:db8::1".parse().unwrap()));
        assert!(
            t.contains("::ffff:10.9.9.9".parse().unwrap()),
            "mapped IPv4"
        );
        let e = TrustedProxies::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/33"), "{e}");
        assert!(TrustedProxies::parse(&["proxy.example"]).is_err());
    }

    #[test]
    fn loopback_is_trusted_by_default() {
        let t = TrustedProxies::loopback();
        assert!(t.contains("127.0.0.1".parse().unwrap()));
        assert!(t.contains("127.3.4.5".parse().unwrap()));
        assert!(t.contains("::1".parse().unwrap()));
        assert!(!t.contains("192.0.2.1".parse().unwrap()));
        assert_eq!(t.shown(), ["127.0.0.0/8", "::1/128"]);
    }

    #[test]
    fn a_quarter_of_the_listener_and_at_least_8() {
        assert_eq!(per_address(256), 64);
        assert_eq!(per_address(32), 8);
        assert_eq!(per_address(4), 4);
    }
}
