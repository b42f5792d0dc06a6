//! The callback endpoint's `Authentication` check, as an axum middleware in
//! front of its handler: compared in constant time before anything else
//! (before a byte of the body is read); a refusal is 401, counted, and
//! logged at most once a second (`RefusalLog`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::callback_state::CallbackState;

/// `route_layer(middleware::from_fn_with_state(state, require_mydex))`.
pub async fn require_mydex(
    State(st): State<Arc<CallbackState>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get("authentication")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let given = given.to_ascii_lowercase();
    let ok: bool = given.ct_eq(st.expected_auth.as_bytes()).into();
    if !ok {
        st.metrics.callback("unknown", "unauthorized");
        if let Some(refused) = st.refusals.note() {
            tracing::warn!(method = %request.method(), refused, "callback refused: missing or wrong Authentication header (refused: how many since the last such line)");
        }
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": "missing or wrong Authentication header" })),
        )
            .into_response();
    }
    next.run(request).await
}
