//! The callback on an edge (`mydex-connector edge`): authenticated and read
//! within limits by the same listener and endpoint as the daemon's
//! (`callback_endpoint.rs`), then sealed as received to the daemon's key
//! and published to `{prefix}.callbacks`. A 2xx only once JetStream has
//! acknowledged it; otherwise (no ack within 5 s, no broker) 503 with
//! `Retry-After: 5`, so the sender tries again — through any edge, since
//! the message id is the same and JetStream keeps one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::callback_state::CallbackState;
use crate::broker::{EdgePublisher, ReceivedCallback};

/// What `Retry-After` says when JetStream did not take a message.
pub const RETRY_AFTER_SECONDS: u64 = 5;

pub(super) async fn publish(
    st: &CallbackState,
    publisher: &EdgePublisher,
    method_s: &'static str,
    content_type: Option<String>,
    body: axum::body::Bytes,
) -> Response {
    let received = ReceivedCallback {
        method: method_s.into(),
        content_type,
        authentication: st.expected_auth.clone(),
        body: body.to_vec(),
        arrived_ms: crate::store::now_ms(),
    };
    match publisher.publish_callback(&received).await {
        Ok(ack) => {
            st.metrics.callback("unknown", "published");
            tracing::info!(stream = %ack.stream, seq = ack.sequence, duplicate = ack.duplicate, "callback sealed and published");
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "status": "accepted" })),
            )
                .into_response()
        }
        Err(e) => {
            st.metrics.callback("unknown", "publish_failed");
            tracing::error!(error = %e, "callback not taken by JetStream; answering 503 so Mydex retries");
            retry_later("cannot take the callback now; please retry")
        }
    }
}

/// 503 with `Retry-After: 5` and a JSON error.
pub fn retry_later(message: &str) -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    r
}
