//! Serving the public listener (the callback Mydex calls, and one-click
//! unsubscribe on the same port) with the limits `axum::serve` lacks, so that
//! connections that send nothing, or stall in the middle of a request, cannot
//! keep Mydex's callbacks out:
//!
//! - a request's headers must arrive within `callback.read_timeout` (hyper's
//!   `header_read_timeout`; it also bounds how long a connection may sit
//!   idle, new or between keep-alive requests), and its body within the same
//!   time after them, on every route, a 404 included
//!   (`request_deadline.rs`: 408, connection closed);
//! - at most `callback.max_connections` connections are held. When a new one
//!   arrives at the cap, the connection that has waited longest without
//!   sending a complete request is dropped to make room for it, else the one
//!   idle longest between requests (`conn_slots.rs`); a connection being
//!   answered is never dropped, nor one accepted less than `GRACE` ago
//!   whose request may be unread in the kernel. When nothing can be dropped
//!   the listener stops accepting until a place frees: callbacks wait in the
//!   socket's backlog, none is closed unanswered. A client that sends its
//!   request at once, as Mydex does, gets through a flood of silent or
//!   stalled connections;
//! - no client address holds more than its share of the listener (a
//!   quarter, at least 8: `peer_share.rs`); at its share, its own oldest
//!   incomplete connection makes room for its next one, so a client opening
//!   connections faster than others' requests arrive pushes out only its
//!   own. Trusted reverse proxies (`callback.trusted_proxies`, loopback by
//!   default) carry many clients and are exempt;
//! - at shutdown the listener stops accepting; a connection accepted but
//!   not yet read gets `GRACE` for its request to arrive, and every request
//!   in flight is answered;
//! - what was dropped is counted in `/metrics` and logged in summary, not a
//!   line per connection (`shed_log.rs`).
//!
//! With `Limits::tls`, each connection is a TLS handshake first (within the
//! same header deadline, and as evictable as a silent connection), then
//! HTTP/1.1 over it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::conn_slots::{NoneEvictable, PeerHold, Phase, Slot, Slots};
use super::peer_share::TrustedProxies;
use super::request_deadline::serve_request;
use super::shed_log::ShedLog;
use crate::metrics::Metrics;

/// How long a connection just accepted is given to send its request before
/// it may be dropped to make room or closed at shutdown (at most
/// `callback.read_timeout`). A daemon taking over a backlog accepts many
/// connections at once, and one whose task has not run yet has not been
/// read: on two busy cores that can take hundreds of milliseconds.
pub const GRACE: Duration = Duration::from_secs(1);

pub struct Limits {
    pub read_timeout: Duration,
    pub max_connections: usize,
    /// Addresses exempt from the per-address share (`peer_share.rs`).
    pub trusted_proxies: TrustedProxies,
    /// HTTPS (`server/tls.rs`), or none for plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Where connections dropped under load are counted.
    pub metrics: Arc<Metrics>,
}

/// What every connection task of one listener shares.
struct Edge {
    app: Router,
    read_timeout: Duration,
    /// `GRACE`, within `read_timeout`.
    grace: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
    permits: Arc<Semaphore>,
    slots: Arc<Slots>,
    trusted: TrustedProxies,
    per_address: usize,
    shed: Arc<ShedLog>,
    open: Gauge,
    shutdown: CancellationToken,
}

/// Serve `app` on `listener` until `shutdown`, then let requests in flight
/// finish (the daemon bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let edge = Arc::new(Edge {
        app,
        read_timeout: limits.read_timeout,
        grace: GRACE.min(limits.read_timeout),
        tls: limits.tls,
        permits: Arc::new(Semaphore::new(limits.max_connections)),
        slots: Arc::new(Slots::default()),
        trusted: limits.trusted_proxies,
        per_address: super::peer_share::per_address(limits.max_connections),
        shed: Arc::new(ShedLog::new(limits.metrics.clone(), limits.max_connections)),
        open: limits.metrics.callback_connections_open(),
        shutdown: shutdown.clone(),
    });
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok((stream, addr)) => (stream, addr.ip()),
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "callback accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(peer) = edge.share(peer) else {
            continue;
        };
        let room = tokio::select! {
            _ = shutdown.cancelled() => {
                // Accepted, so answered: it takes the first place that
                // frees as the others finish.
                tracker.spawn(edge.clone().when_freed(stream, peer));
                break;
            }
            room = edge.room() => room,
        };
        match room {
            Room::Free(permit) => tracker.spawn(edge.clone().connection(stream, permit, peer)),
            Room::Freeing => tracker.spawn(edge.clone().when_freed(stream, peer)),
        };
    }
    tracker.close();
    tracker.wait().await;
}

/// A place for a connection just accepted.
enum Room {
    /// A free place.
    Free(OwnedSemaphorePermit),
    /// A connection was evicted; its place frees as soon as it closes.
    Freeing,
}

/// Keeps the open-connections gauge while a connection is held.
struct Held(Gauge);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A connection's client, as far as the listener's shares go: none for a
/// trusted proxy; else its address and its count against the share.
type Peer = Option<(std::net::IpAddr, PeerHold)>;

impl Edge {
    /// Hold a new connection to its address's share: `None` when the address
    /// is at its share and none of its own connections can make room (the
    /// newcomer is closed); else the hold, none for a trusted proxy.
    fn share(&self, ip: std::net::IpAddr) -> Option<Peer> {
        if self.trusted.contains(ip) {
            return Some(None);
        }
        let (hold, before) = self.slots.hold_peer(ip);
        // Connections evicted but not yet closed still count, up to twice
        // the share: a flood cannot outrun its own evictions.
        let room = before < self.per_address
            || (before < 2 * self.per_address
                && self.slots.evict_one_from(ip).is_some_and(|kind| {
                    self.shed.evicted(kind);
                    true
                }));
        if room {
            Some(Some((ip, hold)))
        } else {
            self.shed.refused();
            None
        }
    }

    /// A place for the connection just accepted: a free one; else one made
    /// by evicting the connection that deserves it least; else (every
    /// connection being answered, or within its grace) the first of the two
    /// to come. Meanwhile nothing more is accepted: newcomers wait in the
    /// socket's backlog rather than push out a connection about to be read.
    async fn room(&self) -> Room {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return Room::Free(permit);
            }
            let ripens = match self.slots.evict_one(self.grace) {
                Ok(kind) => {
                    self.shed.evicted(kind);
                    return Room::Freeing;
                }
                Err(NoneEvictable(ripens)) => ripens,
            };
            // A connection being answered may go idle without freeing its
            // place: look again within the grace.
            let wait = ripens.unwrap_or(self.grace).max(Duration::from_millis(5));
            tokio::select! {
                permit = self.permits.clone().acquire_owned() => {
                    if let Ok(permit) = permit {
                        return Room::Free(permit);
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// A connection accepted at the cap, for which one was evicted: served
    /// once that one's place is free (it closes at once unless it was in the
    /// middle of an answer, which it may finish), even when the daemon is
    /// stopping: it was accepted, so its request is answered.
    async fn when_freed(self: Arc<Self>, stream: TcpStream, peer: Peer) {
        let permit =
            tokio::time::timeout(self.read_timeout, self.permits.clone().acquire_owned()).await;
        match permit {
            Ok(Ok(permit)) => self.connection(stream, permit, peer).await,
            _ => self.shed.refused(),
        }
    }

    /// One connection, holding `permit`: TLS first if configured, then HTTP.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        peer: Peer,
    ) {
        let _permit = permit;
        let (ip, _hold) = peer.unzip();
        let place = self.slots.register(ip);
        self.open.inc();
        let _held = Held(self.open.clone());
        let slot = place.slot.clone();
        let Some(acceptor) = self.tls.clone() else {
            return self.http(stream, slot).await;
        };
        // The handshake has the headers' deadline: a silent client cannot
        // hold a place.
        let handshake = tokio::time::timeout(self.read_timeout, acceptor.accept(stream));
        tokio::select! {
            _ = slot.evicted().cancelled() => {}
            done = handshake => match done {
                Ok(Ok(tls_stream)) => self.http(tls_stream, slot).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "callback TLS handshake failed"),
                Err(_) => tracing::debug!("callback TLS handshake timed out"),
            },
        }
    }

    /// HTTP/1.1 on one connection (plain or TLS) until it ends, the daemon
    /// stops, or it is evicted.
    async fn http<S>(&self, stream: S, slot: Arc<Slot>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, read_timeout, shed, on) = (
            self.app.clone(),
            self.read_timeout,
            self.shed.clone(),
            slot.clone(),
        );
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            serve_request(app.clone(), req, on.clone(), read_timeout, shed.clone())
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout);
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "callback connection ended with an error");
                }
            }
            _ = self.shutdown.cancelled() => {
                // Accepted just before the stop, its request may be on its
                // way or unread: it gets the grace to arrive (hyper closes
                // a connection that has sent nothing at once).
                if slot.phase() == Phase::Opening {
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "callback connection ended with an error");
                            }
                            return;
                        }
                        _ = tokio::time::timeout(self.grace, slot.left_opening()) => {}
                    }
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            _ = slot.evicted().cancelled() => {
                // Nothing asked yet: close it now. Otherwise a request
                // mid-body is answered 503 (`request_deadline.rs`), one
                // being answered finishes, an idle one closes at once.
                if slot.phase() == Phase::Opening {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(read_timeout, conn.as_mut()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const REQUEST: &[u8] = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

    /// A listener of `max_connections` whose one route takes `answer` to
    /// answer; its address, its open-connections gauge and its stop.
    async fn listener(
        max_connections: usize,
        answer: Duration,
    ) -> (std::net::SocketAddr, Gauge, CancellationToken) {
        let app = Router::new().route(
            "/slow",
            axum::routing::get(move || async move {
                tokio::time::sleep(answer).await;
                "answered"
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        let open = metrics.callback_connections_open();
        let shutdown = CancellationToken::new();
        let limits = Limits {
            read_timeout: Duration::from_secs(30),
            max_connections,
            trusted_proxies: super::super::peer_share::TrustedProxies::loopback(),
            tls: None,
            metrics,
        };
        tokio::spawn(serve(listener, app, limits, shutdown.clone()));
        (addr, open, shutdown)
    }

    /// The answer's status line, or what happened instead.
    async fn status_line(mut stream: TcpStream) -> String {
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer).await {
            Ok(_) if answer.is_empty() => "closed unanswered".into(),
            Ok(_) => String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
            Err(e) => format!("reset: {e}"),
        }
    }

    async fn ask(addr: std::net::SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(REQUEST).await.unwrap();
        status_line(stream).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_past_the_cap_waits_in_the_backlog_and_every_request_is_answered() {
        // Every place busy for a while, four times as many requests as
        // places arriving at once: as after a restart, when the new process
        // takes over the backlog.
        let (addr, _open, _stop) = listener(4, Duration::from_millis(300)).await;
        let asks: Vec<_> = (0..16).map(|_| tokio::spawn(ask(addr))).collect();
        for a in asks {
            assert_eq!(a.await.unwrap(), "HTTP/1.1 200 OK");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_accepted_before_the_stop_is_answered_when_its_request_comes_after() {
        let (addr, open, stop) = listener(4, Duration::ZERO).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let waited = std::time::Instant::now();
        while open.get() < 1 {
            assert!(waited.elapsed() < Duration::from_secs(60), "never accepted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(REQUEST).await.unwrap();
        assert_eq!(status_line(stream).await, "HTTP/1.1 200 OK");
        // Nothing more is accepted (the backlog is kept for the next process).
        let late = TcpStream::connect(addr).await;
        if let Ok(mut late) = late {
            let _ = late.write_all(REQUEST).await;
            let answered =
                tokio::time::timeout(Duration::from_millis(300), status_line(late)).await;
            assert!(
                answered.is_err(),
                "a connection after the stop was served: {answered:?}"
            );
        }
    }
}
