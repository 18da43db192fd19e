//! Faults: the STS dies mid-stream and comes back (fallback, then dubbing resumes); SIGTERM
//! stops a service with a running worker cleanly.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, http_get, http_send, metric, wait_until, Proc};

fn start_sts(port: u16, dir: &std::path::Path, tag: &str) -> Proc {
    let p = spawn_sts(port, dir, tag, 0);
    wait_until(Duration::from_secs(30), "sts-service /health", || {
        http_get(port, "/health").is_some_and(|(c, _)| c == 200)
    });
    p
}

/// The real sts-service (echo mode), its model load delayed by `load_delay_ms`.
fn spawn_sts(port: u16, dir: &std::path::Path, tag: &str, load_delay_ms: u64) -> Proc {
    Proc::spawn(
        tag,
        Command::new(common::sts_bin())
            .env("STS_MODE", "echo")
            .env("STS_PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("LOAD_DELAY_MS", load_delay_ms.to_string()),
        dir,
    )
}

/// Dubs `clip` to `out` through the STS on `sts_port` (fast retries).
fn spawn_dub(
    clip: &std::path::Path,
    out: &std::path::Path,
    sts_port: u16,
    dir: &std::path::Path,
) -> Proc {
    Proc::spawn(
        "dub",
        Command::new(common::media_bin())
            .args(["dub", "--input"])
            .arg(clip)
            .arg("--output")
            .arg(out)
            .env("STS_SERVICE_URL", format!("http://127.0.0.1:{sts_port}"))
            .env("FRAGMENT_DURATION_MS", "2000")
            .env("OUTPUT_DELAY_MS", "4500")
            .env("RETRY_MIN_MS", "200")
            .env("RETRY_MAX_MS", "1000")
            .env("SEGMENT_ARTIFACTS", "false")
            .env("LOG_LEVEL", "INFO"),
        dir,
    )
}

/// Fragment statuses from a `dub` report.
fn statuses(out: &std::path::Path) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.report.json", out.display())).unwrap(),
    )
    .unwrap();
    report["fragments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn sts_dies_mid_stream_falls_back_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let sts_port = free_port();
    let mut sts = start_sts(sts_port, dir.path(), "sts1");
    let clip = dir.path().join("in.mp4");
    common::make_sync_clip(&clip, 20);
    let out = dir.path().join("out.mkv");
    let mut dub = spawn_dub(&clip, &out, sts_port, dir.path());
    // Kill the STS after ~6 s of stream, bring it back ~5 s later.
    std::thread::sleep(Duration::from_secs(7));
    let _ = sts.child.kill();
    let _ = sts.child.wait();
    std::thread::sleep(Duration::from_secs(5));
    let _sts2 = start_sts(sts_port, dir.path(), "sts2");
    let st = dub
        .wait_exit(Duration::from_secs(40))
        .expect("dub finishes");
    assert!(st.success(), "dub failed:\n{}", dub.log_text());
    let statuses = statuses(&out);
    assert_eq!(statuses.len(), 10, "{statuses:?}");
    let first_bad = statuses
        .iter()
        .position(|s| s != "processed")
        .expect("some fragments fell back while the STS was down");
    let resumed = statuses[first_bad..]
        .iter()
        .position(|s| s == "processed")
        .expect("dubbing resumed after the STS came back");
    assert!(first_bad >= 1 && resumed >= 1, "{statuses:?}");
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("processed"),
        "{statuses:?}"
    );
    // The output never stalled: full length, in sync.
    let (v, a) = common::probe(&out);
    assert!((v.unwrap().last_end - 20.0).abs() < 0.2);
    assert!((a.unwrap().last_end - 20.0).abs() < 0.2);
    let offsets = common::av_offsets(&out);
    assert_eq!(offsets.len(), 20, "{offsets:?}");
    assert!(offsets.iter().all(|o| o.abs() < 0.12), "{offsets:?}");
}

/// The STS is redeployed mid-stream and its new instance takes 8 s to load its model,
/// refusing `stream:init` meanwhile: the session is asked again for as long as it takes
/// (an attempt cap of ~5 s would leave the rest of the stream undubbed), and dubbing
/// resumes once the model is loaded.
#[test]
fn a_redeployed_sts_that_loads_slowly_gets_the_stream_back() {
    let dir = tempfile::tempdir().unwrap();
    let sts_port = free_port();
    let mut sts = start_sts(sts_port, dir.path(), "sts1");
    let clip = dir.path().join("in.mp4");
    common::make_sync_clip(&clip, 30);
    let out = dir.path().join("out.mkv");
    let mut dub = spawn_dub(&clip, &out, sts_port, dir.path());
    std::thread::sleep(Duration::from_secs(6));
    let _ = sts.child.kill();
    let _ = sts.child.wait();
    let mut sts2 = spawn_sts(sts_port, dir.path(), "sts2", 8_000);
    let st = dub
        .wait_exit(Duration::from_secs(60))
        .expect("dub finishes");
    assert!(st.success(), "dub failed:\n{}", dub.log_text());
    let statuses = statuses(&out);
    let log = dub.log_text();
    assert_eq!(statuses.len(), 15, "{statuses:?}");
    let first_bad = statuses
        .iter()
        .position(|s| s != "processed")
        .expect("fragments fell back while the STS was away or loading");
    let resumed = statuses[first_bad..]
        .iter()
        .position(|s| s == "processed")
        .unwrap_or_else(|| panic!("dubbing never resumed: {statuses:?}\n{log}"));
    // Away ~0.5 s plus 8 s of loading: at least four 2 s fragments went out original.
    assert!(resumed >= 4, "{statuses:?}");
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("processed"),
        "{statuses:?}"
    );
    assert!(
        sts2.log_text().contains("LOAD_DELAY_MS"),
        "the second STS did not delay its load:\n{}",
        sts2.log_text()
    );
    let _ = sts2.terminate(Duration::from_secs(5));
}

#[test]
fn sigterm_stops_service_with_a_running_worker() {
    let dir = tempfile::tempdir().unwrap();
    let http = free_port();
    let clip = dir.path().join("in.mp4");
    common::make_clip(&clip, 30, 440);
    let mut ms = Proc::spawn(
        "media-service",
        Command::new(common::media_bin())
            .env("MEDIA_SERVICE_PORT", http.to_string())
            .env("MEDIA_SERVICE_HOST", "127.0.0.1")
            // The control API reads and writes files only inside these folders.
            .env("INPUT_DIR", dir.path())
            .env("OUTPUT_DIR", dir.path())
            .env("DISCOVERY", "false")
            .env(
                "STS_SERVICE_URL",
                format!("http://127.0.0.1:{}", free_port()),
            )
            .env("FRAGMENT_DURATION_MS", "2000")
            .env("OUTPUT_DELAY_MS", "3000")
            .env("SEGMENT_ARTIFACTS", "false"),
        dir.path(),
    );
    wait_until(Duration::from_secs(20), "/health", || {
        http_get(http, "/health").is_some_and(|(c, _)| c == 200)
    });
    let body = format!(
        r#"{{"name":"file1","input":"{}","output":"{}"}}"#,
        clip.display(),
        dir.path().join("o.mkv").display()
    );
    let (code, resp) = http_send(http, "POST", "/v1/streams", &body).unwrap();
    assert_eq!(code, 201, "{resp}");
    wait_until(
        Duration::from_secs(15),
        "a fragment to be placed (STS down: fallback)",
        || {
            http_get(http, "/metrics")
                .and_then(|(_, b)| {
                    metric(
                        &b,
                        "worker_audio_fragments_total",
                        &["status=\"fallback\"", "file1"],
                    )
                })
                .is_some_and(|v| v >= 1.0)
        },
    );
    let (_, health) = http_get(http, "/health").unwrap();
    assert!(
        health.contains("\"running\"") && health.contains("\"sts_ready\":false"),
        "{health}"
    );
    let t0 = Instant::now();
    let st = ms
        .terminate(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(st.success(), "exit status {st:?}\n{}", ms.log_text());
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        ms.log_text().contains("all workers stopped"),
        "{}",
        ms.log_text()
    );
}
