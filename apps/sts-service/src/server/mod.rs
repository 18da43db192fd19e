//! HTTP (`/health`, `/metrics`) and the Socket.IO protocol, one module per handler:
//! `connection` (handshake: auth, MAX_SESSIONS, handler registration, disconnect),
//! `init` (`stream:init`), `fragment` (`fragment:data`, processing slots, answers),
//! `control` (`stream:pause` / `stream:resume` / `stream:end`), `monitor`
//! (`monitor:subscribe`); [`stream_state`] holds one stream's flow control and lifecycle.
//! This module starts the server and holds what the handlers share ([`AppState`]), and
//! graceful shutdown.

mod connection;
mod control;
mod fragment;
mod init;
mod monitor;
pub mod stream_state;

use crate::admission::{OwnedStream, Owner, ResumeToken, Sessions, StreamTable};
use crate::config::{Config, Mode, MonitorPolicy};
use crate::metrics::Metrics;
use crate::pipeline::{Engines, Pipeline};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use stream_state::{Signal, StreamState};
use sts_protocol::{
    events, Backpressure, BackpressureAction, ErrorBody, ErrorCode, ErrorEvent, ProtocolError,
    StreamComplete, StreamInit, Totals, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Socket.IO engine payload limit: the largest fragment in base64 plus JSON overhead, so
/// oversize fragments reach our validation (and get PAYLOAD_TOO_LARGE) up to 2x the limit.
fn engine_max_payload(max_fragment_bytes: usize) -> u64 {
    (max_fragment_bytes as u64 * 8 / 3) + 64 * 1024
}

/// Packets the server buffers for one connection before emits to it fail. It bounds what a
/// client that stops reading can make the server hold (each answer is up to 4/3 of
/// MAX_FRAGMENT_BYTES as base64); a reading client never has more than its in-flight
/// answers, acks and flow-control events queued.
const OUTGOING_BUFFER_PACKETS: usize = 128;

/// Payloads (base64 audio, or a pre-serialised JSON string) longer than this are decoded
/// or parsed on the blocking pool, not on the async threads (a 6 s fragment of 16 kHz mono
/// is 256 KB of base64; decoding the largest accepted fragment takes milliseconds).
const DECODE_INLINE_MAX: usize = 64 * 1024;

/// An open stream: its parameters, its owner and its state.
struct StreamEntry {
    init: StreamInit,
    session_id: String,
    owner: SocketRef,
    /// The owner's secret for taking the stream back from a new connection.
    resume_token: ResumeToken,
    /// Hands out processing slots in arrival order (see `fragment::slot_dispatcher`).
    slots: mpsc::UnboundedSender<oneshot::Sender<OwnedSemaphorePermit>>,
    /// Flow control and lifecycle (see [`StreamState`]).
    state: Mutex<StreamState>,
}

impl StreamEntry {
    /// `NOT_STREAM_OWNER` unless `s` is the stream's owner.
    fn check_owner(&self, s: &SocketRef) -> Result<(), ErrorBody> {
        if self.owner.id == s.id {
            Ok(())
        } else {
            Err(ErrorBody::new(
                ErrorCode::NotStreamOwner,
                format!(
                    "stream {:?} belongs to another connection",
                    self.init.stream_id
                ),
            ))
        }
    }
}

impl OwnedStream for StreamEntry {
    fn owner(&self) -> Owner<'_> {
        Owner {
            conn: self.owner.id,
            alive: self.owner.connected(),
            token: &self.resume_token,
        }
    }
}

/// Shared state of a running server.
pub struct AppState {
    cfg: Arc<Config>,
    metrics: Metrics,
    pipeline: OnceLock<Arc<Pipeline>>,
    health: OnceLock<Value>,
    streams: Mutex<StreamTable<StreamEntry>>,
    sessions: Sessions,
    io: OnceLock<SocketIo>,
    shutting_down: AtomicBool,
    tracker: TaskTracker,
}

fn room(stream_id: &str) -> String {
    format!("stream:{stream_id}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps inconsistent in a way that
    // matters more than stopping service; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AppState {
    fn emit_error(
        &self,
        s: &SocketRef,
        body: &ErrorBody,
        stream_id: Option<String>,
        fragment_id: Option<String>,
    ) {
        self.metrics
            .errors
            .with_label_values(&[body.code.as_str()])
            .inc();
        let ev = ErrorEvent {
            code: body.code,
            message: body.message.clone(),
            fragment_id,
            stream_id,
        };
        if let Err(e) = s.emit(events::ERROR, &ev) {
            tracing::debug!(sid = %s.id, error = %e, "could not send error event");
        }
    }

    fn emit_backpressure(&self, entry: &StreamEntry, signal: Signal) {
        let Signal { inflight, action } = signal;
        let name = match action {
            BackpressureAction::SlowDown => "slow_down",
            BackpressureAction::Pause => "pause",
            BackpressureAction::Resume => "resume",
        };
        self.metrics.backpressure.with_label_values(&[name]).inc();
        tracing::info!(stream = %entry.init.stream_id, inflight, action = name, "backpressure");
        let ev = Backpressure {
            stream_id: entry.init.stream_id.clone(),
            inflight,
            max_inflight: self.cfg.max_inflight,
            action,
        };
        let _ = entry.owner.emit(events::BACKPRESSURE, &ev);
    }

    async fn emit_to_stream<T: serde::Serialize>(
        &self,
        entry: &StreamEntry,
        event: &str,
        payload: &T,
    ) {
        if entry.owner.connected() {
            if let Err(e) = entry.owner.emit(event, payload) {
                tracing::warn!(stream = %entry.init.stream_id, error = %e, "could not send {event} to the stream owner");
            }
        }
        if let Some(io) = self.io.get() {
            let _ = io
                .to(room(&entry.init.stream_id))
                .emit(event, payload)
                .await;
        }
    }

    fn pipeline(&self) -> Option<Arc<Pipeline>> {
        self.pipeline.get().cloned()
    }

    /// Sends `stream:complete` for a stream that ended and drained, and frees its id.
    async fn finish_stream(&self, entry: &StreamEntry, totals: Totals) {
        let id = entry.init.stream_id.clone();
        if lock(&self.streams).remove_if(&id, |e| e.session_id == entry.session_id) {
            self.metrics.sessions.dec();
        }
        tracing::info!(stream = %id, success = totals.success, partial = totals.partial, failed = totals.failed, timeout = totals.timeout, "stream complete");
        self.emit_to_stream(
            entry,
            events::STREAM_COMPLETE,
            &StreamComplete {
                stream_id: id,
                totals,
            },
        )
        .await;
    }
}

/// A running server (returned by [`start`]).
pub struct RunningServer {
    /// Bound address (port 0 resolved).
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Asks for a graceful shutdown (same as SIGTERM).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that triggers graceful shutdown when cancelled (for signal handlers).
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for the server to stop; returns its error if models failed to load.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await?
    }
}

/// Binds, starts loading models in the background and serves until `shutdown` is cancelled.
/// `/health` answers 503 until the models are ready. A model/provider that fails to load
/// stops the server with that error.
pub async fn start(cfg: Config) -> anyhow::Result<RunningServer> {
    use anyhow::Context as _;
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = Arc::new(cfg);
    let metrics = Metrics::new();
    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        metrics: metrics.clone(),
        pipeline: OnceLock::new(),
        health: OnceLock::new(),
        streams: Mutex::new(StreamTable::default()),
        sessions: Sessions::new(
            cfg.max_sessions as usize,
            cfg.max_queued_bytes_per_session,
            metrics.queued_bytes.clone(),
        ),
        io: OnceLock::new(),
        shutting_down: AtomicBool::new(false),
        tracker: TaskTracker::new(),
    });

    let (layer, io) = SocketIo::builder()
        .max_payload(engine_max_payload(cfg.max_fragment_bytes))
        // Large uploads over polling/slow links: be generous before declaring a peer dead.
        .ping_timeout(Duration::from_secs(60))
        .max_buffer_size(OUTGOING_BUFFER_PACKETS)
        .build_layer();
    let _ = state.io.set(io.clone());
    {
        let st = state.clone();
        // Event handlers are registered in the middleware, not in the connect handler:
        // socketioxide sends the CONNECT packet before it spawns the (async) connect
        // handler, so a client that emits on `connect` (every standard client may) could
        // otherwise reach a socket with no handlers yet and lose that event.
        io.ns(
            "/",
            (|s: SocketRef| async move {
                tracing::info!(sid = %s.id, "client connected");
            })
            .with(move |s: SocketRef, TryData(auth): TryData<Value>| {
                let st = st.clone();
                async move {
                    connection::authorize(&st, &s, auth.ok())?;
                    let session = connection::admit(&st, &s)?;
                    connection::register_handlers(s, st, session);
                    Ok::<(), connection::ConnectRefused>(())
                }
            }),
        );
    }

    let app = axum::Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_handler))
        .with_state(state.clone())
        .layer(layer);
    let addr = SocketAddr::new(cfg.host, cfg.port);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot bind {addr} (STS_PORT={}, HOST={})",
            cfg.port, cfg.host
        )
    })?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, mode = ?cfg.mode, max_sessions = cfg.max_sessions,
        max_streams_per_session = cfg.max_streams_per_session,
        max_queued_bytes_per_session = cfg.max_queued_bytes_per_session,
        monitor = ?cfg.monitor, "sts-service listening; loading models");
    if let Some(warning) = open_access_warning(&cfg) {
        tracing::warn!("{warning}");
    }

    let shutdown = CancellationToken::new();
    let load_failed = CancellationToken::new();
    let load_err: Arc<Mutex<Option<anyhow::Error>>> = Arc::new(Mutex::new(None));

    // Background model load.
    {
        let state = state.clone();
        let load_failed = load_failed.clone();
        let load_err = load_err.clone();
        tokio::spawn(async move {
            let cfg2 = state.cfg.clone();
            let t = Instant::now();
            if cfg2.load_delay_ms > 0 {
                tracing::warn!(
                    load_delay_ms = cfg2.load_delay_ms,
                    "LOAD_DELAY_MS (a test setting) delays the model load"
                );
                tokio::time::sleep(Duration::from_millis(cfg2.load_delay_ms)).await;
            }
            let res = if cfg2.mode == Mode::Echo {
                Ok(Pipeline::echo(&cfg2, state.metrics.clone()))
            } else {
                let c = cfg2.clone();
                match tokio::task::spawn_blocking(move || Engines::load(&c)).await {
                    Ok(Ok(engines)) => Ok(Pipeline::with_engines(
                        &cfg2,
                        engines,
                        state.metrics.clone(),
                    )),
                    Ok(Err(e)) => Err(anyhow::anyhow!("{e}")),
                    Err(e) => Err(anyhow::anyhow!("model loading panicked: {e}")),
                }
            };
            match res {
                Ok(p) => {
                    let info = health_info(&cfg2, &p);
                    let _ = state.health.set(info);
                    let _ = state.pipeline.set(Arc::new(p));
                    state.metrics.ready.set(1);
                    tracing::info!(
                        elapsed_ms = t.elapsed().as_millis() as u64,
                        "models loaded; ready"
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "model loading failed; stopping");
                    *lock(&load_err) = Some(e);
                    load_failed.cancel();
                }
            }
        });
    }

    let sd = shutdown.clone();
    let st = state.clone();
    let handle = tokio::spawn(async move {
        let lf = load_failed.clone();
        let signal = async move {
            tokio::select! {
                _ = sd.cancelled() => {},
                _ = lf.cancelled() => {},
            }
            st.shutting_down.store(true, Ordering::SeqCst);
            let n = st.tracker.len();
            tracing::info!(
                in_flight = n,
                "shutting down: refusing new work, finishing in-flight fragments"
            );
            st.tracker.close();
            // In-flight fragments end by their own PROCESSING_TIMEOUT at the latest.
            let grace = Duration::from_secs_f64(st.cfg.processing_timeout + 5.0);
            let _ = tokio::time::timeout(grace, st.tracker.wait()).await;
            if let Some(io) = st.io.get() {
                // Bounded: a stale engine.io session once kept close() (and the process)
                // waiting forever after SIGTERM.
                if tokio::time::timeout(Duration::from_secs(5), io.clone().close())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "some Socket.IO connections did not close within 5 s; stopping anyway"
                    );
                }
            }
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await?;
        if let Some(e) = lock(&load_err).take() {
            return Err(e);
        }
        tracing::info!("stopped");
        Ok(())
    });
    Ok(RunningServer {
        addr: local,
        shutdown,
        handle,
    })
}

fn health_info(cfg: &Config, p: &Pipeline) -> Value {
    match p.engines() {
        None => {
            json!({"status": "ok", "mode": "echo", "echo_delay_ms": cfg.echo_delay_ms, "protocol_version": PROTOCOL_VERSION})
        }
        Some(e) => json!({
            "status": "ok",
            "mode": "full",
            "protocol_version": PROTOCOL_VERSION,
            "asr": {"provider": "ctranslate2-whisper", "model": e.asr.info().model, "path": e.asr.info().path,
                    "compute_type": e.asr.info().compute_type, "multilingual": e.asr.info().multilingual,
                    "window_s": e.asr.info().window_s, "beam_size": e.asr.info().beam_size},
            "translation": {"provider": e.mt.name()},
            "tts": {"provider": e.tts.name(), "model": cfg.tts_model},
            "device": "cpu",
            "max_inflight": cfg.max_inflight,
            "processing_timeout_s": cfg.processing_timeout,
        }),
    }
}

async fn health(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    if st.shutting_down.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        );
    }
    match st.health.get() {
        Some(v) => (StatusCode::OK, Json(v.clone())),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        ),
    }
}

async fn metrics_handler(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        st.metrics.render(),
    )
}

/// The start-up warning for a service anyone on the network can use, if that is the case.
fn open_access_warning(cfg: &Config) -> Option<String> {
    let has_token = cfg.sts_auth_token.as_deref().is_some_and(|t| !t.is_empty());
    if has_token || cfg.host.is_loopback() {
        return None;
    }
    let monitor = match cfg.monitor {
        MonitorPolicy::Open => {
            " and read every stream's transcripts and dubbed audio (monitor:subscribe)"
        }
        MonitorPolicy::Token | MonitorPolicy::Off => "",
    };
    Some(format!(
        "STS_AUTH_TOKEN is not set and HOST={} is not a loopback address: anyone who reaches port {} can open streams and use the models{monitor}; set STS_AUTH_TOKEN (and the same value in the media-service), or bind HOST=127.0.0.1 on a trusted network",
        cfg.host, cfg.port
    ))
}

/// A string field of a payload, for error reports before the payload is parsed. Large
/// pre-serialised payloads are not parsed here (that happens once, off the async threads).
fn field(v: &Value, name: &str) -> Option<String> {
    match v {
        Value::String(s) if s.len() <= DECODE_INLINE_MAX => serde_json::from_str::<Value>(s)
            .ok()?
            .get(name)?
            .as_str()
            .map(str::to_string),
        Value::String(_) => None,
        o => o.get(name)?.as_str().map(str::to_string),
    }
}

/// Longest pre-serialised (string) payload accepted for `stream:init`, the stream controls
/// and `monitor:subscribe` (they are a few hundred bytes; only fragments carry audio).
const CONTROL_PAYLOAD_MAX: usize = DECODE_INLINE_MAX;

/// Refuses a control payload too large to be parsed on an async thread.
fn check_small(v: &Value) -> Result<(), ProtocolError> {
    match v {
        Value::String(s) if s.len() > CONTROL_PAYLOAD_MAX => Err(ProtocolError::MalformedJson(
            format!(
                "payload string of {} bytes; this event's payload is at most {CONTROL_PAYLOAD_MAX} bytes",
                s.len()
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn cfg(args: &[&str]) -> Config {
        let mut v = vec!["sts-service"];
        v.extend_from_slice(args);
        Config::try_parse_from(v).unwrap()
    }

    #[test]
    fn open_access_is_warned_about_unless_loopback_or_token() {
        let w = open_access_warning(&cfg(&[])).expect("default: 0.0.0.0, no token");
        assert!(
            w.contains("STS_AUTH_TOKEN") && w.contains("HOST=0.0.0.0") && w.contains("3000"),
            "{w}"
        );
        assert!(
            w.contains("monitor:subscribe"),
            "MONITOR=open is named: {w}"
        );
        let w = open_access_warning(&cfg(&["--monitor", "off"])).unwrap();
        assert!(!w.contains("monitor:subscribe"), "{w}");
        assert!(open_access_warning(&cfg(&["--host", "127.0.0.1"])).is_none());
        assert!(open_access_warning(&cfg(&["--host", "::1"])).is_none());
        assert!(open_access_warning(&cfg(&["--sts-auth-token", "t0ken"])).is_none());
        // An empty token is no token.
        assert!(open_access_warning(&cfg(&["--sts-auth-token", ""])).is_some());
    }

    #[test]
    fn oversize_control_payloads_are_refused_unparsed() {
        let big = Value::String(format!("{{\"stream_id\": \"{}\"}}", "x".repeat(70_000)));
        let e = check_small(&big).unwrap_err();
        assert_eq!(e.code(), ErrorCode::MalformedJson);
        assert!(e.to_string().contains("65536"), "{e}");
        assert!(check_small(&json!({"stream_id": "x".repeat(70_000)})).is_ok());
        assert!(check_small(&Value::String("{}".into())).is_ok());
        // Hints are not read from large strings (that would parse them here).
        assert_eq!(field(&big, "stream_id"), None);
        assert_eq!(
            field(&Value::String("{\"stream_id\": \"s\"}".into()), "stream_id").as_deref(),
            Some("s")
        );
    }
}
