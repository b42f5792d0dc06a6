//! The admin API (loopback by default): `/healthz`, `/status` with the JSON
//! of DESIGN.md (plus, with the lifecycle running, `sweeps` and a
//! `campaigns` object by name), `/metrics` in Prometheus text format.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::metrics::Metrics;
use crate::store::Store;

pub struct AdminState {
    pub store: Store,
    pub current_version: u32,
    pub campaigns: Vec<String>,
    pub metrics: Arc<Metrics>,
    pub started: std::time::Instant,
    /// Sweeps and campaign states for the status document.
    pub lifecycle: Option<Arc<crate::lifecycle::Lifecycle>>,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/status", axum::routing::get(status))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

/// The status document (also what `mydex-connector status --json` prints).
pub fn status_json(
    store: &Store,
    current_version: u32,
    campaigns: &[String],
    uptime_s: u64,
) -> Result<serde_json::Value, crate::store::StoreError> {
    let c = store.counts(current_version)?;
    let mut inv = serde_json::Map::new();
    for (s, n) in &c.invitations {
        inv.insert(s.as_str().into(), (*n).into());
    }
    let notifications: serde_json::Map<String, serde_json::Value> = store
        .notification_counts()?
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    Ok(serde_json::json!({
        "invitations": inv,
        "members": { "total": c.members_total, "outdated": c.members_outdated, "disconnected": c.members_disconnected },
        "callbacks": { "unmatched": c.unmatched_callbacks, "identify": c.events_identify, "notification": c.events_notification, "notifications_by_dataset_action": notifications },
        "connection_version": current_version,
        "campaigns": campaigns,
        "uptime_seconds": uptime_s,
    }))
}

async fn status(State(st): State<Arc<AdminState>>) -> Response {
    let s = st.clone();
    match tokio::task::spawn_blocking(move || {
        let mut doc = status_json(
            &s.store,
            s.current_version,
            &s.campaigns,
            s.started.elapsed().as_secs(),
        )?;
        if let (Some(l), Some(obj)) = (&s.lifecycle, doc.as_object_mut()) {
            for (k, v) in l.status_parts() {
                obj.insert(k.into(), v);
            }
        }
        Ok::<_, crate::store::StoreError>(doc)
    })
    .await
    {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics(State(st): State<Arc<AdminState>>) -> Response {
    let mut body = st.metrics.render();
    if let Ok(c) = st.store.counts(st.current_version) {
        body += "# TYPE mydex_connector_invitations gauge\n";
        for (s, n) in &c.invitations {
            body += &format!(
                "mydex_connector_invitations{{state=\"{}\"}} {n}\n",
                s.as_str()
            );
        }
        body += "# TYPE mydex_connector_members gauge\n";
        body += &format!(
            "mydex_connector_members{{kind=\"total\"}} {}\n",
            c.members_total
        );
        body += &format!(
            "mydex_connector_members{{kind=\"outdated\"}} {}\n",
            c.members_outdated
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}
