//! Flood: one client floods the real sts-service binary (echo mode) with the largest
//! fragments as fast as it can, hundreds of stream:init, oversize and malformed events,
//! attempts on another client's stream and more connections than MAX_SESSIONS, while a
//! well-behaved client runs a stream at 4x real time. The good stream must get every
//! fragment answered `success`, the flooder must be refused, and the service's resident
//! memory must stay under a bound derived from its limits. Prints the figures (copied into
//! docs/sts-service.md, "Limits and admission").

mod common;
use common::*;
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_SESSIONS: usize = 16;
const MAX_STREAMS: usize = 8;
const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// Good stream: fragments of 1 s, one every 250 ms (each also waits for its answer, which
/// the echo mode delays by 400 ms, so the flooder's fragments queue up meanwhile).
const GOOD_FRAGMENTS: u64 = 30;
const GOOD_PACE: Duration = Duration::from_millis(250);
/// Resident memory the service may reach under this flood: ~20 MiB at rest, the flooder's
/// MAX_QUEUED_BYTES_PER_SESSION (16 MiB) of decoded audio, plus what is in transit and
/// cannot be bounded by the service's own accounting: each in-flight 7.7 MB base64 message
/// is held as received text and as a parsed value, and answers wait in the outgoing buffer
/// (the flooder reads them). Measured peaks are well below; see the printed figures.
const RSS_BOUND_MB: u64 = 320;

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn start_binary(log: &std::path::Path) -> (Server, std::net::SocketAddr) {
    let port = livedub_test_ports::free_port(livedub_test_ports::TEST_SERVERS);
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sts-service"))
        .env_clear()
        .env("STS_MODE", "echo")
        .env("ECHO_DELAY_MS", "400")
        .env("HOST", "127.0.0.1")
        .env("STS_PORT", port.to_string())
        .env("LOG_LEVEL", "WARN")
        .env("MAX_SESSIONS", MAX_SESSIONS.to_string())
        .env("MAX_STREAMS_PER_SESSION", MAX_STREAMS.to_string())
        .env("MAX_QUEUED_BYTES_PER_SESSION", MAX_QUEUED_BYTES.to_string())
        .env("MONITOR", "off")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("start sts-service");
    let server = Server { child };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{addr}/health")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "sts-service not healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, addr)
}

/// Outcomes seen by the flooder, by key: ack status or rejection code (control calls),
/// `error:<CODE>` (error events) and `processed:<status>`.
#[derive(Default, Clone)]
struct Tally(Arc<Mutex<BTreeMap<String, u64>>>);

impl Tally {
    fn bump(&self, key: String) {
        *self.0.lock().unwrap().entry(key).or_default() += 1;
    }
    fn add(&self, ack: &Value) {
        self.bump(match ack["status"].as_str() {
            Some("rejected") => ack["error"]["code"].as_str().unwrap_or("?").to_string(),
            Some(s) => s.to_string(),
            None => format!("odd ack {ack}"),
        });
    }
    fn get(&self, k: &str) -> u64 {
        self.0.lock().unwrap().get(k).copied().unwrap_or(0)
    }
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

/// The flooder's data connection: emits without acks (rust_socketio 0.6 draws ack ids at
/// random from 0..999 and panics when two outstanding acks collide, so concurrent acks on
/// one client are not an option) and counts what comes back without keeping it (answers
/// are 7.7 MB each).
async fn counting_client(addr: std::net::SocketAddr, tally: &Tally) -> Client {
    let mut b = ClientBuilder::new(format!("http://{addr}"))
        .transport_type(TransportType::Websocket)
        .reconnect(false);
    for (name, field) in [("error", "code"), ("fragment:processed", "status")] {
        let tally = tally.clone();
        b = b.on(name, move |p: Payload, _c: Client| {
            let tally = tally.clone();
            async move {
                let v = match p {
                    Payload::Text(v) => v.into_iter().next().unwrap_or(Value::Null),
                    _ => Value::Null,
                };
                let what = v[field].as_str().unwrap_or("?");
                let prefix = if name == "error" {
                    "error"
                } else {
                    "processed"
                };
                tally.bump(format!("{prefix}:{what}"));
            }
            .boxed()
        });
    }
    let c = b.connect().await.expect("flooder connects");
    tokio::time::sleep(Duration::from_millis(200)).await;
    c
}

fn big_init(stream: &str) -> Value {
    json!({
        "stream_id": stream, "source_language": "en", "target_language": "es",
        "fragment_duration_ms": 30000,
        "audio": {"format": "pcm_s16le", "sample_rate_hz": 48000, "channels": 2}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_cannot_starve_a_good_stream_or_grow_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sts.log");
    let (server, addr) = start_binary(&log).await;
    let pid = server.child.id();
    let rss_start = proc_status_kb(pid, "VmRSS:").unwrap();
    let t0 = Instant::now();

    // RSS sampler.
    let done = Arc::new(AtomicBool::new(false));
    let peak_sampled = Arc::new(Mutex::new(0u64));
    let sampler = {
        let (done, peak) = (done.clone(), peak_sampled.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
                    let mut p = peak.lock().unwrap();
                    *p = (*p).max(kb);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let good = connect(addr, None).await.expect("good client connects");
    assert_eq!(
        good.call("stream:init", init_payload("good", 16000, 1))
            .await["status"],
        "ready"
    );
    // The flooder: one connection for its control calls (one ack outstanding at a time),
    // and a second one (MAX_SESSIONS allows it) for data sent without acks.
    let flood = connect(addr, None).await.expect("flooder connects");
    let tally = Tally::default();

    // Hundreds of streams: MAX_STREAMS_PER_SESSION of them open.
    for i in 0..300 {
        let ack = flood
            .call("stream:init", big_init(&format!("flood-{i}")))
            .await;
        tally.add(&ack);
    }
    assert_eq!(tally.get("ready"), MAX_STREAMS as u64);
    assert_eq!(tally.get("TOO_MANY_STREAMS"), 300 - MAX_STREAMS as u64);
    // The good client's stream is not the flooder's to take, send to, or watch.
    tally.add(
        &flood
            .call("stream:init", init_payload("good", 16000, 1))
            .await,
    );
    assert_eq!(tally.get("STREAM_ALREADY_EXISTS"), 1);
    let hijack = fragment_payload("good", 99, 16000, 1, &[0i16; 16000]);
    tally.add(&flood.call("fragment:data", hijack).await);
    assert_eq!(tally.get("NOT_STREAM_OWNER"), 1);
    let ack = flood
        .call("monitor:subscribe", json!({"stream_id": "good"}))
        .await;
    tally.add(&ack);
    assert_eq!(tally.get("MONITOR_NOT_ALLOWED"), 1);

    // More connections than MAX_SESSIONS (2 are open already).
    let mut extra = Vec::new();
    let mut sessions_refused = 0u64;
    for _ in 0..(MAX_SESSIONS + 24) {
        match connect_outcome(addr, None).await {
            Ok(c) => extra.push(c),
            Err(e) => {
                assert!(e.contains("TOO_MANY_SESSIONS"), "{e}");
                sessions_refused += 1;
            }
        }
    }
    assert_eq!(extra.len(), MAX_SESSIONS - 2, "admitted up to MAX_SESSIONS");
    assert_eq!(sessions_refused, 24 + 2);
    // One admitted slot becomes the flooder's data connection, with its own streams.
    let freed = extra.pop().unwrap();
    freed.client.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data = Arc::new(counting_client(addr, &tally).await);
    for i in 0..MAX_STREAMS {
        let (tx, rx) = tokio::sync::oneshot::channel::<Value>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        data.emit_with_ack(
            "stream:init",
            big_init(&format!("data-{i}")),
            Duration::from_secs(10),
            move |p: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    if let (Some(t), Payload::Text(v)) = (tx.lock().unwrap().take(), p) {
                        let _ = t.send(v.into_iter().next().unwrap_or(Value::Null));
                    }
                }
                .boxed()
            },
        )
        .await
        .unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("stream:init answered")
            .unwrap();
        assert!(ack.to_string().contains("ready"), "data-{i}: {ack}");
    }

    // The fragment flood, without acks: the largest valid fragment (30 s of 48 kHz stereo,
    // 5.76 MB) on every data stream from four senders as fast as the socket takes them,
    // every fifth one oversize (7 MiB decoded); malformed events in between.
    let stop = Arc::new(AtomicBool::new(false));
    let biggest: Vec<i16> = (0..48000 * 2 * 30).map(|i| (i % 3000) as i16).collect();
    let big_payload = Arc::new(fragment_payload("data-0", 0, 48000, 2, &biggest));
    let mut oversize = fragment_payload("data-0", 0, 48000, 2, &biggest);
    oversize["audio"]["data"] = json!(sts_protocol::encode_pcm_base64(&vec![
        1i16;
        7 * 1024 * 1024 / 2
    ]));
    let oversize = Arc::new(oversize);
    let sent = Arc::new(Mutex::new(0u64));
    let mut senders = Vec::new();
    for worker in 0..4usize {
        let (data, stop, sent) = (data.clone(), stop.clone(), sent.clone());
        let (big, over) = (big_payload.clone(), oversize.clone());
        senders.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let stream = format!("data-{}", (seq as usize + worker) % MAX_STREAMS);
                let mut p = if seq % 5 == 4 {
                    (*over).clone()
                } else {
                    (*big).clone()
                };
                p["stream_id"] = json!(stream);
                p["fragment_id"] = json!(format!("{stream}-{worker}-{seq}"));
                p["sequence_number"] = json!(seq);
                data.emit("fragment:data", p).await.expect("flood emit");
                *sent.lock().unwrap() += 1;
                seq += 1;
            }
        }));
    }
    {
        let (data, stop, sent) = (data.clone(), stop.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let frag = |n| fragment_payload("data-1", n, 48000, 2, &[0i16; 960]);
                let mut bad_b64 = frag(n);
                bad_b64["audio"]["data"] = json!("%%%%");
                let mut bad_type = frag(n);
                bad_type["sequence_number"] = json!("seven");
                let mut missing = frag(n);
                missing.as_object_mut().unwrap().remove("audio");
                let mut long_id = frag(n);
                long_id["fragment_id"] = json!("x".repeat(4000));
                for p in [
                    json!("{not json"),
                    json!([1, 2, 3]),
                    bad_b64,
                    bad_type,
                    missing,
                    long_id,
                ] {
                    data.emit("fragment:data", p).await.expect("emit");
                }
                data.emit("stream:init", json!({"stream_id": 5}))
                    .await
                    .expect("emit");
                data.emit("no:such:event", json!({ "x": n }))
                    .await
                    .expect("emit");
                *sent.lock().unwrap() += 8;
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }

    // The good stream, at 4x real time.
    let speech: Vec<i16> = (0..16000).map(|i| ((i % 80) as i16 - 40) * 200).collect();
    let mut latencies = Vec::new();
    for seq in 0..GOOD_FRAGMENTS {
        let tick = Instant::now();
        let ack = good
            .call(
                "fragment:data",
                fragment_payload("good", seq, 16000, 1, &speech),
            )
            .await;
        assert_eq!(ack["status"], "accepted", "good fragment {seq}: {ack}");
        let ev = good
            .wait_for("fragment:processed", Duration::from_secs(30), |v| {
                v["sequence_number"] == seq
            })
            .await;
        assert_eq!(ev["status"], "success", "good fragment {seq}: {ev}");
        assert_eq!(dubbed_samples(&ev), speech);
        latencies.push(tick.elapsed());
        tokio::time::sleep(GOOD_PACE.saturating_sub(tick.elapsed())).await;
    }
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let flood_secs = t0.elapsed().as_secs_f64();
    let metrics = metrics_text(addr).await;
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    let hwm = proc_status_kb(pid, "VmHWM:").unwrap();
    let peak = (*peak_sampled.lock().unwrap()).max(hwm);
    drop(extra);

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = ms(latencies[latencies.len() / 2]);
    let max = ms(*latencies.last().unwrap());
    let counts = tally.snapshot();
    // Refusals: rejected control calls and `error` events (each refused fragment or event
    // sends one; a rejected call sends both, counted once), plus refused connections.
    let rejected_calls: u64 = counts
        .iter()
        .filter(|(k, _)| !k.contains(':') && !matches!(k.as_str(), "ready" | "ok"))
        .map(|(_, v)| v)
        .sum();
    let error_events: u64 = counts
        .iter()
        .filter(|(k, _)| k.starts_with("error:"))
        .map(|(_, v)| v)
        .sum();
    let refused = rejected_calls + error_events + sessions_refused;
    let events_sent = *sent.lock().unwrap();
    let log_lines = std::fs::read_to_string(&log)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    eprintln!("flood figures ({flood_secs:.1} s):");
    eprintln!("  flooder outcomes by code: {counts:?}");
    eprintln!("  connections refused (MAX_SESSIONS={MAX_SESSIONS}): {sessions_refused}");
    eprintln!(
        "  flood events sent without ack: {events_sent}; refusals: {refused} ({rejected_calls} control calls rejected, {sessions_refused} connections)"
    );
    eprintln!(
        "  good stream: {GOOD_FRAGMENTS} fragments, all success; latency p50 {p50:.0} ms, max {max:.0} ms"
    );
    eprintln!(
        "  service RSS: {} MiB at start, peak {} MiB (bound {RSS_BOUND_MB} MiB)",
        rss_start / 1024,
        peak / 1024
    );
    eprintln!("  service log lines (LOG_LEVEL=WARN): {log_lines}");

    // The flooder was refused for each reason it tried.
    for code in [
        "SESSION_QUEUE_FULL",
        "PAYLOAD_TOO_LARGE",
        "MALFORMED_JSON",
        "INVALID_BASE64",
        "WRONG_TYPE",
        "MISSING_FIELD",
        "INVALID_FIELD",
    ] {
        assert!(
            tally.get(&format!("error:{code}")) > 0,
            "no {code} refusal: {counts:?}"
        );
    }
    assert!(
        tally.get("processed:success") > 0,
        "the flooder's valid fragments were served too: {counts:?}"
    );
    assert!(
        metrics.contains("sts_admission_refused_total{limit=\"MAX_QUEUED_BYTES_PER_SESSION\"}"),
        "{metrics}"
    );
    assert!(
        peak / 1024 < RSS_BOUND_MB,
        "service RSS peaked at {} MiB (bound {RSS_BOUND_MB} MiB)",
        peak / 1024
    );
    drop(server);
}
