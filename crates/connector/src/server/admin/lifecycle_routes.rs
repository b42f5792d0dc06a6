//! Admin endpoints of the lifecycle, behind the admin bearer token:
//! `POST /sweeps/{version|expiry}` runs a sweep now (unless one is running),
//! `POST /sweep/confirm` releases the version sweep's brake,
//! `POST /campaigns/{name}/pause` and `/resume`.

use std::sync::Arc;

use super::bearer::AdminGate;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::admin_api::lifecycle::{
    BrakeReleased, ErrorAnswer, PauseBody, Paused, Resumed, SweepTrigger, SweepTriggered,
};

use crate::pipeline::campaign_control::ControlError;
use crate::pipeline::lifecycle::Lifecycle;
use crate::pipeline::schedule::Trigger;

pub struct LifecycleApi {
    pub lifecycle: Arc<Lifecycle>,
}

/// Every route here is behind the admin bearer token (`bearer.rs`).
pub fn router(state: Arc<LifecycleApi>, gate: Arc<AdminGate>) -> Router {
    Router::new()
        .route("/sweeps/{job}", axum::routing::post(sweep))
        .route("/sweep/confirm", axum::routing::post(confirm))
        .route("/campaigns/{name}/pause", axum::routing::post(pause))
        .route("/campaigns/{name}/resume", axum::routing::post(resume))
        .route_layer(axum::middleware::from_fn_with_state(
            gate,
            super::bearer::require_bearer,
        ))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let error = ErrorAnswer {
        error: message.into(),
    };
    (status, axum::Json(error)).into_response()
}

async fn sweep(State(st): State<Arc<LifecycleApi>>, Path(job): Path<String>) -> Response {
    let Some(j) = st.lifecycle.job(&job) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no sweep {job:?}: use version or expiry"),
        );
    };
    let (status, trigger) = match j.trigger("admin") {
        Trigger::Started => (StatusCode::ACCEPTED, SweepTrigger::Started),
        Trigger::AlreadyRunning => (StatusCode::CONFLICT, SweepTrigger::AlreadyRunning),
        Trigger::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, SweepTrigger::ShuttingDown),
    };
    (status, axum::Json(SweepTriggered { job, trigger })).into_response()
}

/// The operator confirms the members the brake holds really revoked:
/// disconnect them (re-inviting as configured) and release the brake.
async fn confirm(State(st): State<Arc<LifecycleApi>>) -> Response {
    use crate::pipeline::version_sweep::ConfirmError;
    match st.lifecycle.sweep.confirm().await {
        Ok(done) => axum::Json(BrakeReleased {
            confirmed: true,
            released: done.released,
            disconnected: done.disconnected,
            invited: done.invited,
        })
        .into_response(),
        Err(e @ (ConfirmError::Running | ConfirmError::NotEngaged)) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ ConfirmError::Store(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn control_error(e: ControlError) -> Response {
    match e {
        ControlError::Unknown(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        ControlError::Store(_) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn pause(
    State(st): State<Arc<LifecycleApi>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let body: PauseBody = if body.is_empty() {
        PauseBody { reason: None }
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("body must be {{\"reason\": \"...\"}}: {e}"),
                );
            }
        }
    };
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.len() > 500 || r.chars().any(char::is_control))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "reason: one line of at most 500 characters",
        );
    }
    match st.lifecycle.control.pause(&name, body.reason).await {
        Ok(p) => axum::Json(Paused {
            campaign: name,
            paused: true,
            reason: p.reason,
        })
        .into_response(),
        Err(e) => control_error(e),
    }
}

async fn resume(State(st): State<Arc<LifecycleApi>>, Path(name): Path<String>) -> Response {
    match st.lifecycle.control.resume(&name).await {
        Ok(was) => axum::Json(Resumed {
            campaign: name,
            paused: false,
            was_paused: was,
        })
        .into_response(),
        Err(e) => control_error(e),
    }
}
