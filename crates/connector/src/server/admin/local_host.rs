//! Whether a request names the admin listener itself, the defence against
//! DNS rebinding: a web page in a local browser can make a name of its own
//! resolve to 127.0.0.1 and then read from our port, but its requests still
//! carry that name in `Host`. So a request without the admin token is
//! served only when its `Host` (and, in HTTP/2 or an absolute request
//! target, its authority) is `127.0.0.1`, `localhost` or `[::1]`, or the
//! listener's own address when it is bound to one, each with the port
//! actually bound (no port only when that port is 80).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::header::HOST;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri};

/// The names a request may give the listener bound at an address.
#[derive(Debug, Clone)]
pub struct ListenerNames {
    port: u16,
    /// The bound address when it is a specific one (not `0.0.0.0`/`[::]`).
    own: Option<IpAddr>,
}

impl ListenerNames {
    /// For the listener actually bound at `bound`.
    pub fn new(bound: SocketAddr) -> Self {
        let ip = bound.ip();
        Self {
            port: bound.port(),
            own: (!ip.is_unspecified()).then_some(ip),
        }
    }

    /// Whether the request names this listener: a single `Host`, and the
    /// URI's authority if it has one, each naming it; nothing else does
    /// (no `Host` at all, as HTTP/1.0 allows, is refused too).
    pub fn named_by(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let mut hosts = headers.get_all(HOST).iter();
        let host = hosts.next();
        if hosts.next().is_some() {
            return false;
        }
        let mut seen = false;
        for given in [
            uri.authority().map(Authority::as_str),
            host.map(|h| h.to_str().unwrap_or("")),
        ]
        .into_iter()
        .flatten()
        {
            if !self.is_ours(given) {
                return false;
            }
            seen = true;
        }
        seen
    }

    /// Whether one authority (`host[:port]`) names this listener.
    fn is_ours(&self, given: &str) -> bool {
        if given.contains('@') || given.ends_with(':') {
            return false;
        }
        let Ok(authority) = given.parse::<Authority>() else {
            return false;
        };
        let port_ok = match authority.port_u16() {
            Some(p) => p == self.port,
            None => self.port == 80,
        };
        port_ok && self.host_is_ours(authority.host())
    }

    fn host_is_ours(&self, host: &str) -> bool {
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let Ok(ip) = bare.parse::<IpAddr>() else {
            return false;
        };
        // An IPv6 address only in brackets, an IPv4 one never in them.
        if ip.is_ipv6() == (bare.len() == host.len()) {
            return false;
        }
        ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
            || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
            || Some(ip) == self.own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &ListenerNames, hosts: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(HOST, h.parse().unwrap());
        }
        names.named_by(&Uri::from_static("/invitations/0"), &headers)
    }

    #[test]
    fn only_the_listener_itself_with_its_port() {
        let n = ListenerNames::new("127.0.0.1:8081".parse().unwrap());
        for ok in [
            "127.0.0.1:8081",
            "localhost:8081",
            "LocalHost:8081",
            "[::1]:8081",
        ] {
            assert!(named(&n, &[ok]), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8081",
            "127.0.0.1.evil.example:8081",
            "localhost.evil.example:8081",
            "127.0.0.1:8082",
            "127.0.0.1",
            "127.0.0.1:",
            "localhost:80",
            "user@127.0.0.1:8081",
            "127.0.0.2:8081",
            "[127.0.0.1]:8081",
            "::1:8081",
            "localhost.:8081",
            "",
        ] {
            assert!(!named(&n, &[bad]), "{bad:?}");
        }
        assert!(!named(&n, &[]), "no Host");
        assert!(!named(&n, &["127.0.0.1:8081", "evil.example"]), "two Hosts");
    }

    #[test]
    fn the_authority_of_the_request_target_counts_too() {
        let n = ListenerNames::new("127.0.0.1:8081".parse().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "127.0.0.1:8081".parse().unwrap());
        let evil = Uri::from_static("http://evil.example:8081/invitations");
        assert!(!n.named_by(&evil, &headers));
        let ours = Uri::from_static("http://localhost:8081/invitations");
        assert!(n.named_by(&ours, &headers));
        assert!(
            n.named_by(&ours, &HeaderMap::new()),
            "HTTP/2: :authority only"
        );
    }

    #[test]
    fn port_80_may_go_unnamed_and_a_specific_address_names_itself() {
        let n = ListenerNames::new("127.0.0.1:80".parse().unwrap());
        assert!(named(&n, &["localhost"]));
        assert!(named(&n, &["127.0.0.1:80"]));
        let n = ListenerNames::new("192.0.2.7:8081".parse().unwrap());
        assert!(named(&n, &["192.0.2.7:8081"]));
        assert!(named(&n, &["127.0.0.1:8081"]));
        assert!(!named(&n, &["192.0.2.8:8081"]));
        let n = ListenerNames::new("[::]:8081".parse().unwrap());
        assert!(named(&n, &["[::1]:8081"]));
        assert!(!named(&n, &["[::]:8081"]));
        assert!(!named(&n, &["0.0.0.0:8081"]));
    }
}
