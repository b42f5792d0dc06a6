//! Serving the callback endpoint with the limits `axum::serve` lacks, so a
//! flood cannot starve Mydex's callbacks: a deadline for a request's headers
//! (hyper's `header_read_timeout`; slow-loris connections are closed), and a
//! cap on connections served at once (more are closed at accept, before any
//! byte is read). Bodies have their own deadline in `callback_endpoint.rs`.
//! With `Limits::tls`, each connection is a TLS handshake first (within the
//! same header deadline), then HTTP/1.1 over it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub struct Limits {
    pub read_timeout: Duration,
    pub max_connections: usize,
    /// HTTPS (`server/tls.rs`), or none for plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Serve `app` on `listener` until `shutdown`, then let requests in flight
/// finish (the daemon bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    let mut shed: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!(error = %e, "callback accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shed += 1;
            if shed.is_power_of_two() {
                tracing::warn!(
                    shed,
                    max_connections = limits.max_connections,
                    "callback connections over callback.max_connections closed at accept"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = shutdown.clone();
        let read_timeout = limits.read_timeout;
        let tls = limits.tls.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let Some(acceptor) = tls else {
                return connection(stream, app, read_timeout, stop).await;
            };
            // The handshake has the headers' deadline: a silent client
            // cannot hold a permit.
            match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => connection(tls_stream, app, read_timeout, stop).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "callback TLS handshake failed"),
                Err(_) => tracing::debug!("callback TLS handshake timed out"),
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// HTTP/1.1 on one connection (plain or TLS) until it ends or `stop`.
async fn connection<S>(stream: S, app: Router, read_timeout: Duration, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc =
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| app.clone().oneshot(req));
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
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
