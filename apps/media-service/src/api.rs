//! HTTP: `/health`, `/metrics`, and the control API `/v1/streams`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::manager::{Manager, ManagerError, Origin, StreamRequest};
use crate::metrics::Metrics;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Stream registry.
    pub manager: Arc<Manager>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/streams", get(list).post(create))
        .route("/v1/streams/{name}", get(one).delete(remove))
        .with_state(state)
}

fn err(code: StatusCode, e: impl ToString) -> Response {
    (code, Json(json!({ "error": e.to_string() }))).into_response()
}

async fn health(State(s): State<AppState>) -> Response {
    let workers = s.manager.list();
    Json(json!({ "status": "ok", "service": "media-service", "workers": workers })).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn list(State(s): State<AppState>) -> Response {
    Json(json!({ "streams": s.manager.list() })).into_response()
}

async fn one(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match s.manager.list().into_iter().find(|v| v.name == name) {
        Some(v) => Json(v).into_response(),
        None => err(StatusCode::NOT_FOUND, ManagerError::NotFound(name)),
    }
}

async fn create(
    State(s): State<AppState>,
    body: Result<Json<StreamRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return err(
                StatusCode::BAD_REQUEST,
                format!("{}: expected JSON {{\"name\": \"<stream>\", \"input\"?: \"<uri>\", \"output\"?: \"<rtmp url or file>\"}}", e.body_text()),
            )
        }
    };
    match s.manager.start(req, Origin::Api) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e @ ManagerError::Exists(_)) => err(StatusCode::CONFLICT, e),
        Err(e @ ManagerError::ShuttingDown) => err(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => err(StatusCode::BAD_REQUEST, e),
    }
}

async fn remove(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match s.manager.stop(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => err(StatusCode::NOT_FOUND, e),
    }
}
