//! HTTP: `/health`, `/metrics`, and the control API `/v1/streams`.
//!
//! Reading (`GET`, `HEAD`) is open to all. Every other method goes through [`guard`] first,
//! which applies the [`ControlAccess`] mode decided at start (401 with `WWW-Authenticate:
//! Bearer` for a missing or wrong token, 403 when the API is closed), before the body is
//! even read; `POST /v1/streams` then has its input and output checked by the
//! [`StreamPolicy`] (400) and the worker cap by the manager (429).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tracing::info;

use crate::access::{AccessError, ControlAccess};
use crate::manager::{Manager, ManagerError, Origin, StreamRequest, StreamSpec};
use crate::metrics::Metrics;
use crate::policy::{PolicyError, StreamPolicy};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Stream registry.
    pub manager: Arc<Manager>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Who may change streams.
    pub access: Arc<ControlAccess>,
    /// What a `POST /v1/streams` may read and write.
    pub policy: Arc<StreamPolicy>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/streams", get(list).post(create))
        .route("/v1/streams/{name}", get(one).delete(remove))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Lets reads through; every other request needs the access mode's consent.
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    match s.access.authorize(authorization) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            // Never the header itself: it may carry a (wrong) secret.
            info!(method = %req.method(), path = %req.uri().path(), reason = %e, "control API request refused");
            refused(e)
        }
    }
}

fn refused(e: AccessError) -> Response {
    if e.is_forbidden() {
        return err(StatusCode::FORBIDDEN, e);
    }
    let mut r = err(StatusCode::UNAUTHORIZED, &e);
    let challenge = match e {
        AccessError::WrongToken => r#"Bearer realm="media-service", error="invalid_token""#,
        _ => r#"Bearer realm="media-service""#,
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

fn err(code: StatusCode, e: impl ToString) -> Response {
    (code, Json(json!({ "error": e.to_string() }))).into_response()
}

/// 200 while the service can take streams (whatever its streams are doing: a stream
/// falling back or waiting for its input is the stream's state, shown per stream and
/// counted in `streams`); 503 once it is shutting down.
async fn health(State(s): State<AppState>) -> Response {
    let workers = s.manager.list();
    let mut streams = serde_json::Map::new();
    for w in &workers {
        let key = serde_json::to_value(w.status.dubbing)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let n = streams.get(&key).and_then(|v| v.as_u64()).unwrap_or(0);
        streams.insert(key, json!(n + 1));
    }
    let (code, status) = if s.manager.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "stopping")
    } else {
        (StatusCode::OK, "ok")
    };
    (
        code,
        Json(json!({ "status": status, "service": "media-service", "streams": streams, "workers": workers })),
    )
        .into_response()
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
    // File inputs and outputs are resolved on the file system: off the async threads.
    let policy = s.policy.clone();
    let spec = tokio::task::spawn_blocking(move || resolve(&policy, req)).await;
    let spec = match spec {
        Ok(Ok(spec)) => spec,
        Ok(Err(e)) => return err(StatusCode::BAD_REQUEST, e),
        Err(e) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("checking the request failed: {e}"),
            )
        }
    };
    match s.manager.start(spec, Origin::Api) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e @ ManagerError::Exists(_)) => err(StatusCode::CONFLICT, e),
        Err(e @ ManagerError::AtCapacity { .. }) => err(StatusCode::TOO_MANY_REQUESTS, e),
        Err(e @ ManagerError::ShuttingDown) => err(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => err(StatusCode::BAD_REQUEST, e),
    }
}

/// A request's input and output through the policy (the name is checked by the manager).
fn resolve(policy: &StreamPolicy, req: StreamRequest) -> Result<StreamSpec, PolicyError> {
    Ok(StreamSpec {
        input: req.input.as_deref().map(|i| policy.input(i)).transpose()?,
        output: req
            .output
            .as_deref()
            .map(|o| policy.output(o))
            .transpose()?,
        name: req.name,
    })
}

async fn remove(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match s.manager.stop(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => err(StatusCode::NOT_FOUND, e),
    }
}
