//! Every bad-input case gets its `error` event and rejected ack; the connection and other
//! streams keep working (echo mode: fast and deterministic).

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn valid_fragment_still_works(c: &TestClient, stream: &str, seq: u64) {
    let samples: Vec<i16> = (0..16000).map(|i| ((i % 100) * 100) as i16).collect();
    let ack = c
        .call(
            "fragment:data",
            fragment_payload(stream, seq, 16000, 1, &samples),
        )
        .await;
    assert_eq!(ack["status"], "accepted", "{ack}");
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(10), |v| {
            v["sequence_number"] == seq && v["stream_id"] == stream
        })
        .await;
    assert_eq!(ev["status"], "success");
    assert_eq!(dubbed_samples(&ev), samples, "echo returns the input");
}

async fn expect_rejected(
    c: &TestClient,
    payload: impl Into<rust_socketio::Payload>,
    code: &str,
) -> Value {
    let before = c.received("error").len();
    let ack = c.call("fragment:data", payload).await;
    assert_eq!(ack["status"], "rejected", "{ack}");
    assert_eq!(ack["error"]["code"], code, "{ack}");
    assert!(!ack["error"]["message"].as_str().unwrap().is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let errs = c.received("error");
        if errs.len() > before {
            assert_eq!(errs[before]["code"], code, "{:?}", errs[before]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error event for {code}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_gets_its_error_and_the_next_valid_fragment_succeeds() {
    let srv = start_server(&["--mode", "echo", "--max-fragment-bytes", "200000"]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    let other = connect(srv.addr, None).await.expect("connect");

    // Fragment before any stream:init on this connection.
    let frag = fragment_payload("s1", 0, 16000, 1, &[0i16; 16000]);
    expect_rejected(&c, frag.clone(), "STREAM_NOT_INITIALIZED").await;

    assert_eq!(
        c.call("stream:init", init_payload("s1", 16000, 1)).await["status"],
        "ready"
    );
    assert_eq!(
        other
            .call("stream:init", init_payload("o1", 16000, 1))
            .await["status"],
        "ready"
    );
    valid_fragment_still_works(&c, "s1", 0).await;

    // Malformed JSON (a string that is not JSON).
    expect_rejected(&c, "{not json", "MALFORMED_JSON").await;
    valid_fragment_still_works(&c, "s1", 1).await;

    // Missing field.
    let mut p = fragment_payload("s1", 2, 16000, 1, &[0i16; 16000]);
    p.as_object_mut().unwrap().remove("duration_ms");
    let ack = expect_rejected(&c, p, "MISSING_FIELD").await;
    assert!(ack["error"]["message"]
        .as_str()
        .unwrap()
        .contains("duration_ms"));
    valid_fragment_still_works(&c, "s1", 2).await;

    // Wrong type.
    let mut p = fragment_payload("s1", 3, 16000, 1, &[0i16; 16000]);
    p["sequence_number"] = json!("three");
    expect_rejected(&c, p, "WRONG_TYPE").await;
    valid_fragment_still_works(&c, "s1", 3).await;

    // Unknown stream.
    expect_rejected(
        &c,
        fragment_payload("nope", 4, 16000, 1, &[0i16; 16000]),
        "UNKNOWN_STREAM",
    )
    .await;
    // Someone else's stream.
    expect_rejected(
        &c,
        fragment_payload("o1", 4, 16000, 1, &[0i16; 16000]),
        "NOT_STREAM_OWNER",
    )
    .await;
    valid_fragment_still_works(&c, "s1", 4).await;

    // Audio length does not match duration_ms.
    let mut p = fragment_payload("s1", 5, 16000, 1, &[0i16; 16000]);
    p["duration_ms"] = json!(2000);
    expect_rejected(&c, p, "AUDIO_LENGTH_MISMATCH").await;
    valid_fragment_still_works(&c, "s1", 5).await;

    // Bad base64.
    let mut p = fragment_payload("s1", 6, 16000, 1, &[0i16; 16000]);
    p["audio"]["data"] = json!("%%%% definitely not base64 %%%%");
    expect_rejected(&c, p, "INVALID_BASE64").await;
    valid_fragment_still_works(&c, "s1", 6).await;

    // Format differs from the stream's declaration.
    let mut p = fragment_payload("s1", 7, 16000, 1, &[0i16; 16000]);
    p["audio"]["sample_rate_hz"] = json!(48000);
    expect_rejected(&c, p, "AUDIO_FORMAT_MISMATCH").await;
    valid_fragment_still_works(&c, "s1", 7).await;

    // Oversize: 7 s = 224000 bytes > MAX_FRAGMENT_BYTES=200000.
    expect_rejected(
        &c,
        fragment_payload("s1", 8, 16000, 1, &vec![0i16; 7 * 16000]),
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    valid_fragment_still_works(&c, "s1", 8).await;

    // Bad stream:init gets a rejected ack and an error event too.
    let ack = c
        .call(
            "stream:init",
            json!({"stream_id": "bad id!", "source_language": "en"}),
        )
        .await;
    assert_eq!(ack["status"], "rejected");
    assert_eq!(ack["error"]["code"], "MISSING_FIELD");
    let mut p = init_payload("s2", 11025, 1);
    p["audio"]["channels"] = json!(1);
    let ack = c.call("stream:init", p).await;
    assert_eq!(ack["error"]["code"], "UNSUPPORTED_AUDIO_PARAMS", "{ack}");
    assert!(ack["error"]["message"].as_str().unwrap().contains("16000"));

    // Control for an unknown stream.
    let ack = c.call("stream:pause", json!({"stream_id": "nope"})).await;
    assert_eq!(ack["error"]["code"], "UNKNOWN_STREAM");

    // The other client's stream was never affected.
    valid_fragment_still_works(&other, "o1", 0).await;
    assert!(
        other.received("error").is_empty(),
        "no errors leaked to other clients"
    );

    // Pause/resume: paused streams reject, resumed accept.
    assert_eq!(
        c.call("stream:pause", json!({"stream_id": "s1"})).await["status"],
        "ok"
    );
    expect_rejected(
        &c,
        fragment_payload("s1", 9, 16000, 1, &[0i16; 16000]),
        "STREAM_NOT_ACCEPTING",
    )
    .await;
    assert_eq!(
        c.call("stream:resume", json!({"stream_id": "s1"})).await["status"],
        "ok"
    );
    valid_fragment_still_works(&c, "s1", 9).await;

    let m = reqwest::get(format!("http://{}/metrics", srv.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("sts_fragments_rejected_total{code=\"INVALID_BASE64\"} 1"),
        "{m}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}
