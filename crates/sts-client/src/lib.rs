//! Async Socket.IO v4 client for the STS protocol (ARCHITECTURE §4), over `rust_socketio`.
//!
//! [`StsClient::spawn`] keeps one connection alive in the background: the first connection
//! is retried with exponential backoff (so a service can start before the STS), and later
//! drops are repaired by `rust_socketio`'s own reconnect loop (same backoff bounds). Every
//! (re)connection is reported as [`ClientEvent::Connected`], so a caller re-sends
//! `stream:init` after a server restart. Server events arrive on a bounded channel; a
//! payload that does not parse is reported as [`ClientEvent::Malformed`], never dropped
//! silently and never a panic.
//!
//! Requests with acks ([`StsClient::init_stream`], [`StsClient::send_fragment`], ...)
//! resolve to typed results with a timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sts_protocol::{
    events, Backpressure, ControlAck, ErrorEvent, FragmentAck, FragmentData, FragmentProcessed,
    StreamComplete, StreamControl, StreamInit, StreamInitAck, StreamInitRequest,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Settings of a client.
#[derive(Debug, Clone)]
pub struct StsClientConfig {
    /// Base URL, e.g. `http://127.0.0.1:3000` (path `/socket.io` is implied).
    pub url: String,
    /// Sent as handshake `auth: {token}` when set.
    pub auth_token: Option<String>,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// How long to wait for an ack.
    pub ack_timeout: Duration,
    /// How long to wait for the server to accept the namespace connection.
    pub connect_timeout: Duration,
    /// Capacity of the event channel.
    pub event_capacity: usize,
}

impl StsClientConfig {
    /// Defaults for `url`: backoff 0.5–5 s, ack timeout 5 s, connect timeout 5 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth_token: None,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            event_capacity: 256,
        }
    }
}

/// What the server sent, or what happened to the connection.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// The namespace connection was accepted; `generation` counts connections from 1.
    Connected {
        /// 1 for the first connection, then +1 per reconnection.
        generation: u64,
    },
    /// The connection dropped (or a transport error was reported); reconnection follows.
    Disconnected {
        /// What was reported.
        reason: String,
    },
    /// `fragment:processed`.
    Processed(Box<FragmentProcessed>),
    /// `backpressure`.
    Backpressure(Backpressure),
    /// `stream:complete`.
    Complete(StreamComplete),
    /// `error` from the server.
    ServerError(ErrorEvent),
    /// A server event whose payload did not parse.
    Malformed {
        /// Event name.
        event: String,
        /// The raw payload (for logs).
        payload: Value,
        /// Parse error.
        error: String,
    },
}

/// Errors of connecting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP/HTTP/engine.io level failure.
    #[error("cannot reach the STS at {url}: {source}")]
    Transport {
        /// URL.
        url: String,
        /// Cause.
        source: rust_socketio::Error,
    },
    /// The server refused the namespace connection (e.g. bad token).
    #[error("the STS at {url} refused the connection: {message}")]
    Refused {
        /// URL.
        url: String,
        /// Server's message.
        message: String,
    },
    /// No answer to the namespace connection.
    #[error("the STS at {url} did not accept the connection within {timeout:?}")]
    Timeout {
        /// URL.
        url: String,
        /// Timeout.
        timeout: Duration,
    },
    /// [`StsClient::close`] was called while the connection was being made: the new
    /// connection was closed at once instead of being kept.
    #[error("the client was closed while connecting to the STS at {url}")]
    Closed {
        /// URL.
        url: String,
    },
}

/// Errors of a request with an ack.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// Not connected right now.
    #[error("not connected to the STS")]
    NotConnected,
    /// Sending failed.
    #[error("sending {event} failed: {source}")]
    Send {
        /// Event.
        event: &'static str,
        /// Cause.
        source: rust_socketio::Error,
    },
    /// No ack in time.
    #[error("no ack for {event} within {timeout:?}")]
    Timeout {
        /// Event.
        event: &'static str,
        /// Timeout.
        timeout: Duration,
    },
    /// The ack did not parse.
    #[error("ack of {event} is malformed: {message}")]
    Decode {
        /// Event.
        event: &'static str,
        /// Parse error and payload.
        message: String,
    },
    /// The server said no.
    #[error("{event} rejected: {code}: {message}")]
    Rejected {
        /// Event.
        event: &'static str,
        /// Error code.
        code: String,
        /// Server's message.
        message: String,
    },
}

struct Inner {
    cfg: StsClientConfig,
    client: tokio::sync::RwLock<Option<Client>>,
    connected: AtomicBool,
    generation: AtomicU64,
    closed: AtomicBool,
    /// Sender for the namespace-connect outcome of the attempt in progress.
    connect_waiter: Mutex<Option<oneshot::Sender<Result<(), String>>>>,
    /// `resume_token` of the last ready ack per stream id, sent with the next
    /// `stream:init` for that id: after a reconnect it lets the server hand the stream to
    /// this new connection even if it has not yet noticed the old one is gone.
    resume_tokens: Mutex<HashMap<String, String>>,
}

/// A connected (or reconnecting) STS client. Cheap to clone.
#[derive(Clone)]
pub struct StsClient {
    inner: Arc<Inner>,
}

fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut v) => {
            if v.len() == 1 {
                v.pop().unwrap_or(Value::Null)
            } else {
                Value::Array(v)
            }
        }
        #[allow(deprecated)]
        Payload::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        Payload::Binary(b) => Value::String(format!("<{} binary bytes>", b.len())),
    }
}

/// An ack's arguments arrive as one JSON array (`[ {...} ]`); the protocol's acks have
/// exactly one argument.
fn ack_value(payload: Payload) -> Value {
    match first_value(payload) {
        Value::Array(mut a) if a.len() == 1 => a.pop().unwrap_or(Value::Null),
        other => other,
    }
}

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

impl StsClient {
    /// A client that has not connected yet, with its event channel.
    fn unconnected(
        cfg: StsClientConfig,
    ) -> (Self, mpsc::Sender<ClientEvent>, mpsc::Receiver<ClientEvent>) {
        let (tx, rx) = mpsc::channel(cfg.event_capacity);
        let inner = Arc::new(Inner {
            cfg,
            client: tokio::sync::RwLock::new(None),
            connected: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            connect_waiter: Mutex::new(None),
            resume_tokens: Mutex::new(HashMap::new()),
        });
        (Self { inner }, tx, rx)
    }

    /// Starts a client that connects in the background and keeps reconnecting. Events
    /// (including [`ClientEvent::Connected`]) arrive on the returned receiver.
    pub fn spawn(cfg: StsClientConfig) -> (Self, mpsc::Receiver<ClientEvent>) {
        let (me, tx, rx) = Self::unconnected(cfg);
        let bg = me.clone();
        tokio::spawn(async move { bg.first_connect_loop(tx).await });
        (me, rx)
    }

    /// Connects once (no background retries of the first connection; reconnection after
    /// a later drop still happens). Fails if the server is unreachable or refuses.
    pub async fn connect(
        cfg: StsClientConfig,
    ) -> Result<(Self, mpsc::Receiver<ClientEvent>), ConnectError> {
        let (me, tx, rx) = Self::unconnected(cfg);
        me.try_connect(tx).await?;
        Ok((me, rx))
    }

    async fn first_connect_loop(self, tx: mpsc::Sender<ClientEvent>) {
        let mut delay = self.inner.cfg.reconnect_min;
        loop {
            if self.inner.closed.load(Ordering::SeqCst) {
                return;
            }
            match self.try_connect(tx.clone()).await {
                Ok(()) | Err(ConnectError::Closed { .. }) => return,
                Err(e) => {
                    warn!(url = %self.inner.cfg.url, error = %e, retry_in_ms = delay.as_millis() as u64, "STS connection failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.inner.cfg.reconnect_max);
                }
            }
        }
    }

    async fn try_connect(&self, tx: mpsc::Sender<ClientEvent>) -> Result<(), ConnectError> {
        let cfg = &self.inner.cfg;
        let (wtx, wrx) = oneshot::channel();
        *self
            .inner
            .connect_waiter
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(wtx);

        // WebSocket only, never HTTP long-polling: rust_engineio 0.6's polling transport
        // parses every HTTP body chunk as a whole payload, so an event larger than one
        // chunk (~8 KiB: any `fragment:processed` with audio) breaks the connection. With
        // the default `TransportType::Any` a failed WebSocket attempt (an STS that is
        // just coming up) fell back to polling, and the first dubbed answer then dropped
        // the connection ("EOF while parsing a string at line 1 column 8069", found by
        // the soak). A failed WebSocket attempt is now retried like any other.
        let mut b = ClientBuilder::new(cfg.url.clone())
            .transport_type(TransportType::Websocket)
            .namespace("/")
            .reconnect(true)
            .reconnect_on_disconnect(true)
            .reconnect_delay(
                cfg.reconnect_min.as_millis() as u64,
                cfg.reconnect_max.as_millis() as u64,
            );
        if let Some(t) = &cfg.auth_token {
            b = b.auth(serde_json::json!({ "token": t }));
        }
        let inner = self.inner.clone();
        let tx_open = tx.clone();
        b = b.on(Event::Connect, move |_p, _c| {
            let inner = inner.clone();
            let tx = tx_open.clone();
            async move {
                inner.connected.store(true, Ordering::Relaxed);
                let generation = inner.generation.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(w) = inner
                    .connect_waiter
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    let _ = w.send(Ok(()));
                }
                info!(url = %inner.cfg.url, generation, "connected to the STS");
                // The first connection is announced by `try_connect` once the client handle
                // is stored (so requests made on the event succeed); later ones from here.
                if generation > 1 {
                    let _ = tx.try_send(ClientEvent::Connected { generation });
                }
            }
            .boxed()
        });
        let inner = self.inner.clone();
        let tx_close = tx.clone();
        b = b.on(Event::Close, move |_p, _c| {
            let inner = inner.clone();
            let tx = tx_close.clone();
            async move {
                if inner.connected.swap(false, Ordering::Relaxed) {
                    warn!(url = %inner.cfg.url, "STS closed the connection");
                    let _ = tx.try_send(ClientEvent::Disconnected {
                        reason: "closed by the server".into(),
                    });
                }
            }
            .boxed()
        });
        let inner = self.inner.clone();
        let tx_err = tx.clone();
        b = b.on(Event::Error, move |p, _c| {
            let inner = inner.clone();
            let tx = tx_err.clone();
            async move {
                let v = first_value(p);
                let text = match &v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if text.contains("ConnectError") {
                    if let Some(w) = inner.connect_waiter.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        let _ = w.send(Err(text.clone()));
                    }
                    return;
                }
                // A server `error` event carries an object; transport errors are strings.
                if v.is_object() {
                    match parse::<ErrorEvent>(v.clone()) {
                        Ok(e) => {
                            let _ = tx.try_send(ClientEvent::ServerError(e));
                        }
                        Err(error) => {
                            let _ = tx.try_send(ClientEvent::Malformed { event: "error".into(), payload: v, error });
                        }
                    }
                    return;
                }
                debug!(error = %text, "socket.io transport error");
                if inner.connected.swap(false, Ordering::Relaxed) {
                    warn!(url = %inner.cfg.url, error = %text, "lost the STS connection; reconnecting");
                    let _ = tx.try_send(ClientEvent::Disconnected { reason: text });
                }
            }
            .boxed()
        });
        let tx_any = tx.clone();
        b = b.on_any(move |ev, p, _c| {
            let tx = tx_any.clone();
            async move {
                let name = ev.as_str().to_string();
                let v = first_value(p);
                let out = match name.as_str() {
                    events::FRAGMENT_PROCESSED => parse::<FragmentProcessed>(v.clone())
                        .map(|x| ClientEvent::Processed(Box::new(x))),
                    events::BACKPRESSURE => {
                        parse::<Backpressure>(v.clone()).map(ClientEvent::Backpressure)
                    }
                    events::STREAM_COMPLETE => {
                        parse::<StreamComplete>(v.clone()).map(ClientEvent::Complete)
                    }
                    _ => {
                        debug!(event = %name, "ignoring unknown STS event");
                        return;
                    }
                };
                let ev = out.unwrap_or_else(|error| ClientEvent::Malformed {
                    event: name,
                    payload: v,
                    error,
                });
                if let Err(e) = tx.try_send(ev) {
                    warn!(error = %e, "STS event channel full or closed; event dropped");
                }
            }
            .boxed()
        });

        let client = b
            .connect()
            .await
            .map_err(|source| ConnectError::Transport {
                url: cfg.url.clone(),
                source,
            })?;
        match tokio::time::timeout(cfg.connect_timeout, wrx).await {
            Ok(Ok(Ok(()))) => {
                {
                    // `close` sets `closed` before it takes the client out under this lock:
                    // either it finds this client stored, or this sees `closed` (a close
                    // racing the first connect must not leave a client reconnecting forever).
                    let mut slot = self.inner.client.write().await;
                    if self.inner.closed.load(Ordering::SeqCst) {
                        drop(slot);
                        self.inner.connected.store(false, Ordering::SeqCst);
                        let _ = client.disconnect().await;
                        return Err(ConnectError::Closed {
                            url: cfg.url.clone(),
                        });
                    }
                    *slot = Some(client);
                }
                let _ = tx
                    .send(ClientEvent::Connected {
                        generation: self.generation(),
                    })
                    .await;
                Ok(())
            }
            Ok(Ok(Err(message))) => {
                let _ = client.disconnect().await;
                Err(ConnectError::Refused {
                    url: cfg.url.clone(),
                    message,
                })
            }
            _ => {
                let _ = client.disconnect().await;
                Err(ConnectError::Timeout {
                    url: cfg.url.clone(),
                    timeout: cfg.connect_timeout,
                })
            }
        }
    }

    /// Whether the namespace connection is up now.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Connections made so far (1 after the first connect, +1 per reconnection).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    async fn request<T: Serialize, A: DeserializeOwned>(
        &self,
        event: &'static str,
        body: &T,
    ) -> Result<A, AckError> {
        let guard = self.inner.client.read().await;
        let client = guard.as_ref().ok_or(AckError::NotConnected)?;
        if !self.is_connected() {
            return Err(AckError::NotConnected);
        }
        let value = serde_json::to_value(body).map_err(|e| AckError::Decode {
            event,
            message: e.to_string(),
        })?;
        let (tx, rx) = oneshot::channel::<Value>();
        let slot = Arc::new(Mutex::new(Some(tx)));
        let timeout = self.inner.cfg.ack_timeout;
        client
            .emit_with_ack(event, value, timeout, move |p, _c| {
                let slot = slot.clone();
                async move {
                    if let Some(tx) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        let _ = tx.send(ack_value(p));
                    }
                }
                .boxed()
            })
            .await
            .map_err(|source| AckError::Send { event, source })?;
        drop(guard);
        let v = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| AckError::Timeout { event, timeout })?
            .map_err(|_| AckError::Timeout { event, timeout })?;
        serde_json::from_value::<A>(v.clone()).map_err(|e| AckError::Decode {
            event,
            message: format!("{e}: {v}"),
        })
    }

    /// `stream:init`; returns the server's `ready` ack or the rejection as an error.
    /// Carries the `resume_token` of this client's last ready ack for the same stream id,
    /// so a re-init after a reconnect gets the stream back at once.
    pub async fn init_stream(&self, init: &StreamInit) -> Result<StreamInitAck, AckError> {
        let token = self
            .inner
            .resume_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&init.stream_id)
            .cloned();
        let request = StreamInitRequest {
            init,
            resume_token: token.as_deref(),
        };
        let ack: StreamInitAck = self.request(events::STREAM_INIT, &request).await?;
        match &ack {
            StreamInitAck::Rejected { error } => {
                return Err(AckError::Rejected {
                    event: events::STREAM_INIT,
                    code: error.code.as_str().into(),
                    message: error.message.clone(),
                });
            }
            StreamInitAck::Ready {
                resume_token: Some(t),
                ..
            } => {
                self.inner
                    .resume_tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(init.stream_id.clone(), t.clone());
            }
            StreamInitAck::Ready { .. } => {}
        }
        Ok(ack)
    }

    /// `fragment:data`; `Ok` when accepted (one `fragment:processed` will follow).
    pub async fn send_fragment(&self, fragment: &FragmentData) -> Result<(), AckError> {
        match self
            .request::<_, FragmentAck>(events::FRAGMENT_DATA, fragment)
            .await?
        {
            FragmentAck::Accepted => Ok(()),
            FragmentAck::Rejected { error } => Err(AckError::Rejected {
                event: events::FRAGMENT_DATA,
                code: error.code.as_str().into(),
                message: error.message,
            }),
        }
    }

    async fn control(&self, event: &'static str, stream_id: &str) -> Result<(), AckError> {
        let body = StreamControl {
            stream_id: stream_id.to_string(),
        };
        match self.request::<_, ControlAck>(event, &body).await? {
            ControlAck::Ok => Ok(()),
            ControlAck::Rejected { error } => Err(AckError::Rejected {
                event,
                code: error.code.as_str().into(),
                message: error.message,
            }),
        }
    }

    /// `stream:end`: the server answers the outstanding fragments, then `stream:complete`.
    pub async fn end_stream(&self, stream_id: &str) -> Result<(), AckError> {
        self.control(events::STREAM_END, stream_id).await
    }

    /// `stream:pause`.
    pub async fn pause_stream(&self, stream_id: &str) -> Result<(), AckError> {
        self.control(events::STREAM_PAUSE, stream_id).await
    }

    /// `stream:resume`.
    pub async fn resume_stream(&self, stream_id: &str) -> Result<(), AckError> {
        self.control(events::STREAM_RESUME, stream_id).await
    }

    /// `monitor:subscribe`: copies of the stream's `fragment:processed` and
    /// `stream:complete` events arrive on this client's event channel.
    pub async fn subscribe_monitor(&self, stream_id: &str) -> Result<(), AckError> {
        self.control(events::MONITOR_SUBSCRIBE, stream_id).await
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.connected.store(false, Ordering::SeqCst);
        if let Some(c) = self.inner.client.write().await.take() {
            let _ = c.disconnect().await;
        }
    }
}
