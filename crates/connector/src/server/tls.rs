//! HTTPS on the callback listener: rustls, TLS 1.2 and 1.3 only, HTTP/1.1.
//! The certificate is chosen per handshake by a resolver over an `ArcSwap`,
//! so SIGHUP can put a renewed pair in place (`replace`) without a restart:
//! connections open keep their session, new handshakes get the new pair.
//! Also what `/readyz` and `/metrics` say about the certificate's expiry.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsPair;

/// `/readyz` warns when the certificate expires within this many days.
pub const WARN_DAYS: i64 = 14;

/// The pair served now.
pub struct CallbackTls {
    current: ArcSwap<TlsPair>,
}

impl std::fmt::Debug for CallbackTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.current.load();
        f.debug_struct("CallbackTls")
            .field("serial", &p.serial)
            .field("not_after", &p.not_after)
            .finish()
    }
}

impl ResolvesServerCert for CallbackTls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().certified.clone())
    }
}

/// How near the certificate's end is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// More than `WARN_DAYS` left.
    Fine { days_left: i64 },
    /// Renew now: `WARN_DAYS` or fewer left.
    Soon { days_left: i64 },
    /// Past `notAfter`: clients refuse it.
    Expired,
}

impl CallbackTls {
    pub fn new(pair: Arc<TlsPair>) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::new(pair),
        })
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<TlsPair> {
        self.current.load_full()
    }

    /// Serve `pair` to new handshakes from now on; returns the old one.
    pub fn replace(&self, pair: Arc<TlsPair>) -> Arc<TlsPair> {
        self.current.swap(pair)
    }

    /// The rustls configuration of the listener (the resolver is `self`).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(crate::config::tls_provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// The expiry of the pair served now, at Unix time `now`.
    pub fn expiry(&self, now: i64) -> Expiry {
        expiry(self.current.load().not_after, now)
    }
}

/// How near `not_after` is at `now` (both Unix seconds).
pub fn expiry(not_after: i64, now: i64) -> Expiry {
    if now >= not_after {
        return Expiry::Expired;
    }
    let days_left = (not_after - now) / 86_400;
    if not_after - now <= WARN_DAYS * 86_400 {
        Expiry::Soon { days_left }
    } else {
        Expiry::Fine { days_left }
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_bands() {
        let day = 86_400;
        assert_eq!(expiry(100 * day, 0), Expiry::Fine { days_left: 100 });
        assert_eq!(
            expiry(WARN_DAYS * day + 1, 0),
            Expiry::Fine {
                days_left: WARN_DAYS
            }
        );
        assert_eq!(
            expiry(WARN_DAYS * day, 0),
            Expiry::Soon {
                days_left: WARN_DAYS
            }
        );
        assert_eq!(expiry(day / 2, 0), Expiry::Soon { days_left: 0 });
        assert_eq!(expiry(5, 5), Expiry::Expired);
        assert_eq!(expiry(5, 6), Expiry::Expired);
    }
}
