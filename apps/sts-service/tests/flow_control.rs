//! Backpressure, timeout, auth, health/metrics and graceful shutdown (echo mode with delays).

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_slow_down_pause_reject_resume() {
    // One slot, queue of one more: the 2nd accepted fragment pauses, the 3rd is rejected.
    let srv = start_server(&[
        "--mode",
        "echo",
        "--echo-delay-ms",
        "700",
        "--max-inflight",
        "1",
    ])
    .await;
    let c = connect(srv.addr, None).await.expect("connect");
    assert_eq!(
        c.call("stream:init", init_payload("bp", 16000, 1)).await["status"],
        "ready"
    );
    let s = vec![100i16; 16000];
    assert_eq!(
        c.call("fragment:data", fragment_payload("bp", 0, 16000, 1, &s))
            .await["status"],
        "accepted"
    );
    let bp = c
        .wait_for("backpressure", Duration::from_secs(2), |v| {
            v["action"] == "slow_down"
        })
        .await;
    assert_eq!(bp["max_inflight"], 1);
    assert_eq!(
        c.call("fragment:data", fragment_payload("bp", 1, 16000, 1, &s))
            .await["status"],
        "accepted"
    );
    c.wait_for("backpressure", Duration::from_secs(2), |v| {
        v["action"] == "pause"
    })
    .await;
    let ack = c
        .call("fragment:data", fragment_payload("bp", 2, 16000, 1, &s))
        .await;
    assert_eq!(ack["error"]["code"], "BACKPRESSURE", "{ack}");
    let resume = c
        .wait_for("backpressure", Duration::from_secs(5), |v| {
            v["action"] == "resume"
        })
        .await;
    assert_eq!(resume["inflight"], 0);
    // Both accepted fragments were answered; processing was serial (MAX_INFLIGHT=1).
    let a = c
        .wait_for("fragment:processed", Duration::from_secs(5), |v| {
            v["sequence_number"] == 0
        })
        .await;
    let b = c
        .wait_for("fragment:processed", Duration::from_secs(5), |v| {
            v["sequence_number"] == 1
        })
        .await;
    assert_eq!(a["status"], "success");
    assert!(
        b["processing_time_ms"].as_u64().unwrap() >= 1300,
        "queued behind the first: {}",
        b["processing_time_ms"]
    );
    assert_eq!(
        c.call("fragment:data", fragment_payload("bp", 3, 16000, 1, &s))
            .await["status"],
        "accepted"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_fragment_is_answered_as_timeout() {
    let srv = start_server(&[
        "--mode",
        "echo",
        "--echo-delay-ms",
        "2000",
        "--processing-timeout",
        "0.3",
    ])
    .await;
    let c = connect(srv.addr, None).await.expect("connect");
    assert_eq!(
        c.call("stream:init", init_payload("to", 16000, 1)).await["status"],
        "ready"
    );
    let t = Instant::now();
    assert_eq!(
        c.call(
            "fragment:data",
            fragment_payload("to", 0, 16000, 1, &[1i16; 16000])
        )
        .await["status"],
        "accepted"
    );
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(5), |_| true)
        .await;
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "answered at the timeout, not after the work"
    );
    assert_eq!(ev["status"], "timeout");
    assert_eq!(ev["error"]["code"], "PROCESSING_TIMEOUT");
    assert!(ev.get("dubbed_audio").is_none());
    assert_eq!(
        c.call("stream:end", json!({"stream_id": "to"})).await["status"],
        "ok"
    );
    let done = c
        .wait_for("stream:complete", Duration::from_secs(5), |_| true)
        .await;
    assert_eq!(done["totals"]["timeout"], 1);
    srv.shutdown();
    srv.wait().await.unwrap();
}

/// `answer_within_ms` as a fragment's deadline: a fragment that waits past it is answered
/// `timeout` without being processed, counted in `sts_fragments_shed_total`, and the
/// fragments behind it are not delayed by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_past_their_deadline_are_shed_unprocessed() {
    // Two slots and a queue of two: all four fragments are accepted (the 4th pauses).
    let srv = start_server(&[
        "--mode",
        "echo",
        "--echo-delay-ms",
        "800",
        "--max-inflight",
        "2",
    ])
    .await;
    let c = connect(srv.addr, None).await.expect("connect");
    assert_eq!(
        c.call("stream:init", init_payload("dl", 16000, 1)).await["status"],
        "ready"
    );
    let s = vec![100i16; 16000];
    // 0 and 1: no deadline (a 1.2 client); they hold both slots for ~800 ms. 2: useless
    // after 300 ms, while it still waits for a slot. 3: plenty of time.
    for (seq, within) in [(0u64, None), (1, None), (2, Some(300)), (3, Some(10_000))] {
        let mut f = fragment_payload("dl", seq, 16000, 1, &s);
        if let Some(ms) = within {
            f["answer_within_ms"] = json!(ms);
        }
        let ack = c.call("fragment:data", f).await;
        assert_eq!(ack["status"], "accepted", "fragment {seq}: {ack}");
    }
    let answer = |seq: u64| {
        c.wait_for("fragment:processed", Duration::from_secs(10), move |v| {
            v["sequence_number"] == seq
        })
    };
    let (a0, a1) = (answer(0).await, answer(1).await);
    let (shed, a3) = (answer(2).await, answer(3).await);
    assert_eq!(a0["status"], "success", "{a0}");
    assert_eq!(a1["status"], "success", "{a1}");
    assert_eq!(shed["status"], "timeout", "{shed}");
    assert_eq!(shed["error"]["code"], "PROCESSING_TIMEOUT", "{shed}");
    assert!(
        shed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shed before asr"),
        "{shed}"
    );
    assert!(shed.get("dubbed_audio").is_none(), "{shed}");
    // Answered when its deadline passed, not when a slot freed (~800 ms).
    let t2 = shed["processing_time_ms"].as_u64().unwrap();
    assert!(t2 < 650, "the shed fragment was answered after {t2} ms");
    assert_eq!(a3["status"], "success", "{a3}");
    // 3 ran as soon as 0 or 1 freed a slot: the shed fragment took no processing time.
    let t3 = a3["processing_time_ms"].as_u64().unwrap();
    assert!(t3 < 2 * 800 + 500, "fragment 3 waited {t3} ms");
    let m = metrics_text(srv.addr).await;
    assert!(
        m.contains("sts_fragments_shed_total{stage=\"asr\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sts_fragments_shed_total{stage=\"tts\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("sts_fragments_total{status=\"timeout\"} 1"),
        "{m}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_is_required_when_configured() {
    let srv = start_server(&["--mode", "echo", "--sts-auth-token", "s3cret"]).await;
    let good = connect(srv.addr, Some(json!({"token": "s3cret"})))
        .await
        .expect("connect");
    assert_eq!(
        good.call("stream:init", init_payload("a1", 16000, 1)).await["status"],
        "ready"
    );
    // Wrong token: the namespace connection is refused, so no ack ever comes back.
    if let Ok(bad) = connect(srv.addr, Some(json!({"token": "wrong"}))).await {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        use futures_util::FutureExt;
        let _ = bad
            .client
            .emit_with_ack(
                "stream:init",
                init_payload("a2", 16000, 1),
                Duration::from_secs(2),
                move |_p, _c| {
                    let tx = tx.clone();
                    async move {
                        if let Some(t) = tx.lock().unwrap().take() {
                            let _ = t.send(());
                        }
                    }
                    .boxed()
                },
            )
            .await;
        assert!(
            tokio::time::timeout(Duration::from_secs(2), rx)
                .await
                .is_err(),
            "unauthorised client got an ack"
        );
    }
    let m = reqwest::get(format!("http://{}/metrics", srv.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("sts_errors_total{code=\"UNAUTHORIZED\"} 1"),
        "{m}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_graceful_shutdown_finishes_in_flight_work() {
    let srv = start_server(&["--mode", "echo", "--echo-delay-ms", "600"]).await;
    let base = format!("http://{}", srv.addr);
    let h: serde_json::Value = reqwest::get(format!("{base}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["mode"], "echo");
    let m = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "sts_stage_duration_seconds",
        "sts_fragments_total",
        "sts_active_sessions",
        "sts_inflight_fragments",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    let c = connect(srv.addr, None).await.expect("connect");
    assert_eq!(
        c.call("stream:init", init_payload("g", 16000, 1)).await["status"],
        "ready"
    );
    let m = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("sts_active_sessions 1"), "{m}");
    assert_eq!(
        c.call(
            "fragment:data",
            fragment_payload("g", 0, 16000, 1, &[5i16; 16000])
        )
        .await["status"],
        "accepted"
    );
    srv.shutdown();
    // The in-flight fragment is still answered before the server stops.
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(5), |_| true)
        .await;
    assert_eq!(ev["status"], "success");
    tokio::time::timeout(Duration::from_secs(10), srv.wait())
        .await
        .expect("server stops")
        .unwrap();
}
