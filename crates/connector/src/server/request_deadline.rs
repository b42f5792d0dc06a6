//! Every request on the public listener, whatever its route (the callback,
//! one-click unsubscribe, a path we do not serve): its body must arrive in
//! full within `callback.read_timeout` of its headers, else the answer is
//! 408 and the connection is closed, so no route can hold a connection with
//! a body that never comes. The handler reads the body through a deadline
//! (`DeadlineBody`); a handler that is still waiting for it at the deadline
//! is dropped. A request evicted mid-body to make room (`conn_slots.rs`)
//! gets 503 with `Retry-After`. The connection's phase moves with the
//! request: reading its body, then busy, then idle.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::conn_slots::{Phase, Slot};
use super::shed_log::ShedLog;

/// What a handler reading a body past its deadline gets instead of data.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within callback.read_timeout")]
pub struct BodyTimedOut;

/// How far a request's body got.
struct Progress {
    complete: AtomicBool,
    timed_out: AtomicBool,
    slot: Arc<Slot>,
}

impl Progress {
    fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    fn completed(&self) {
        if !self.complete.swap(true, Ordering::AcqRel) {
            self.slot.set_phase(Phase::Busy);
        }
    }
}

/// The request body, cut off at its deadline.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    progress: Arc<Progress>,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Ready(None) => {
                this.progress.completed();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.progress.completed();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Pending if this.progress.is_complete() => Poll::Pending,
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.progress.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a request was answered before its handler finished.
enum Cut {
    /// Its body did not arrive in time.
    Timeout,
    /// The listener was full and this connection had not sent its request
    /// in full.
    Evicted,
}

/// Resolves when the request must be answered without its handler: the
/// deadline passed, or the connection was evicted, with the body not yet
/// complete. Never resolves once the body is in.
async fn cut_short(progress: &Progress, deadline: Instant) -> Cut {
    let why = tokio::select! {
        _ = tokio::time::sleep_until(deadline) => Cut::Timeout,
        _ = progress.slot.evicted().cancelled() => Cut::Evicted,
    };
    if progress.is_complete() {
        std::future::pending::<()>().await;
    }
    why
}

fn closing(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn timed_out() -> Response {
    closing(
        StatusCode::REQUEST_TIMEOUT,
        "the request body did not arrive within callback.read_timeout",
    )
}

fn evicted() -> Response {
    let mut r = closing(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many connections; send the request at once and retry",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Serve one request of a connection in `slot` with `app`, its body due
/// within `read_timeout` of now.
pub async fn serve_request(
    app: Router,
    request: hyper::Request<Incoming>,
    slot: Arc<Slot>,
    read_timeout: Duration,
    shed: Arc<ShedLog>,
) -> Result<Response, Infallible> {
    let (parts, body) = request.into_parts();
    let progress = Arc::new(Progress {
        complete: AtomicBool::new(false),
        timed_out: AtomicBool::new(false),
        slot: slot.clone(),
    });
    if body.is_end_stream() {
        progress.completed();
    } else {
        slot.set_phase(Phase::Reading);
    }
    let deadline = Instant::now() + read_timeout;
    let body = DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        progress: progress.clone(),
    };
    let request = axum::http::Request::from_parts(parts, axum::body::Body::new(body));
    let response = tokio::select! {
        biased;
        handled = app.oneshot(request) => {
            let response = match handled {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // The handler saw the body fail at its deadline; whatever it
            // made of that (400), the truth is 408. An over-long body keeps
            // its 413.
            if progress.timed_out.load(Ordering::Acquire)
                && response.status() != StatusCode::PAYLOAD_TOO_LARGE
            {
                shed.body_timeout();
                timed_out()
            } else {
                response
            }
        }
        cut = cut_short(&progress, deadline) => match cut {
            Cut::Timeout => {
                shed.body_timeout();
                timed_out()
            }
            Cut::Evicted => evicted(),
        },
    };
    slot.set_phase(Phase::Idle);
    Ok(response)
}
