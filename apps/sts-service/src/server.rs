//! HTTP (`/health`, `/metrics`) and the Socket.IO protocol handlers, sessions,
//! backpressure, timeouts and graceful shutdown.

use crate::admission::{
    secret_eq, Claim, Limit, OpenRefused, OwnedStream, Owner, QueuedBytes, ResumeToken, Session,
    Sessions, StreamTable, TakeOver,
};
use crate::config::{Config, Mode, MonitorPolicy};
use crate::metrics::Metrics;
use crate::pipeline::{Engines, Job, Pipeline};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use sts_protocol::{
    events, parse_payload, resume_token_of, Backpressure, BackpressureAction, ControlAck,
    ErrorBody, ErrorCode, ErrorEvent, FragmentAck, FragmentData, FragmentProcessed, FragmentStatus,
    ProtocolError, StreamComplete, StreamControl, StreamInit, StreamInitAck, Totals,
    PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
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

struct StreamState {
    pending: u32,
    client_paused: bool,
    ended: bool,
    bp_paused: bool,
    closed: bool,
    totals: Totals,
}

struct StreamEntry {
    init: StreamInit,
    session_id: String,
    owner: SocketRef,
    /// The owner's secret for taking the stream back from a new connection.
    resume_token: ResumeToken,
    /// Hands out processing slots in arrival order (see [`slot_dispatcher`]).
    slots: mpsc::UnboundedSender<oneshot::Sender<OwnedSemaphorePermit>>,
    state: Mutex<StreamState>,
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

    fn emit_backpressure(&self, entry: &StreamEntry, inflight: u32, action: BackpressureAction) {
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
                    authorize(&st, &s, auth.ok())?;
                    let session = admit(&st, &s)?;
                    register_handlers(s, st, session);
                    Ok::<(), ConnectRefused>(())
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

/// Why a connection was refused at the handshake: the message of the client's
/// `connect_error` (`{"message": "<CODE>: ..."}`).
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
struct ConnectRefused {
    code: ErrorCode,
    message: String,
}

fn authorize(st: &AppState, s: &SocketRef, auth: Option<Value>) -> Result<(), ConnectRefused> {
    let Some(expected) = st.cfg.sts_auth_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let token = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    if token.is_some_and(|t| secret_eq(t, expected)) {
        Ok(())
    } else {
        st.metrics
            .errors
            .with_label_values(&[ErrorCode::Unauthorized.as_str()])
            .inc();
        tracing::warn!(sid = %s.id, "connection refused: missing or wrong auth token");
        Err(ConnectRefused {
            code: ErrorCode::Unauthorized,
            message: "handshake auth must be {\"token\": \"...\"} matching STS_AUTH_TOKEN".into(),
        })
    }
}

/// MAX_SESSIONS: admits the connection or refuses it at the handshake.
fn admit(st: &AppState, s: &SocketRef) -> Result<Arc<Session>, ConnectRefused> {
    let io = st.io.get();
    match st.sessions.admit(s.id, |sid| {
        io.is_some_and(|io| io.get_socket(sid).is_some())
    }) {
        Ok(session) => Ok(session),
        Err(e) => {
            st.metrics.count_refusal(Limit::Sessions);
            st.metrics
                .errors
                .with_label_values(&[ErrorCode::TooManySessions.as_str()])
                .inc();
            tracing::warn!(sid = %s.id, limit = e.limit, "connection refused: MAX_SESSIONS reached");
            Err(ConnectRefused {
                code: ErrorCode::TooManySessions,
                message: e.to_string(),
            })
        }
    }
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

/// Per-stream slot dispatcher: fragments start in the order they were accepted, at most
/// `max_inflight` at once. (Tasks acquiring a semaphore themselves would start in whatever
/// order the scheduler first polls them.) A request whose fragment already timed out gets
/// its permit dropped at once. The task ends when the stream's sender is dropped.
fn slot_dispatcher(
    max_inflight: usize,
) -> mpsc::UnboundedSender<oneshot::Sender<OwnedSemaphorePermit>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<OwnedSemaphorePermit>>();
    let sem = Arc::new(Semaphore::new(max_inflight));
    tokio::spawn(async move {
        while let Some(waiter) = rx.recv().await {
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            // Err: the fragment timed out while queued; the permit returns on drop.
            let _ = waiter.send(permit);
        }
    });
    tx
}

/// Installs every event handler of an authorized, admitted socket (before its CONNECT is
/// sent).
fn register_handlers(s: SocketRef, st: Arc<AppState>, session: Arc<Session>) {
    st.metrics.clients.inc();
    {
        let st = st.clone();
        s.on(
            events::STREAM_INIT,
            move |s: SocketRef, Data(v): Data<Value>, ack: AckSender| {
                let st = st.clone();
                async move { on_stream_init(&st, s, v, ack) }
            },
        );
    }
    {
        let st = st.clone();
        s.on(
            events::FRAGMENT_DATA,
            move |s: SocketRef, Data(v): Data<Value>, ack: AckSender| {
                let st = st.clone();
                let session = session.clone();
                async move { on_fragment(st, session, s, v, ack).await }
            },
        );
    }
    for ev in [
        events::STREAM_PAUSE,
        events::STREAM_RESUME,
        events::STREAM_END,
    ] {
        let st = st.clone();
        s.on(
            ev,
            move |s: SocketRef, Data(v): Data<Value>, ack: AckSender| {
                let st = st.clone();
                async move { on_control(&st, s, ev, v, ack) }
            },
        );
    }
    {
        let st = st.clone();
        s.on(
            events::MONITOR_SUBSCRIBE,
            move |s: SocketRef, Data(v): Data<Value>, ack: AckSender| {
                let st = st.clone();
                async move { on_monitor_subscribe(&st, s, v, ack) }
            },
        );
    }
    {
        let st = st.clone();
        s.on_fallback(move |s: SocketRef, Data(_v): Data<Value>| {
            let st = st.clone();
            async move {
                tracing::debug!(sid = %s.id, "unknown event ignored");
                let _ = &st;
            }
        });
    }
    s.on_disconnect(move |s: SocketRef| {
        let st = st.clone();
        async move {
            st.metrics.clients.dec();
            st.sessions.release(s.id);
            // Its streams are closed and their ids free: a reconnecting client opens them
            // again from its new connection.
            let gone = lock(&st.streams).remove_owned_by(s.id);
            for (id, e) in gone {
                lock(&e.state).closed = true;
                st.metrics.sessions.dec();
                tracing::info!(stream = %id, "stream closed: its connection dropped (in-flight results discarded)");
            }
            tracing::info!(sid = %s.id, "client disconnected");
        }
    });
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

fn on_stream_init(st: &Arc<AppState>, s: SocketRef, v: Value, ack: AckSender) {
    let sid_hint = field(&v, "stream_id");
    let reject = |ack: AckSender, body: ErrorBody| {
        tracing::warn!(sid = %s.id, stream = ?sid_hint, code = %body.code, msg = %body.message, "stream:init rejected");
        st.emit_error(&s, &body, sid_hint.clone(), None);
        let _ = ack.send(&StreamInitAck::Rejected { error: body });
    };
    if st.shutting_down.load(Ordering::SeqCst) {
        return reject(
            ack,
            ErrorBody::new(ErrorCode::ShuttingDown, "the service is shutting down"),
        );
    }
    if let Err(e) = check_small(&v) {
        return reject(ack, e.to_body());
    }
    let presented = resume_token_of(&v);
    let init: StreamInit =
        match parse_payload::<StreamInit>(v).and_then(|i| i.validate().map(|_| i)) {
            Ok(i) => i,
            Err(e) => return reject(ack, e.to_body()),
        };
    let Some(pipeline) = st.pipeline() else {
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::ServiceNotReady,
                "models are still loading; retry when GET /health answers 200",
            ),
        );
    };
    if let Err(body) = pipeline.check_languages(&init.source_language, &init.target_language) {
        return reject(ack, body);
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let resume_token = ResumeToken::generate();
    let opened = lock(&st.streams).open(
        &init.stream_id,
        s.id,
        presented.as_deref(),
        st.cfg.max_streams_per_session as usize,
        || {
            Arc::new(StreamEntry {
                init: init.clone(),
                session_id: session_id.clone(),
                owner: s.clone(),
                resume_token: resume_token.clone(),
                slots: slot_dispatcher(st.cfg.max_inflight as usize),
                state: Mutex::new(StreamState {
                    pending: 0,
                    client_paused: false,
                    ended: false,
                    bp_paused: false,
                    closed: false,
                    totals: Totals::default(),
                }),
            })
        },
    );
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            let code = match e {
                OpenRefused::OwnedByAnother { .. } => ErrorCode::StreamAlreadyExists,
                OpenRefused::TooManyStreams { .. } => {
                    st.metrics.count_refusal(Limit::StreamsPerSession);
                    ErrorCode::TooManyStreams
                }
            };
            return reject(ack, ErrorBody::new(code, e.to_string()));
        }
    };
    match (opened.claim, opened.replaced) {
        (claim, Some(old)) => {
            lock(&old.state).closed = true;
            if let Claim::TakeOver(how) = claim {
                let how = match how {
                    TakeOver::OwnerGone => "its old connection is closed",
                    TakeOver::ResumeToken => "the new connection presented the resume token",
                };
                tracing::warn!(stream = %init.stream_id, old = %old.owner.id, new = %s.id, how, "stream taken over by a new connection (reconnect)");
                if old.owner.connected() {
                    let body = ErrorBody::new(
                        ErrorCode::NotStreamOwner,
                        format!(
                            "stream {:?} was taken over by another connection ({how}); results of its earlier fragments are discarded",
                            init.stream_id
                        ),
                    );
                    st.emit_error(&old.owner, &body, Some(init.stream_id.clone()), None);
                }
            }
        }
        (_, None) => st.metrics.sessions.inc(),
    }
    tracing::info!(stream = %init.stream_id, session = %session_id, rate = init.audio.sample_rate_hz, channels = init.audio.channels, src = %init.source_language, tgt = %init.target_language, "stream opened");
    let _ = ack.send(&StreamInitAck::Ready {
        session_id,
        resume_token: Some(resume_token.expose().to_string()),
        max_inflight: st.cfg.max_inflight,
        max_fragment_bytes: st.cfg.max_fragment_bytes,
        protocol_version: PROTOCOL_VERSION.into(),
    });
}

/// Why a stream does not take fragments now (None: it does).
fn not_accepting(state: &StreamState) -> Option<ErrorBody> {
    if state.ended || state.closed {
        Some(ErrorBody::new(
            ErrorCode::StreamNotAccepting,
            "stream:end was sent; no more fragments are accepted",
        ))
    } else if state.client_paused {
        Some(ErrorBody::new(
            ErrorCode::StreamNotAccepting,
            "stream is paused (stream:pause); send stream:resume first",
        ))
    } else {
        None
    }
}

/// Answers a refused `fragment:data` (ack, `error` event, log, metric), naming the ids
/// known so far.
struct FragmentRejecter<'a> {
    st: &'a AppState,
    s: &'a SocketRef,
    stream: Option<String>,
    fragment: Option<String>,
}

impl FragmentRejecter<'_> {
    fn reject(&self, ack: AckSender, body: ErrorBody) {
        self.st
            .metrics
            .rejected
            .with_label_values(&[body.code.as_str()])
            .inc();
        tracing::warn!(sid = %self.s.id, stream = ?self.stream, fragment = ?self.fragment, code = %body.code, msg = %body.message, "fragment rejected");
        self.st
            .emit_error(self.s, &body, self.stream.clone(), self.fragment.clone());
        let _ = ack.send(&FragmentAck::Rejected { error: body });
    }
}

/// Parses a `fragment:data` payload; a large pre-serialised (string) payload is parsed on
/// the blocking pool.
async fn parse_fragment(v: Value) -> Result<FragmentData, ProtocolError> {
    match v {
        Value::String(s) if s.len() > DECODE_INLINE_MAX => {
            tokio::task::spawn_blocking(move || parse_payload(Value::String(s)))
                .await
                .unwrap_or_else(|e| {
                    Err(ProtocolError::MalformedJson(format!(
                        "parsing stopped: {e}"
                    )))
                })
        }
        v => parse_payload(v),
    }
}

/// Validates and decodes the fragment's audio on the blocking pool; returns the fragment
/// without its base64 text, and the samples.
async fn decode_fragment(
    mut frag: FragmentData,
    format: sts_protocol::AudioFormat,
    max_bytes: usize,
) -> Result<(FragmentData, Vec<i16>), ProtocolError> {
    let run = move || {
        let samples = frag.validate_and_decode(&format, max_bytes);
        frag.audio.data = String::new();
        samples.map(|s| (frag, s))
    };
    tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
        Err(ProtocolError::InvalidBase64(format!(
            "decoding stopped: {e}"
        )))
    })
}

async fn on_fragment(
    st: Arc<AppState>,
    session: Arc<Session>,
    s: SocketRef,
    v: Value,
    ack: AckSender,
) {
    // `answer_within_ms` counts from receipt.
    let received = Instant::now();
    let mut to = FragmentRejecter {
        st: &st,
        s: &s,
        stream: field(&v, "stream_id"),
        fragment: field(&v, "fragment_id"),
    };
    if st.shutting_down.load(Ordering::SeqCst) {
        return to.reject(
            ack,
            ErrorBody::new(ErrorCode::ShuttingDown, "the service is shutting down"),
        );
    }
    let frag: FragmentData = match parse_fragment(v).await {
        Ok(f) => f,
        Err(e) => return to.reject(ack, e.to_body()),
    };
    to.stream = Some(frag.stream_id.clone());
    to.fragment = Some(frag.fragment_id.clone());
    let reject = |ack: AckSender, body: ErrorBody| to.reject(ack, body);
    let entry = {
        let streams = lock(&st.streams);
        match streams.get(&frag.stream_id) {
            Some(e) => e,
            None => {
                let owns_any = streams.owned_by(s.id) > 0;
                drop(streams);
                return reject(
                    ack,
                    if owns_any {
                        ErrorBody::new(
                            ErrorCode::UnknownStream,
                            format!(
                                "stream {:?} is not open; send stream:init first",
                                frag.stream_id
                            ),
                        )
                    } else {
                        ErrorBody::new(
                            ErrorCode::StreamNotInitialized,
                            format!(
                                "no stream:init on this connection before fragment for {:?}",
                                frag.stream_id
                            ),
                        )
                    },
                );
            }
        }
    };
    if entry.owner.id != s.id {
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::NotStreamOwner,
                format!("stream {:?} belongs to another connection", frag.stream_id),
            ),
        );
    }
    // Cheap checks first; then the bytes are reserved before any decoding, so a client
    // cannot make the server hold more than MAX_QUEUED_BYTES_PER_SESSION of its audio.
    let max_bytes = st.cfg.max_fragment_bytes;
    let bound = match frag.check_header(&entry.init.audio, max_bytes) {
        Ok(b) => b,
        Err(e) => return reject(ack, e.to_body()),
    };
    if let Some(body) = not_accepting(&lock(&entry.state)) {
        return reject(ack, body);
    }
    let mut queued: QueuedBytes = match session.reserve(bound) {
        Ok(q) => q,
        Err(e) => {
            st.metrics.count_refusal(Limit::QueuedBytesPerSession);
            return reject(
                ack,
                ErrorBody::new(ErrorCode::SessionQueueFull, e.to_string()),
            );
        }
    };
    let decoded = if frag.audio.data.len() > DECODE_INLINE_MAX {
        decode_fragment(frag, entry.init.audio.clone(), max_bytes).await
    } else {
        frag.validate_and_decode(&entry.init.audio, max_bytes)
            .map(|samples| (frag, samples))
    };
    let (frag, samples) = match decoded {
        Ok(x) => x,
        Err(e) => return reject(ack, e.to_body()),
    };
    queued.shrink_to(samples.len() * 2);
    let Some(pipeline) = st.pipeline() else {
        return reject(
            ack,
            ErrorBody::new(ErrorCode::ServiceNotReady, "models are still loading"),
        );
    };

    let max = st.cfg.max_inflight;
    let mut bp: Option<(u32, BackpressureAction)> = None;
    {
        let mut state = lock(&entry.state);
        // Checked again: the stream may have ended, paused or closed during the decode.
        if let Some(body) = not_accepting(&state) {
            drop(state);
            return reject(ack, body);
        }
        if state.pending >= 2 * max {
            let first = !state.bp_paused;
            state.bp_paused = true;
            let p = state.pending;
            drop(state);
            if first {
                st.emit_backpressure(&entry, p, BackpressureAction::Pause);
            }
            return reject(ack, ErrorBody::new(ErrorCode::Backpressure, format!("{p} fragments are queued or processing (limit {}); wait for backpressure resume", 2 * max)));
        }
        state.pending += 1;
        if state.pending == 2 * max {
            state.bp_paused = true;
            bp = Some((state.pending, BackpressureAction::Pause));
        } else if state.pending == max {
            bp = Some((state.pending, BackpressureAction::SlowDown));
        }
    }
    st.metrics.inflight.inc();
    let _ = ack.send(&FragmentAck::Accepted);
    if let Some((n, a)) = bp {
        st.emit_backpressure(&entry, n, a);
    }
    tracing::debug!(stream = %frag.stream_id, seq = frag.sequence_number, "fragment accepted");
    let job = Job {
        fragment_id: frag.fragment_id,
        stream_id: frag.stream_id,
        sequence_number: frag.sequence_number,
        duration_ms: frag.duration_ms,
        samples,
        format: entry.init.audio.clone(),
        source_language: entry.init.source_language.clone(),
        target_language: entry.init.target_language.clone(),
        voice: entry.init.voice.clone(),
        deadline: frag
            .answer_within_ms
            .map(|ms| received + Duration::from_millis(u64::from(ms))),
    };
    let st2 = st.clone();
    // Ask for a processing slot here, in the handler, so slots go out in acceptance order.
    let (slot_tx, slot_rx) = oneshot::channel();
    let _ = entry.slots.send(slot_tx);
    st.tracker.spawn(run_fragment(
        st2,
        entry,
        pipeline,
        job,
        Accepted {
            slot: slot_rx,
            at: Instant::now(),
            queued,
        },
    ));
}

/// What an accepted fragment holds until it is answered.
struct Accepted {
    /// Its processing slot, once granted.
    slot: oneshot::Receiver<OwnedSemaphorePermit>,
    /// When it was accepted (PROCESSING_TIMEOUT and processing_time_ms run from here).
    at: Instant,
    /// Its bytes, counted against its connection's MAX_QUEUED_BYTES_PER_SESSION.
    queued: QueuedBytes,
}

async fn run_fragment(
    st: Arc<AppState>,
    entry: Arc<StreamEntry>,
    pipeline: Arc<Pipeline>,
    job: Job,
    accepted: Accepted,
) {
    // `_queued` is released when this function returns: after the answer was handed to
    // the connection, or the fragment was discarded.
    let Accepted {
        slot: slot_rx,
        at: accepted,
        queued: _queued,
    } = accepted;
    // The whole wait for a slot counts against the timeout.
    let timeout = Duration::from_secs_f64(st.cfg.processing_timeout);
    let ids = (
        job.fragment_id.clone(),
        job.stream_id.clone(),
        job.sequence_number,
    );
    let entry2 = entry.clone();
    let res = tokio::time::timeout(timeout, async move {
        let _permit = slot_rx.await;
        // A stream whose connection dropped (or that was taken over) discards its results:
        // do not spend an engine on them, and free the audio now.
        if lock(&entry2.state).closed {
            return None;
        }
        Some(pipeline.process(job).await)
    })
    .await;
    let res = match res {
        Ok(None) => {
            st.metrics.inflight.dec();
            let mut s = lock(&entry.state);
            s.pending = s.pending.saturating_sub(1);
            tracing::debug!(stream = %ids.1, seq = ids.2, "fragment skipped: its stream closed before processing began");
            return;
        }
        Ok(Some(ev)) => Ok(ev),
        Err(e) => Err(e),
    };
    let ev = match res {
        Ok(mut ev) => {
            // The protocol's processing_time_ms runs from acceptance (queue wait included).
            ev.processing_time_ms = accepted.elapsed().as_millis() as u64;
            ev
        }
        Err(_) => FragmentProcessed {
            fragment_id: ids.0,
            stream_id: ids.1,
            sequence_number: ids.2,
            status: FragmentStatus::Timeout,
            dubbed_audio: None,
            transcript: String::new(),
            translated_text: String::new(),
            processing_time_ms: accepted.elapsed().as_millis() as u64,
            stage_ms: Default::default(),
            error: Some(ErrorBody::new(
                ErrorCode::ProcessingTimeout,
                format!(
                    "not processed within PROCESSING_TIMEOUT={} s",
                    st.cfg.processing_timeout
                ),
            )),
        },
    };
    let status = ev.status.as_str();
    st.metrics.fragments.with_label_values(&[status]).inc();
    st.metrics
        .fragment
        .with_label_values(&[status])
        .observe(accepted.elapsed().as_secs_f64());
    st.metrics.inflight.dec();
    match ev.status {
        FragmentStatus::Success | FragmentStatus::Partial => tracing::info!(
            stream = %ev.stream_id, seq = ev.sequence_number, status, ms = ev.processing_time_ms,
            asr = ev.stage_ms.asr, mt = ev.stage_ms.translation, tts = ev.stage_ms.tts, fit = ev.stage_ms.fit,
            transcript = %ev.transcript, translation = %ev.translated_text, "fragment processed"),
        FragmentStatus::NoSpeech => tracing::info!(
            stream = %ev.stream_id, seq = ev.sequence_number, status, ms = ev.processing_time_ms,
            asr = ev.stage_ms.asr, "no speech in the fragment: nothing to dub, the client keeps its original audio"),
        _ => tracing::warn!(
            stream = %ev.stream_id, seq = ev.sequence_number, status, ms = ev.processing_time_ms,
            error = ?ev.error.as_ref().map(|e| &e.message), "fragment not dubbed; the client should use its original audio"),
    }
    let (closed, resume, complete) = {
        let mut s = lock(&entry.state);
        s.pending = s.pending.saturating_sub(1);
        s.totals.add(ev.status);
        let resume = if s.bp_paused && s.pending < st.cfg.max_inflight {
            s.bp_paused = false;
            true
        } else {
            false
        };
        let complete = s.ended && s.pending == 0 && !s.closed;
        if complete {
            s.closed = true;
        }
        (
            s.closed && !complete,
            resume.then_some(s.pending),
            complete.then_some(s.totals),
        )
    };
    if closed {
        tracing::debug!(stream = %ev.stream_id, seq = ev.sequence_number, "result discarded: stream closed");
        return;
    }
    st.emit_to_stream(&entry, events::FRAGMENT_PROCESSED, &ev)
        .await;
    if let Some(p) = resume {
        st.emit_backpressure(&entry, p, BackpressureAction::Resume);
    }
    if let Some(totals) = complete {
        finish_stream(&st, &entry, totals).await;
    }
}

async fn finish_stream(st: &AppState, entry: &StreamEntry, totals: Totals) {
    let id = entry.init.stream_id.clone();
    if lock(&st.streams).remove_if(&id, |e| e.session_id == entry.session_id) {
        st.metrics.sessions.dec();
    }
    tracing::info!(stream = %id, success = totals.success, partial = totals.partial, failed = totals.failed, timeout = totals.timeout, "stream complete");
    st.emit_to_stream(
        entry,
        events::STREAM_COMPLETE,
        &StreamComplete {
            stream_id: id,
            totals,
        },
    )
    .await;
}

fn on_control(st: &Arc<AppState>, s: SocketRef, ev: &'static str, v: Value, ack: AckSender) {
    let hint = field(&v, "stream_id");
    let reject = |ack: AckSender, body: ErrorBody| {
        st.emit_error(&s, &body, hint.clone(), None);
        let _ = ack.send(&ControlAck::Rejected { error: body });
    };
    let c: StreamControl = match check_small(&v)
        .and_then(|_| parse_payload::<StreamControl>(v))
        .and_then(|c| c.validate().map(|_| c))
    {
        Ok(c) => c,
        Err(e) => return reject(ack, e.to_body()),
    };
    let Some(entry) = lock(&st.streams).get(&c.stream_id) else {
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::UnknownStream,
                format!("stream {:?} is not open", c.stream_id),
            ),
        );
    };
    if entry.owner.id != s.id {
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::NotStreamOwner,
                format!("stream {:?} belongs to another connection", c.stream_id),
            ),
        );
    }
    let complete = {
        let mut state = lock(&entry.state);
        match ev {
            events::STREAM_PAUSE => state.client_paused = true,
            events::STREAM_RESUME => state.client_paused = false,
            _ => state.ended = true,
        }
        if state.ended && state.pending == 0 && !state.closed {
            state.closed = true;
            Some(state.totals)
        } else {
            None
        }
    };
    tracing::info!(stream = %c.stream_id, event = ev, "stream control");
    let _ = ack.send(&ControlAck::Ok);
    if let Some(totals) = complete {
        let st = st.clone();
        tokio::spawn(async move { finish_stream(&st, &entry, totals).await });
    }
}

/// `monitor:subscribe`: join the observers of a stream, as far as MONITOR allows (and at
/// most MAX_STREAMS_PER_SESSION subscriptions per connection).
fn on_monitor_subscribe(st: &Arc<AppState>, s: SocketRef, v: Value, ack: AckSender) {
    let reject = |ack: AckSender, body: ErrorBody, stream: Option<String>| {
        tracing::warn!(sid = %s.id, stream = ?stream, code = %body.code, msg = %body.message, "monitor:subscribe rejected");
        st.emit_error(&s, &body, stream, None);
        let _ = ack.send(&ControlAck::Rejected { error: body });
    };
    let c = match check_small(&v)
        .and_then(|_| parse_payload::<StreamControl>(v))
        .and_then(|c| c.validate().map(|_| c))
    {
        Ok(c) => c,
        Err(e) => return reject(ack, e.to_body(), None),
    };
    let has_token = st
        .cfg
        .sts_auth_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    let refusal = match st.cfg.monitor {
        MonitorPolicy::Open => None,
        MonitorPolicy::Token if has_token => None,
        MonitorPolicy::Token => Some(
            "monitoring needs STS_AUTH_TOKEN (MONITOR=token) and this server has none; set STS_AUTH_TOKEN, or MONITOR=open on a trusted network",
        ),
        MonitorPolicy::Off => Some("monitoring is disabled on this server (MONITOR=off)"),
    };
    if let Some(why) = refusal {
        return reject(
            ack,
            ErrorBody::new(ErrorCode::MonitorNotAllowed, why),
            Some(c.stream_id),
        );
    }
    let room = room(&c.stream_id);
    let rooms = s.rooms();
    let limit = st.cfg.max_streams_per_session as usize;
    if !rooms.iter().any(|r| r.as_ref() == room.as_str()) && rooms.len() >= limit {
        st.metrics.count_refusal(Limit::StreamsPerSession);
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::TooManyStreams,
                format!("this connection already watches {} streams (MAX_STREAMS_PER_SESSION={limit}, which also bounds monitor subscriptions)", rooms.len()),
            ),
            Some(c.stream_id),
        );
    }
    s.join(room);
    tracing::info!(sid = %s.id, stream = %c.stream_id, "monitor subscribed");
    let _ = ack.send(&ControlAck::Ok);
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
