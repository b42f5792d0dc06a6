//! An edge's probes on `[admin] listen`: `/healthz` (the process answers),
//! `/readyz` (JetStream answers: 503 while it does not, so a load balancer
//! sends callbacks to another edge), `/metrics` (the callbacks it took, its
//! listener under load, publishes and publish failures). An edge has no
//! store and no operator calls.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::broker::Broker;
use crate::metrics::Metrics;

pub struct EdgeAdmin {
    pub broker: Broker,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: Arc<EdgeAdmin>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<EdgeAdmin>>) -> Response {
    let answer = st.broker.jetstream_reachable().await;
    let reachable = answer.is_ok();
    let check = match answer {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    let status = if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": reachable, "checks": {"jetstream": check}})),
    )
        .into_response()
}

async fn metrics(State(st): State<Arc<EdgeAdmin>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render_edge(),
    )
        .into_response()
}
