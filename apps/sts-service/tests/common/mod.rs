//! Shared fixture for the integration tests: start the real server in-process on port 0,
//! connect real Socket.IO clients, generate real speech with espeak-ng.
#![allow(dead_code)]

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sts_service::{Config, RunningServer};

/// Starts a server with `args` (flags) on 127.0.0.1:0 and waits until /health is 200.
pub async fn start_server(args: &[&str]) -> RunningServer {
    let mut v = vec!["sts-service", "--host", "127.0.0.1", "--port", "0"];
    v.extend_from_slice(args);
    let cfg = <Config as clap::Parser>::try_parse_from(v).expect("test config parses");
    sts_service::init_tracing("info");
    let srv = sts_service::start(cfg).await.expect("server starts");
    let url = format!("http://{}/health", srv.addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "server not healthy within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv
}

/// A Socket.IO client that records every server event it receives.
pub struct TestClient {
    pub client: Client,
    pub events: Arc<Mutex<Vec<(String, Value)>>>,
}

fn first_value(p: Payload) -> Value {
    match p {
        Payload::Text(mut v) if !v.is_empty() => v.remove(0),
        #[allow(deprecated)]
        Payload::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        _ => Value::Null,
    }
}

fn builder(
    addr: std::net::SocketAddr,
    auth: Option<Value>,
    events: &Arc<Mutex<Vec<(String, Value)>>>,
) -> ClientBuilder {
    let mut b = ClientBuilder::new(format!("http://{addr}"))
        .transport_type(TransportType::Websocket)
        .reconnect(false);
    for name in [
        "fragment:processed",
        "backpressure",
        "stream:complete",
        "error",
    ] {
        let ev = events.clone();
        b = b.on(name, move |p: Payload, _c: Client| {
            let ev = ev.clone();
            async move {
                ev.lock().unwrap().push((name.to_string(), first_value(p)));
            }
            .boxed()
        });
    }
    if let Some(a) = auth {
        b = b.auth(a);
    }
    b
}

pub async fn connect(
    addr: std::net::SocketAddr,
    auth: Option<Value>,
) -> Result<TestClient, rust_socketio::Error> {
    let events: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let client = builder(addr, auth, &events).connect().await?;
    // Give the namespace CONNECT a moment to be answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(TestClient { client, events })
}

/// Connects and waits for the server's verdict on the namespace connection: the client,
/// or the `connect_error` text (e.g. `... {"message":"TOO_MANY_SESSIONS: ..."}`).
pub async fn connect_outcome(
    addr: std::net::SocketAddr,
    auth: Option<Value>,
) -> Result<TestClient, String> {
    let events: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let (tx, rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let (t1, t2) = (tx.clone(), tx);
    let client = builder(addr, auth, &events)
        .on(rust_socketio::Event::Connect, move |_p, _c| {
            let t = t1.clone();
            async move {
                if let Some(t) = t.lock().unwrap().take() {
                    let _ = t.send(Ok(()));
                }
            }
            .boxed()
        })
        .on(rust_socketio::Event::Error, move |p, _c| {
            let t = t2.clone();
            async move {
                let text = match first_value(p) {
                    Value::String(s) => s,
                    v => v.to_string(),
                };
                if text.contains("ConnectError") {
                    if let Some(t) = t.lock().unwrap().take() {
                        let _ = t.send(Err(text));
                    }
                }
            }
            .boxed()
        })
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), rx).await {
        Ok(Ok(Ok(()))) => Ok(TestClient { client, events }),
        Ok(Ok(Err(text))) => {
            let _ = client.disconnect().await;
            Err(text)
        }
        _ => {
            let _ = client.disconnect().await;
            Err("no connect or connect_error within 10 s".into())
        }
    }
}

/// The current `/metrics` text.
pub async fn metrics_text(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body")
}

impl TestClient {
    /// Emits with an ack and returns the ack payload (panics after 60 s without one).
    pub async fn call(&self, event: &str, payload: impl Into<Payload>) -> Value {
        let (tx, rx) = tokio::sync::oneshot::channel::<Value>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(
                event,
                payload,
                Duration::from_secs(60),
                move |p: Payload, _c: Client| {
                    let tx = tx.clone();
                    async move {
                        if let Some(t) = tx.lock().unwrap().take() {
                            // rust_socketio hands ack arguments over as one JSON array.
                            let v = match first_value(p) {
                                Value::Array(mut a) if a.len() == 1 => a.remove(0),
                                v => v,
                            };
                            let _ = t.send(v);
                        }
                    }
                    .boxed()
                },
            )
            .await
            .expect("emit works");
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for {event} within 60 s"))
            .expect("ack delivered")
    }

    /// Emits without ack.
    pub async fn emit(&self, event: &str, payload: impl Into<Payload>) {
        self.client.emit(event, payload).await.expect("emit works");
    }

    /// Waits for an event matching `pred`; returns it.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .find(|(n, v)| n == name && pred(v))
                .map(|(_, v)| v.clone())
            {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {name} event within {timeout:?}; got: {:?}",
                    self.events
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(n, v)| format!("{n} {}", trunc(v)))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Events named `name` so far.
    pub fn received(&self, name: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

fn trunc(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(200).collect()
}

/// `stream:init` payload for 16 kHz mono en->es.
pub fn init_payload(stream_id: &str, rate: u32, channels: u16) -> Value {
    json!({
        "stream_id": stream_id, "source_language": "en", "target_language": "es",
        "fragment_duration_ms": 6000,
        "audio": {"format": "pcm_s16le", "sample_rate_hz": rate, "channels": channels}
    })
}

/// `fragment:data` payload.
pub fn fragment_payload(
    stream_id: &str,
    seq: u64,
    rate: u32,
    channels: u16,
    samples: &[i16],
) -> Value {
    let frames = samples.len() / channels as usize;
    json!({
        "fragment_id": format!("{stream_id}-{seq}"), "stream_id": stream_id,
        "sequence_number": seq, "pts_ms": seq * 6000,
        "duration_ms": (frames as u64 * 1000 / rate as u64),
        "audio": {"format": "pcm_s16le", "sample_rate_hz": rate, "channels": channels,
                  "data": sts_protocol::encode_pcm_base64(samples)}
    })
}

/// Decodes the dubbed audio of a fragment:processed event.
pub fn dubbed_samples(ev: &Value) -> Vec<i16> {
    sts_protocol::decode_pcm_base64(
        ev["dubbed_audio"]["data"]
            .as_str()
            .expect("dubbed_audio.data"),
    )
    .expect("base64")
}

/// English words spoken by espeak-ng (en-us, 185 wpm), one starting at each whole second,
/// at 16 kHz mono s16: the counting fixture design of the e2e suite.
pub fn spoken_words(words: &[&str]) -> Vec<i16> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = vec![0f32; 16000 * words.len()];
    for (i, w) in words.iter().enumerate() {
        let p = dir.path().join(format!("w{i}.wav"));
        let st = std::process::Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "185", "-w"])
            .arg(&p)
            .arg(w)
            .status()
            .expect("espeak-ng CLI is installed (Debian package espeak-ng)");
        assert!(st.success());
        let wav = livedub_audio::read_wav(&p).expect("espeak wav");
        let s = livedub_audio::resample(&wav.samples, wav.sample_rate, 16000).expect("resample");
        let n = s.len().min(16000);
        out[i * 16000..i * 16000 + n].copy_from_slice(&s[..n]);
    }
    livedub_audio::f32_to_i16(&out)
}
