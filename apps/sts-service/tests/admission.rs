//! Admission limits (MAX_SESSIONS, MAX_STREAMS_PER_SESSION, MAX_QUEUED_BYTES_PER_SESSION),
//! stream ownership across connections, the MONITOR policy, and large payloads decoded off
//! the async threads (echo mode: fast and deterministic).

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn samples(n: usize) -> Vec<i16> {
    (0..n).map(|i| ((i % 200) as i16 - 100) * 50).collect()
}

async fn init(c: &TestClient, stream: &str) -> Value {
    c.call("stream:init", init_payload(stream, 16000, 1)).await
}

async fn send(c: &TestClient, stream: &str, seq: u64, n: usize) -> Value {
    c.call(
        "fragment:data",
        fragment_payload(stream, seq, 16000, 1, &samples(n)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_sessions_are_refused_at_the_handshake() {
    let srv = start_server(&["--mode", "echo", "--max-sessions", "2"]).await;
    let a = connect_outcome(srv.addr, None)
        .await
        .expect("first admitted");
    let b = connect_outcome(srv.addr, None)
        .await
        .expect("second admitted");
    let refused = connect_outcome(srv.addr, None)
        .await
        .err()
        .expect("third refused");
    assert!(
        refused.contains("TOO_MANY_SESSIONS") && refused.contains("MAX_SESSIONS=2"),
        "{refused}"
    );
    // The admitted ones work.
    assert_eq!(init(&b, "s-b").await["status"], "ready");
    // A slot frees when a connection closes.
    a.client.disconnect().await.unwrap();
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = connect_outcome(srv.addr, None).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = again.expect("admitted once a slot is free");
    assert_eq!(init(&c, "s-c").await["status"], "ready");
    let m = metrics_text(srv.addr).await;
    assert!(
        m.contains("sts_admission_refused_total{limit=\"MAX_SESSIONS\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sts_errors_total{code=\"TOO_MANY_SESSIONS\"} 1"),
        "{m}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_max_streams_per_session_are_refused() {
    let srv = start_server(&["--mode", "echo", "--max-streams-per-session", "2"]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    assert_eq!(init(&c, "m1").await["status"], "ready");
    assert_eq!(init(&c, "m2").await["status"], "ready");
    let ack = init(&c, "m3").await;
    assert_eq!(ack["error"]["code"], "TOO_MANY_STREAMS", "{ack}");
    let msg = ack["error"]["message"].as_str().unwrap();
    assert!(msg.contains("MAX_STREAMS_PER_SESSION=2"), "{msg}");
    // Re-opening an owned stream is not a new stream.
    assert_eq!(init(&c, "m1").await["status"], "ready");
    // Another connection has its own allowance.
    let other = connect(srv.addr, None).await.expect("connect");
    assert_eq!(init(&other, "m3").await["status"], "ready");
    // Ending a stream frees its place.
    assert_eq!(
        c.call("stream:end", json!({"stream_id": "m2"})).await["status"],
        "ok"
    );
    c.wait_for("stream:complete", Duration::from_secs(5), |v| {
        v["stream_id"] == "m2"
    })
    .await;
    assert_eq!(init(&c, "m4").await["status"], "ready");
    // Monitor subscriptions are bounded by the same number.
    let watcher = connect(srv.addr, None).await.expect("connect");
    for id in ["w1", "w2"] {
        let ack = watcher
            .call("monitor:subscribe", json!({ "stream_id": id }))
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
    }
    let ack = watcher
        .call("monitor:subscribe", json!({"stream_id": "w3"}))
        .await;
    assert_eq!(ack["error"]["code"], "TOO_MANY_STREAMS", "{ack}");
    // Subscribing again to a watched stream is fine.
    let ack = watcher
        .call("monitor:subscribe", json!({"stream_id": "w1"}))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_cannot_be_taken_by_another_connection() {
    let srv = start_server(&["--mode", "echo"]).await;
    let owner = connect(srv.addr, None).await.expect("connect");
    let intruder = connect(srv.addr, None).await.expect("connect");
    let ready = init(&owner, "owned").await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let token = ready["resume_token"]
        .as_str()
        .expect("ready ack carries a resume_token")
        .to_string();
    assert_ne!(
        ready["session_id"].as_str(),
        Some(token.as_str()),
        "the token is not the (logged) session id"
    );

    // A second stream:init for the live id from another connection: refused.
    let ack = init(&intruder, "owned").await;
    assert_eq!(ack["error"]["code"], "STREAM_ALREADY_EXISTS", "{ack}");
    let msg = ack["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"owned\"") && msg.contains("another connection"),
        "{msg}"
    );
    // A wrong resume token proves nothing.
    let mut guess = init_payload("owned", 16000, 1);
    guess["resume_token"] = json!("0123456789abcdef0123456789abcdef");
    let ack = intruder.call("stream:init", guess).await;
    assert_eq!(ack["error"]["code"], "STREAM_ALREADY_EXISTS", "{ack}");
    // Its fragments and controls for the stream are refused too.
    let ack = send(&intruder, "owned", 0, 16000).await;
    assert_eq!(ack["error"]["code"], "NOT_STREAM_OWNER", "{ack}");
    let ack = intruder
        .call("stream:end", json!({"stream_id": "owned"}))
        .await;
    assert_eq!(ack["error"]["code"], "NOT_STREAM_OWNER", "{ack}");
    // The owner is unaffected.
    assert_eq!(send(&owner, "owned", 0, 16000).await["status"], "accepted");
    let ev = owner
        .wait_for("fragment:processed", Duration::from_secs(5), |v| {
            v["stream_id"] == "owned"
        })
        .await;
    assert_eq!(ev["status"], "success");
    // The same connection may re-init its stream (new parameters).
    let again = init(&owner, "owned").await;
    assert_eq!(again["status"], "ready", "{again}");
    let token = again["resume_token"].as_str().unwrap().to_string();

    // A reconnected client that the server does not yet know is the old one: the resume
    // token of its last ready ack hands the stream over at once.
    let mut resume = init_payload("owned", 16000, 1);
    resume["resume_token"] = json!(token);
    let ack = intruder.call("stream:init", resume).await;
    assert_eq!(ack["status"], "ready", "{ack}");
    let told = owner
        .wait_for("error", Duration::from_secs(5), |v| {
            v["code"] == "NOT_STREAM_OWNER"
        })
        .await;
    assert_eq!(told["stream_id"], "owned");
    let ack = send(&owner, "owned", 1, 16000).await;
    assert_eq!(ack["error"]["code"], "NOT_STREAM_OWNER", "{ack}");
    assert_eq!(
        send(&intruder, "owned", 1, 16000).await["status"],
        "accepted"
    );

    // The usual reconnect: the old connection is gone, the new one takes its stream.
    let first = connect(srv.addr, None).await.expect("connect");
    assert_eq!(init(&first, "recon").await["status"], "ready");
    first.client.disconnect().await.unwrap();
    let second = connect(srv.addr, None).await.expect("connect");
    let mut ack = Value::Null;
    for _ in 0..50 {
        ack = init(&second, "recon").await;
        if ack["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ack["status"], "ready", "{ack}");
    srv.shutdown();
    srv.wait().await.unwrap();
}

async fn sub(c: &TestClient) -> Value {
    c.call("monitor:subscribe", json!({"stream_id": "watched"}))
        .await
}

/// A server with `--monitor policy` refuses a subscription, saying `why`.
async fn subscription_refused(policy: &str, why: &str) {
    let srv = start_server(&["--mode", "echo", "--monitor", policy]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    let ack = sub(&c).await;
    assert_eq!(ack["error"]["code"], "MONITOR_NOT_ALLOWED", "{ack}");
    let msg = ack["error"]["message"].as_str().unwrap();
    assert!(msg.contains(why), "{msg}");
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_policy_decides_who_may_subscribe() {
    // off: nobody; token without STS_AUTH_TOKEN: nobody.
    subscription_refused("off", "MONITOR=off").await;
    subscription_refused("token", "STS_AUTH_TOKEN").await;

    // token with STS_AUTH_TOKEN: whoever passed the handshake; the rest never gets in.
    let srv = start_server(&[
        "--mode",
        "echo",
        "--monitor",
        "token",
        "--sts-auth-token",
        "m0nitor-t0ken",
    ])
    .await;
    let c = connect_outcome(srv.addr, Some(json!({"token": "m0nitor-t0ken"})))
        .await
        .expect("token holder admitted");
    assert_eq!(sub(&c).await["status"], "ok");
    let refused = connect_outcome(srv.addr, Some(json!({"token": "m0nitor-t0keN"})))
        .await
        .err()
        .expect("wrong token refused");
    assert!(refused.contains("UNAUTHORIZED"), "{refused}");
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_bytes_per_connection_are_bounded() {
    // 1 s fragments of 16 kHz mono are 32000 bytes: three fit in 100000, a fourth does not.
    let srv = start_server(&[
        "--mode",
        "echo",
        "--echo-delay-ms",
        "1500",
        "--max-inflight",
        "8",
        "--max-fragment-bytes",
        "40000",
        "--max-queued-bytes-per-session",
        "100000",
    ])
    .await;
    let c = connect(srv.addr, None).await.expect("connect");
    assert_eq!(init(&c, "q1").await["status"], "ready");
    assert_eq!(init(&c, "q2").await["status"], "ready");
    for seq in 0..3 {
        let ack = send(&c, if seq == 2 { "q2" } else { "q1" }, seq, 16000).await;
        assert_eq!(ack["status"], "accepted", "fragment {seq}: {ack}");
    }
    // The limit is the connection's, whichever stream the fragment is for.
    for stream in ["q1", "q2"] {
        let ack = send(&c, stream, 9, 16000).await;
        assert_eq!(ack["error"]["code"], "SESSION_QUEUE_FULL", "{ack}");
        let msg = ack["error"]["message"].as_str().unwrap();
        assert!(msg.contains("MAX_QUEUED_BYTES_PER_SESSION=100000"), "{msg}");
    }
    let m = metrics_text(srv.addr).await;
    assert!(m.contains("sts_queued_bytes 96000"), "{m}");
    // Another connection has its own budget.
    let other = connect(srv.addr, None).await.expect("connect");
    assert_eq!(init(&other, "q3").await["status"], "ready");
    assert_eq!(send(&other, "q3", 0, 16000).await["status"], "accepted");
    // Answered fragments give their bytes back.
    for seq in 0..3 {
        c.wait_for("fragment:processed", Duration::from_secs(10), |v| {
            v["sequence_number"] == seq
        })
        .await;
    }
    let ack = send(&c, "q1", 10, 16000).await;
    assert_eq!(ack["status"], "accepted", "{ack}");
    c.wait_for("fragment:processed", Duration::from_secs(10), |v| {
        v["sequence_number"] == 10
    })
    .await;
    other
        .wait_for("fragment:processed", Duration::from_secs(10), |_| true)
        .await;
    let mut m = String::new();
    for _ in 0..50 {
        m = metrics_text(srv.addr).await;
        if m.contains("sts_queued_bytes 0") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(m.contains("sts_queued_bytes 0"), "{m}");
    assert!(
        m.contains("sts_admission_refused_total{limit=\"MAX_QUEUED_BYTES_PER_SESSION\"} 2"),
        "{m}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_are_decoded_off_the_async_threads_with_the_same_checks() {
    // 30 s of 48 kHz stereo: the largest accepted fragment (5.76 MB, 7.7 MB of base64).
    let srv = start_server(&["--mode", "echo"]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    let ack = c
        .call("stream:init", {
            let mut p = init_payload("big", 48000, 2);
            p["fragment_duration_ms"] = json!(30000);
            p
        })
        .await;
    assert_eq!(ack["status"], "ready", "{ack}");
    let big: Vec<i16> = (0..48000 * 2 * 30).map(|i| (i % 1000) as i16).collect();
    let ack = c
        .call("fragment:data", fragment_payload("big", 0, 48000, 2, &big))
        .await;
    assert_eq!(ack["status"], "accepted", "{ack}");
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(30), |_| true)
        .await;
    assert_eq!(dubbed_samples(&ev), big, "echo returns the input");
    // Broken base64 beyond the inline size is still INVALID_BASE64.
    let mut bad = fragment_payload("big", 1, 48000, 2, &big);
    bad["audio"]["data"] = json!("!".repeat(200_000) + "AAAA");
    let ack = c.call("fragment:data", bad).await;
    assert_eq!(ack["error"]["code"], "INVALID_BASE64", "{ack}");
    // A large pre-serialised (string) payload is parsed the same way.
    let text = fragment_payload("big", 2, 48000, 2, &big).to_string();
    let ack = c.call("fragment:data", Value::String(text)).await;
    assert_eq!(ack["status"], "accepted", "{ack}");
    let ack = c
        .call("fragment:data", Value::String("{\"not json".repeat(20_000)))
        .await;
    assert_eq!(ack["error"]["code"], "MALFORMED_JSON", "{ack}");
    srv.shutdown();
    srv.wait().await.unwrap();
}
