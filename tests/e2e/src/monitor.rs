//! A Socket.IO observer of the sts-service (`monitor:subscribe`), plus a thin client for
//! tests that talk to the STS directly (stream:init / fragment:data with acks).
//!
//! It speaks plain Socket.IO v4 through `rust_socketio` with untyped JSON rather than
//! through the media-service's typed `sts-client`: the suite must be able to observe and
//! report payloads that do *not* match the protocol types (a missing field is a test
//! failure with the payload shown, not a decode error hidden in a client).

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event as SioEvent, Payload};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// Errors from the Socket.IO helpers.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Connecting or emitting failed.
    #[error("socket.io {action} ({url}): {message}")]
    Socket {
        /// What was being done.
        action: String,
        /// The server URL.
        url: String,
        /// The client's error.
        message: String,
    },
    /// No acknowledgement arrived in time.
    #[error("no ack for {event} from {url} within {timeout:?}")]
    AckTimeout {
        /// The event that was sent.
        event: String,
        /// The server URL.
        url: String,
        /// How long we waited.
        timeout: Duration,
    },
}

/// Something the server sent us.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Event name (`fragment:processed`, `stream:complete`, `backpressure`, `error`).
    pub name: String,
    /// Its first JSON argument.
    pub data: Value,
    /// When it arrived.
    pub at: Instant,
}

const EVENTS: [&str; 4] = [
    "fragment:processed",
    "stream:complete",
    "backpressure",
    "error",
];

/// A connected Socket.IO client collecting server events.
pub struct Monitor {
    url: String,
    client: Client,
    events: mpsc::Receiver<Event>,
    seen: Vec<Event>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("url", &self.url)
            .field("seen", &self.seen.len())
            .finish()
    }
}

fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        Payload::Text(_) => Value::Null,
        Payload::Binary(bytes) => json!({"binary_len": bytes.len()}),
        #[allow(deprecated)]
        Payload::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
    }
}

/// An ack's arguments arrive as one array; with a single argument, that argument.
fn ack_value(payload: Payload) -> Value {
    match first_value(payload) {
        Value::Array(mut a) if a.len() == 1 => a.pop().unwrap_or(Value::Null),
        other => other,
    }
}

impl Monitor {
    /// Connects to the STS at `url` (`http://host:port`), presenting `token` in the
    /// handshake `auth` when given.
    pub async fn connect(url: &str, token: Option<&str>) -> Result<Self, MonitorError> {
        // Bounded: a test that stops reading must not grow memory without limit; 4096
        // events is far beyond what one 30 s stream produces.
        let (tx, rx) = mpsc::channel::<Event>(4096);
        // WebSocket only: rust_engineio 0.6's long-polling transport breaks on events over
        // ~8 KiB (see docs/protocol.md, "Transports"), and every answer carries audio.
        let mut builder = ClientBuilder::new(url.to_string())
            .transport_type(rust_socketio::TransportType::Websocket)
            .namespace("/")
            .reconnect(false);
        if let Some(token) = token {
            builder = builder.auth(json!({"token": token}));
        }
        // `connect()` returns before the server accepted the namespace; emitting before
        // that fails, so wait for the Connect event (or a ConnectError).
        let (open_tx, open_rx) = oneshot::channel::<Result<(), String>>();
        let open_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(open_tx)));
        {
            let open_tx = open_tx.clone();
            builder = builder.on(SioEvent::Connect, move |_p: Payload, _c: Client| {
                if let Some(tx) = open_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(Ok(()));
                }
                async {}.boxed()
            });
        }
        {
            let open_tx = open_tx.clone();
            builder = builder.on(SioEvent::Error, move |p: Payload, _c: Client| {
                let text = first_value(p).to_string();
                if text.contains("ConnectError") {
                    if let Some(tx) = open_tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = tx.send(Err(text));
                    }
                }
                async {}.boxed()
            });
        }
        for name in EVENTS {
            let tx = tx.clone();
            builder = builder.on(name, move |payload: Payload, _client: Client| {
                let tx = tx.clone();
                async move {
                    let _ = tx
                        .send(Event {
                            name: name.to_string(),
                            data: first_value(payload),
                            at: Instant::now(),
                        })
                        .await;
                }
                .boxed()
            });
        }
        let client = builder.connect().await.map_err(|e| MonitorError::Socket {
            action: "connect".into(),
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let refused = |message: String| MonitorError::Socket {
            action: "connect".into(),
            url: url.to_string(),
            message,
        };
        match tokio::time::timeout(Duration::from_secs(10), open_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => {
                let _ = client.disconnect().await;
                return Err(refused(format!("refused: {message}")));
            }
            _ => {
                let _ = client.disconnect().await;
                return Err(refused(
                    "the server did not accept the namespace within 10 s".into(),
                ));
            }
        }
        Ok(Self {
            url: url.to_string(),
            client,
            events: rx,
            seen: Vec::new(),
        })
    }

    /// Sends `event` with `data` and waits up to `timeout` for the server's ack.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<Value, MonitorError> {
        let (tx, rx) = oneshot::channel::<Value>();
        let tx = std::sync::Mutex::new(Some(tx));
        self.client
            .emit_with_ack(
                event,
                Payload::Text(vec![data]),
                timeout,
                move |payload: Payload, _c: Client| {
                    if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = tx.send(ack_value(payload));
                    }
                    async {}.boxed()
                },
            )
            .await
            .map_err(|e| MonitorError::Socket {
                action: format!("emit {event}"),
                url: self.url.clone(),
                message: e.to_string(),
            })?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(MonitorError::AckTimeout {
                event: event.to_string(),
                url: self.url.clone(),
                timeout,
            }),
        }
    }

    /// Sends `event` without waiting for an ack.
    pub async fn emit(&self, event: &str, data: Value) -> Result<(), MonitorError> {
        self.client
            .emit(event, Payload::Text(vec![data]))
            .await
            .map_err(|e| MonitorError::Socket {
                action: format!("emit {event}"),
                url: self.url.clone(),
                message: e.to_string(),
            })
    }

    /// Joins the observers of `stream_id` (`monitor:subscribe`) and waits for the server's
    /// ack. rust_socketio can lose an emit sent right after the namespace opens, so an
    /// unanswered subscribe is sent again (joining a room twice is harmless); a server that
    /// never acks fails here instead of leaving the test with a silent monitor.
    pub async fn subscribe(&self, stream_id: &str) -> Result<Option<Value>, MonitorError> {
        const ATTEMPTS: u32 = 5;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            match self
                .emit_with_ack(
                    "monitor:subscribe",
                    json!({"stream_id": stream_id}),
                    Duration::from_secs(2),
                )
                .await
            {
                Ok(ack) => return Ok(Some(ack)),
                Err(e @ MonitorError::AckTimeout { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(MonitorError::AckTimeout {
            event: "monitor:subscribe".into(),
            url: self.url.clone(),
            timeout: Duration::from_secs(2),
        }))
    }

    /// Moves events that already arrived into [`Monitor::seen`].
    fn drain(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
    }

    /// Every event received so far.
    pub fn seen(&mut self) -> &[Event] {
        self.drain();
        &self.seen
    }

    /// Waits until `done(events so far)` is true or `timeout` passes; returns whether it
    /// became true.
    pub async fn wait_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&[Event]) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.drain();
            if done(&self.seen) {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => self.seen.push(e),
                Ok(None) | Err(_) => {
                    self.drain();
                    return done(&self.seen);
                }
            }
        }
    }

    /// `fragment:processed` events for `stream_id`, one per sequence number (first
    /// wins), sorted by sequence number.
    pub fn processed(&mut self, stream_id: &str) -> Vec<Value> {
        self.drain();
        let mut by_seq = std::collections::BTreeMap::new();
        for e in &self.seen {
            if e.name == "fragment:processed" && e.data["stream_id"] == stream_id {
                let seq = e.data["sequence_number"].as_u64().unwrap_or(u64::MAX);
                by_seq.entry(seq).or_insert_with(|| e.data.clone());
            }
        }
        by_seq.into_values().collect()
    }

    /// Waits until `fragment:processed` of `stream_id` has come for each of the sequence
    /// numbers `0..count` (or `timeout`); returns every one that came, later ones included.
    ///
    /// Answers arrive in any order: a short trailing fragment is often answered before the
    /// long one ahead of it, so counting distinct answers would stop one too early.
    pub async fn collect_processed(
        &mut self,
        stream_id: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let sid = stream_id.to_string();
        self.wait_until(timeout, |events| {
            let mut seqs = std::collections::BTreeSet::new();
            for e in events {
                if e.name == "fragment:processed" && e.data["stream_id"] == sid.as_str() {
                    if let Some(seq) = e.data["sequence_number"].as_u64() {
                        seqs.insert(seq);
                    }
                }
            }
            (0..count as u64).all(|seq| seqs.contains(&seq))
        })
        .await;
        self.processed(stream_id)
    }

    /// Disconnects (errors ignored: the server may already be gone).
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}
