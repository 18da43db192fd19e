//! HTTP (`/health`, `/metrics`) and the Socket.IO protocol handlers, sessions,
//! backpressure, timeouts and graceful shutdown.

use crate::config::{Config, Mode};
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
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use sts_protocol::{
    events, parse_payload, Backpressure, BackpressureAction, ControlAck, ErrorBody, ErrorCode,
    ErrorEvent, FragmentAck, FragmentData, FragmentProcessed, FragmentStatus, StreamComplete,
    StreamControl, StreamInit, StreamInitAck, Totals, PROTOCOL_VERSION,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Socket.IO engine payload limit: the largest fragment in base64 plus JSON overhead, so
/// oversize fragments reach our validation (and get PAYLOAD_TOO_LARGE) up to 2x the limit.
fn engine_max_payload(max_fragment_bytes: usize) -> u64 {
    (max_fragment_bytes as u64 * 8 / 3) + 64 * 1024
}

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
    /// Hands out processing slots in arrival order (see [`slot_dispatcher`]).
    slots: mpsc::UnboundedSender<oneshot::Sender<OwnedSemaphorePermit>>,
    state: Mutex<StreamState>,
}

/// Shared state of a running server.
pub struct AppState {
    cfg: Arc<Config>,
    metrics: Metrics,
    pipeline: OnceLock<Arc<Pipeline>>,
    health: OnceLock<Value>,
    streams: Mutex<HashMap<String, Arc<StreamEntry>>>,
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
        streams: Mutex::new(HashMap::new()),
        io: OnceLock::new(),
        shutting_down: AtomicBool::new(false),
        tracker: TaskTracker::new(),
    });

    let (layer, io) = SocketIo::builder()
        .max_payload(engine_max_payload(cfg.max_fragment_bytes))
        // Large uploads over polling/slow links: be generous before declaring a peer dead.
        .ping_timeout(Duration::from_secs(60))
        .max_buffer_size(1024)
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
                    register_handlers(s, st);
                    Ok::<(), AuthError>(())
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
    tracing::info!(addr = %local, mode = ?cfg.mode, "sts-service listening; loading models");

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

#[derive(Debug)]
struct AuthError(String);
impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for AuthError {}

fn authorize(st: &AppState, s: &SocketRef, auth: Option<Value>) -> Result<(), AuthError> {
    let Some(expected) = st.cfg.sts_auth_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let token = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    if token == Some(expected) {
        Ok(())
    } else {
        st.metrics
            .errors
            .with_label_values(&[ErrorCode::Unauthorized.as_str()])
            .inc();
        tracing::warn!(sid = %s.id, "connection refused: missing or wrong auth token");
        Err(AuthError(format!(
            "{}: handshake auth must be {{\"token\": \"...\"}} matching STS_AUTH_TOKEN",
            ErrorCode::Unauthorized
        )))
    }
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

/// Installs every event handler of an authorized socket (before its CONNECT is sent).
fn register_handlers(s: SocketRef, st: Arc<AppState>) {
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
                async move { on_fragment(&st, s, v, ack) }
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
        s.on(events::MONITOR_SUBSCRIBE, move |s: SocketRef, Data(v): Data<Value>, ack: AckSender| {
            let st = st.clone();
            async move {
                match parse_payload::<StreamControl>(v).and_then(|c| c.validate().map(|_| c)) {
                    Ok(c) => {
                        s.join(room(&c.stream_id));
                        tracing::info!(sid = %s.id, stream = %c.stream_id, "monitor subscribed");
                        let _ = ack.send(&ControlAck::Ok);
                    }
                    Err(e) => {
                        let body = e.to_body();
                        st.emit_error(&s, &body, None, None);
                        let _ = ack.send(&ControlAck::Rejected { error: body });
                    }
                }
            }
        });
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
            let mut streams = lock(&st.streams);
            let owned: Vec<String> = streams
                .iter()
                .filter(|(_, e)| e.owner.id == s.id)
                .map(|(k, _)| k.clone())
                .collect();
            for id in owned {
                if let Some(e) = streams.remove(&id) {
                    lock(&e.state).closed = true;
                    st.metrics.sessions.dec();
                    tracing::info!(stream = %id, "stream closed: its connection dropped (in-flight results discarded)");
                }
            }
            tracing::info!(sid = %s.id, "client disconnected");
        }
    });
}

fn field(v: &Value, name: &str) -> Option<String> {
    let obj = match v {
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
        o => o.clone(),
    };
    obj.get(name)?.as_str().map(str::to_string)
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
    let entry = Arc::new(StreamEntry {
        init: init.clone(),
        session_id: session_id.clone(),
        owner: s.clone(),
        slots: slot_dispatcher(st.cfg.max_inflight as usize),
        state: Mutex::new(StreamState {
            pending: 0,
            client_paused: false,
            ended: false,
            bp_paused: false,
            closed: false,
            totals: Totals::default(),
        }),
    });
    let old = lock(&st.streams).insert(init.stream_id.clone(), entry);
    match old {
        Some(o) => {
            lock(&o.state).closed = true;
            if o.owner.id != s.id {
                tracing::warn!(stream = %init.stream_id, old = %o.owner.id, new = %s.id, "stream taken over by a new connection (reconnect)");
            }
        }
        None => st.metrics.sessions.inc(),
    }
    tracing::info!(stream = %init.stream_id, session = %session_id, rate = init.audio.sample_rate_hz, channels = init.audio.channels, src = %init.source_language, tgt = %init.target_language, "stream opened");
    let _ = ack.send(&StreamInitAck::Ready {
        session_id,
        max_inflight: st.cfg.max_inflight,
        max_fragment_bytes: st.cfg.max_fragment_bytes,
        protocol_version: PROTOCOL_VERSION.into(),
    });
}

fn on_fragment(st: &Arc<AppState>, s: SocketRef, v: Value, ack: AckSender) {
    let stream_hint = field(&v, "stream_id");
    let frag_hint = field(&v, "fragment_id");
    let reject = |ack: AckSender, body: ErrorBody| {
        st.metrics
            .rejected
            .with_label_values(&[body.code.as_str()])
            .inc();
        tracing::warn!(sid = %s.id, stream = ?stream_hint, fragment = ?frag_hint, code = %body.code, msg = %body.message, "fragment rejected");
        st.emit_error(&s, &body, stream_hint.clone(), frag_hint.clone());
        let _ = ack.send(&FragmentAck::Rejected { error: body });
    };
    if st.shutting_down.load(Ordering::SeqCst) {
        return reject(
            ack,
            ErrorBody::new(ErrorCode::ShuttingDown, "the service is shutting down"),
        );
    }
    let frag: FragmentData = match parse_payload(v) {
        Ok(f) => f,
        Err(e) => return reject(ack, e.to_body()),
    };
    let entry = {
        let streams = lock(&st.streams);
        match streams.get(&frag.stream_id) {
            Some(e) => e.clone(),
            None => {
                let owns_any = streams.values().any(|e| e.owner.id == s.id);
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
    let samples = match frag.validate_and_decode(&entry.init.audio, st.cfg.max_fragment_bytes) {
        Ok(x) => x,
        Err(e) => return reject(ack, e.to_body()),
    };
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
        if state.ended || state.closed {
            drop(state);
            return reject(
                ack,
                ErrorBody::new(
                    ErrorCode::StreamNotAccepting,
                    "stream:end was sent; no more fragments are accepted",
                ),
            );
        }
        if state.client_paused {
            drop(state);
            return reject(
                ack,
                ErrorBody::new(
                    ErrorCode::StreamNotAccepting,
                    "stream is paused (stream:pause); send stream:resume first",
                ),
            );
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
    };
    let st2 = st.clone();
    // Ask for a processing slot here, in the handler, so slots go out in arrival order.
    let (slot_tx, slot_rx) = oneshot::channel();
    let _ = entry.slots.send(slot_tx);
    st.tracker.spawn(run_fragment(
        st2,
        entry,
        pipeline,
        job,
        slot_rx,
        Instant::now(),
    ));
}

async fn run_fragment(
    st: Arc<AppState>,
    entry: Arc<StreamEntry>,
    pipeline: Arc<Pipeline>,
    job: Job,
    slot_rx: oneshot::Receiver<OwnedSemaphorePermit>,
    accepted: Instant,
) {
    // The whole wait for a slot counts against the timeout.
    let timeout = Duration::from_secs_f64(st.cfg.processing_timeout);
    let ids = (
        job.fragment_id.clone(),
        job.stream_id.clone(),
        job.sequence_number,
    );
    let res = tokio::time::timeout(timeout, async move {
        let _permit = slot_rx.await;
        pipeline.process(job).await
    })
    .await;
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
    {
        let mut streams = lock(&st.streams);
        if streams
            .get(&id)
            .is_some_and(|e| e.session_id == entry.session_id)
        {
            streams.remove(&id);
            st.metrics.sessions.dec();
        }
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
    let c: StreamControl =
        match parse_payload::<StreamControl>(v).and_then(|c| c.validate().map(|_| c)) {
            Ok(c) => c,
            Err(e) => return reject(ack, e.to_body()),
        };
    let Some(entry) = lock(&st.streams).get(&c.stream_id).cloned() else {
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
