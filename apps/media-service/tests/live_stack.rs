//! Integration: xiu-lite (local media server) + sts-service (echo mode) + media-service.
//! A generated 20 s clip is published over RTSP; the RTMP output is recorded and checked
//! (codecs, duration, A/V offset measured on flash/beep marks), and `/metrics` is read.
//! Every test uses its own ports and stream name. Binaries: XIU_LITE_BIN, STS_SERVICE_BIN.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{free_port, http_get, http_send, metric, wait_until, Proc};

struct Stack {
    dir: tempfile::TempDir,
    rtsp: u16,
    rtmp: u16,
    api: u16,
    http: u16,
    xiu: Proc,
    _sts: Proc,
    ms: Proc,
}

fn start_stack(echo_delay_ms: u64, discovery: bool) -> Stack {
    start_stack_with(echo_delay_ms, discovery, &[])
}

/// [`start_stack`] with extra media-service settings.
fn start_stack_with(echo_delay_ms: u64, discovery: bool, env: &[(&str, &str)]) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let (rtsp, rtmp, api, http, sts_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let xiu = Proc::spawn(
        "xiu",
        Command::new(common::xiu_bin()).args([
            "--rtsp-port",
            &rtsp.to_string(),
            "--rtmp-port",
            &rtmp.to_string(),
            "--api-port",
            &api.to_string(),
        ]),
        dir.path(),
    );
    let sts = Proc::spawn(
        "sts",
        Command::new(common::sts_bin())
            .env("STS_MODE", "echo")
            .env("ECHO_DELAY_MS", echo_delay_ms.to_string())
            .env("STS_PORT", sts_port.to_string())
            .env("HOST", "127.0.0.1")
            .env("LOG_LEVEL", "INFO"),
        dir.path(),
    );
    wait_until(Duration::from_secs(20), "xiu-lite API", || {
        http_get(api, "/v3/paths/list").is_some_and(|(c, _)| c == 200)
    });
    common::wait_until_explained(
        Duration::from_secs(30),
        &format!("sts-service /health on port {sts_port}"),
        || http_get(sts_port, "/health").is_some_and(|(c, _)| c == 200),
        || format!("sts-service log:\n{}", sts.log_text()),
    );
    let ms = Proc::spawn(
        "media-service",
        Command::new(common::media_bin())
            .env("MEDIAMTX_HOST", "127.0.0.1")
            .env("MEDIAMTX_RTSP_PORT", rtsp.to_string())
            .env("MEDIAMTX_RTMP_PORT", rtmp.to_string())
            .env("MEDIAMTX_API_PORT", api.to_string())
            .env("MEDIA_SERVICE_PORT", http.to_string())
            .env("MEDIA_SERVICE_HOST", "127.0.0.1")
            .env("STS_SERVICE_URL", format!("http://127.0.0.1:{sts_port}"))
            .env("FRAGMENT_DURATION_MS", "4000")
            .env("OUTPUT_DELAY_MS", "7000")
            .env("DISCOVERY", discovery.to_string())
            .env("DISCOVERY_INTERVAL_MS", "500")
            .env("SEGMENT_DIR", dir.path().join("segments"))
            .env("LOG_LEVEL", "INFO")
            // "{sts}" in a value stands for this stack's STS (e.g. a list of several).
            .envs(env.iter().map(|(k, v)| {
                (
                    *k,
                    v.replace("{sts}", &format!("http://127.0.0.1:{sts_port}")),
                )
            })),
        dir.path(),
    );
    wait_until(Duration::from_secs(20), "media-service /health", || {
        http_get(http, "/health").is_some_and(|(c, _)| c == 200)
    });
    Stack {
        dir,
        rtsp,
        rtmp,
        api,
        http,
        xiu,
        _sts: sts,
        ms,
    }
}

impl Stack {
    /// `POST /v1/streams {"name": name}`: the status code and body.
    fn add_stream(&self, name: &str) -> (u16, String) {
        http_send(
            self.http,
            "POST",
            "/v1/streams",
            &format!(r#"{{"name":"{name}"}}"#),
        )
        .unwrap()
    }

    fn publish(&self, clip: &Path, name: &str) -> Proc {
        Proc::spawn(
            &format!("publish-{name}"),
            Command::new("ffmpeg")
                .args(["-v", "error", "-re", "-i"])
                .arg(clip)
                .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
                .arg(format!("rtsp://127.0.0.1:{}/live/{name}/in", self.rtsp)),
            self.dir.path(),
        )
    }

    /// Waits for `live/<name>/out` on the media server, then records it until it ends.
    fn record_output(&self, name: &str) -> PathBuf {
        let out_path = format!("live/{name}/out");
        common::wait_until_explained(
            Duration::from_secs(40),
            "the dubbed output to appear on the media server",
            || http_get(self.api, "/v3/paths/list").is_some_and(|(_, b)| b.contains(&out_path)),
            || {
                let paths = http_get(self.api, "/v3/paths/list").map(|(_, b)| b);
                format!("paths: {paths:?}\n{}", self.logs_of_the_run())
            },
        );
        let file = self.dir.path().join(format!("{name}-out.flv"));
        let mut rec = Proc::spawn(
            &format!("record-{name}"),
            Command::new("ffmpeg")
                // Probe long enough to see both streams even when a server's GOP cache
                // sends a burst of video first.
                .args([
                    "-v",
                    "error",
                    "-y",
                    "-analyzeduration",
                    "10000000",
                    "-probesize",
                    "20000000",
                ])
                // The local media server does not always tell a player that the
                // publication ended (seen once in CI under load, after the worker had
                // finished): 10 s without data ends the recording too.
                .args(["-rw_timeout", "10000000"])
                .args(["-rtmp_app", "live", "-rtmp_playpath"])
                .arg(format!("{name}/out"))
                .args([
                    "-i",
                    &format!("rtmp://127.0.0.1:{}", self.rtmp),
                    "-c",
                    "copy",
                ])
                .arg(&file),
            self.dir.path(),
        );
        let st = rec.wait_exit(Duration::from_secs(60));
        assert!(
            st.is_some(),
            "recording did not end: the output never closed; media-service log:\n{}",
            self.ms.log_text()
        );
        file
    }

    /// Video and audio of a recording, or a failure with the logs that explain it.
    fn probe_both(&self, rec: &Path) -> (common::StreamInfo, common::StreamInfo) {
        match common::probe(rec) {
            (Some(v), Some(a)) => (v, a),
            (v, a) => {
                let recorder_logs: Vec<String> = std::fs::read_dir(self.dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("record-"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect();
                let log = self.ms.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "recording {} lacks a stream: video={v:?} audio={a:?}\nrecorder: {recorder_logs:?}\nmedia-service (last lines, newest first):\n{}",
                    rec.display(),
                    tail.join("\n")
                );
            }
        }
    }

    /// Polls `/health` every 250 ms (for up to 60 s) until one answer contains every
    /// needle; the thread's result says whether one did.
    fn watch_health(&self, needles: &[&str]) -> std::thread::JoinHandle<bool> {
        let http = self.http;
        let needles: Vec<String> = needles.iter().map(|n| n.to_string()).collect();
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < until {
                if http_get(http, "/health")
                    .is_some_and(|(_, b)| needles.iter().all(|n| b.contains(n.as_str())))
                {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            false
        })
    }

    /// The last lines of every process of the stack (media server, media-service, STS,
    /// publishers, recorders): what explains a short or late output.
    fn logs_of_the_run(&self) -> String {
        let mut logs: Vec<(String, String)> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|f| f.ends_with(".log"))
            .map(|f| {
                let text = std::fs::read_to_string(self.dir.path().join(&f)).unwrap_or_default();
                (f, text)
            })
            .collect();
        logs.sort();
        logs.iter()
            .map(|(file, text)| {
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(60);
                // Warnings and errors from before the tail too: what went wrong early.
                let early: Vec<&str> = lines[..from]
                    .iter()
                    .copied()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                format!(
                    "--- {file} ({} earlier warnings and errors, then its last {} lines)\n{}{}{}",
                    early.len(),
                    lines.len() - from,
                    early.join("\n"),
                    if early.is_empty() { "" } else { "\n...\n" },
                    lines[from..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The lines of `name`'s `fragments.jsonl` so far: one per fragment placed.
    fn placed(&self, name: &str) -> Vec<serde_json::Value> {
        let log = self
            .dir
            .path()
            .join("segments")
            .join(name)
            .join("fragments.jsonl");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Dubbed fragments of `name` so far (`worker_audio_fragments_total`).
    fn processed(&self, name: &str) -> f64 {
        metric(
            &self.metrics(),
            "worker_audio_fragments_total",
            &["status=\"processed\"", name],
        )
        .unwrap_or(0.0)
    }

    fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }
}

#[test]
fn rtsp_in_rtmp_out_dubbed_in_sync_via_control_api() {
    let stack = start_stack(0, false);
    let name = "ctl1";
    // Bad requests are refused with a clear reason.
    let (code, body) = http_send(stack.http, "POST", "/v1/streams", r#"{"name":"a/b"}"#).unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid stream name"), "{body}");
    let (code, body) = http_send(stack.http, "POST", "/v1/streams", r#"{"nme":"x"}"#).unwrap();
    assert_eq!(code, 400, "{body}");

    let clip = stack.dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 20);
    let _pub = stack.publish(&clip, name);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, body) = stack.add_stream(name);
    assert_eq!(code, 201, "{body}");
    let (code, _) = stack.add_stream(name);
    assert_eq!(code, 409, "a running stream cannot be added twice");

    // What /health says while the stream runs: dubbing.
    let watch = stack.watch_health(&["\"dubbing\":\"dubbing\""]);
    let rec = stack.record_output(name);
    assert!(
        watch.join().unwrap(),
        "/health never showed the stream dubbing"
    );
    let (v, a) = stack.probe_both(&rec);
    assert_eq!((v.codec.as_str(), a.codec.as_str()), ("h264", "aac"));
    let dur = v.last_end - v.first_pts;
    // The recorder joins once the output is listed, losing up to a GOP and the join time.
    assert!(
        dur > 16.0 && dur < 21.0,
        "output video lasts {dur:.2} s for a 20 s input (first pts {:.2} s)\n{}",
        v.first_pts,
        stack.logs_of_the_run()
    );
    let offsets = common::av_offsets_joined(&rec);
    assert!(offsets.len() >= 14, "flash/beep pairs found: {offsets:?}");
    // Every mark within 120 ms. (The first mark of a recording that joins mid-stream is
    // kept too: the analyser needs 300 ms of observed quiet before an onset.)
    let worst = offsets.iter().fold(0.0f64, |m, o| m.max(o.abs()));
    eprintln!("A/V offsets at the output (s): {offsets:?}; worst {worst:.3}");
    let resync = stack.metrics();
    assert!(
        worst < 0.12,
        "A/V offset exceeds the bound: {offsets:?}\nresync metrics: {:?}",
        resync
            .lines()
            .filter(|l| l.starts_with("worker_resync"))
            .collect::<Vec<_>>()
    );

    let m = stack.metrics();
    let processed = metric(
        &m,
        "worker_audio_fragments_total",
        &["status=\"processed\"", name],
    )
    .unwrap_or(0.0);
    assert!(
        processed >= 4.0,
        "echo STS answers in time: processed = {processed}\n{m}"
    );
    assert!(
        metric(
            &m,
            "worker_audio_fragments_total",
            &["status=\"fallback\"", name]
        )
        .unwrap_or(0.0)
            <= 1.0
    );
    let sync = metric(&m, "worker_av_sync_delta_ms", &[name]).expect("sync gauge");
    assert!(sync < 120.0, "worker_av_sync_delta_ms = {sync}");
    assert!(metric(&m, "worker_sts_roundtrip_seconds_count", &[]).unwrap_or(0.0) >= 4.0);
    // Artifacts for the stream.
    // Every logged fragment kept its original audio; every dubbed one its answer too.
    let seg = stack.dir.path().join("segments").join(name);
    let lines = std::fs::read_to_string(seg.join("fragments.jsonl")).unwrap();
    assert!(lines.lines().count() >= 5, "{lines}");
    for line in lines.lines() {
        let rec: serde_json::Value = serde_json::from_str(line).expect("fragment log line is JSON");
        let seq = rec["sequence"].as_u64().expect("sequence");
        assert!(
            seg.join(format!("{seq:06}-original.wav")).is_file(),
            "no original WAV for {line}"
        );
        if rec["status"] == "processed" {
            assert!(
                seg.join(format!("{seq:06}-dubbed.wav")).is_file(),
                "no dubbed WAV for {line}"
            );
        }
    }
    // Publisher gone -> the worker ended cleanly and freed its pipeline; the stream waits
    // INPUT_GRACE_MS for its input to come back.
    wait_until(Duration::from_secs(15), "the worker to finish", || {
        http_get(stack.http, "/health").is_some_and(|(_, b)| b.contains("\"waiting_for_input\""))
    });
    assert_eq!(
        metric(&stack.metrics(), "worker_active_workers", &[]),
        Some(0.0)
    );
    assert!(
        !stack.ms.log_text().contains("did not finish after EOS"),
        "the output must finish on its own after the idle EOS:\n{}",
        stack.ms.log_text()
    );
    let (code, _) = http_send(stack.http, "DELETE", &format!("/v1/streams/{name}"), "").unwrap();
    assert_eq!(code, 204);
    // A removed stream leaves no metric series behind.
    let m = stack.metrics();
    assert!(
        !m.lines()
            .any(|l| !l.starts_with('#') && l.contains(&format!("stream=\"{name}\""))),
        "series of the removed stream remain:\n{m}"
    );
    let (code, _) = http_send(stack.http, "DELETE", &format!("/v1/streams/{name}"), "").unwrap();
    assert_eq!(code, 404);
}

#[test]
fn sts_too_slow_output_keeps_original_audio_and_counts_fallbacks() {
    // Echo answers after 20 s: every deadline passes first.
    let stack = start_stack(20_000, true);
    let name = "slow1";
    let clip = stack.dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 20);
    let _pub = stack.publish(&clip, name);
    // What /health says while the stream runs: falling back, because answers are late.
    let watch = stack.watch_health(&["\"falling_back\"", "\"fallback_reason\":\"late\""]);
    let rec = stack.record_output(name);
    assert!(
        watch.join().unwrap(),
        "/health never showed the stream falling back for lateness"
    );
    let (v, a) = stack.probe_both(&rec);
    let (vdur, adur) = (v.last_end - v.first_pts, a.last_end - a.first_pts);
    // 20 s in; the recorder joins at the output's first key frame, and a first read that
    // lost its video is read again after VIDEO_START_TIMEOUT_MS (3 s) and a retry.
    assert!(
        vdur > 14.0 && adur > 14.0,
        "a 20 s input gave {vdur:.2} s of video and {adur:.2} s of audio (video {v:?}, audio {a:?})\n{}",
        stack.logs_of_the_run()
    );
    // Original audio is there: beeps line up with flashes.
    let offsets = common::av_offsets_joined(&rec);
    assert!(offsets.len() >= 14, "{offsets:?}");
    assert!(offsets.iter().all(|o| o.abs() < 0.12), "{offsets:?}");
    let m = stack.metrics();
    let fallback = metric(
        &m,
        "worker_audio_fragments_total",
        &["status=\"fallback\"", name],
    )
    .unwrap_or(0.0);
    assert!(fallback >= 4.0, "fallbacks = {fallback}\n{m}");
    assert_eq!(
        metric(
            &m,
            "worker_audio_fragments_total",
            &["status=\"processed\"", name]
        ),
        None
    );
}

/// An sts-service in echo mode on `port` (log `<name>.log` in `dir`), once it answers /health.
fn echo_sts(name: &str, port: u16, dir: &Path) -> Proc {
    let sts = Proc::spawn(
        name,
        Command::new(common::sts_bin())
            .env("STS_MODE", "echo")
            .env("STS_PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("LOG_LEVEL", "INFO"),
        dir,
    );
    wait_until(Duration::from_secs(30), "sts-service /health", || {
        http_get(port, "/health").is_some_and(|(c, _)| c == 200)
    });
    sts
}

#[test]
fn dub_subcommand_file_to_file_with_echo_sts() {
    let dir = tempfile::tempdir().unwrap();
    let sts_port = free_port();
    let _sts = echo_sts("sts", sts_port, dir.path());
    let clip = dir.path().join("in.mp4");
    common::make_sync_clip(&clip, 9);
    let out = dir.path().join("dubbed.mp4");
    let res = Command::new(common::media_bin())
        .args(["dub", "--input"])
        .arg(&clip)
        .arg("--output")
        .arg(&out)
        .env("STS_SERVICE_URL", format!("http://127.0.0.1:{sts_port}"))
        .env("FRAGMENT_DURATION_MS", "3000")
        // 2.5 s of STS budget: the echo answers in ~20 ms, but the machine may be loaded.
        .env("OUTPUT_DELAY_MS", "6000")
        .env("SEGMENT_DIR", dir.path().join("seg"))
        .env("LOG_LEVEL", "WARN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "dub failed: {stderr}");
    assert!(
        stderr.contains("fragment   0: dubbed"),
        "progress lines: {stderr}"
    );
    let (v, a) = common::probe(&out);
    let (v, a) = (v.expect("video"), a.expect("audio"));
    assert_eq!((v.codec.as_str(), a.codec.as_str()), ("h264", "aac"));
    assert!(
        (v.last_end - 9.0).abs() < 0.2,
        "video ends at {}",
        v.last_end
    );
    assert!(
        (a.last_end - 9.0).abs() < 0.2,
        "audio ends at {}",
        a.last_end
    );
    let offsets = common::av_offsets(&out);
    assert_eq!(offsets.len(), 9, "{offsets:?}");
    assert!(offsets.iter().all(|o| o.abs() < 0.12), "{offsets:?}");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.report.json", out.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(report["fragments"].as_array().map(|a| a.len()), Some(3));
    assert_eq!(report["processed"], 3);
}

#[test]
fn bad_configuration_is_one_clear_line() {
    let res = Command::new(common::media_bin())
        .env("FRAGMENT_DURATION_MS", "six")
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    let err = String::from_utf8_lossy(&res.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("FRAGMENT_DURATION_MS='six'") && err.contains("1000 to 30000"),
        "{err}"
    );
    let res = Command::new(common::media_bin())
        .env("OUTPUT_DELAY_MS", "3000")
        .output()
        .unwrap();
    assert_eq!(res.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&res.stderr).contains("OUTPUT_DELAY_MS=3000"));
}

#[test]
fn print_env_contract_is_json_from_the_parser() {
    let res = Command::new(common::media_bin())
        .arg("--print-env-contract")
        .output()
        .unwrap();
    assert!(res.status.success());
    let v: serde_json::Value = serde_json::from_slice(&res.stdout).expect("JSON");
    let arr = v.as_array().expect("array");
    let names: Vec<&str> = arr.iter().filter_map(|e| e["name"].as_str()).collect();
    for n in [
        "MEDIAMTX_HOST",
        "MEDIAMTX_RTSP_PORT",
        "MEDIAMTX_RTMP_PORT",
        "MEDIAMTX_API_PORT",
        "MEDIA_SERVICE_PORT",
        "STS_SERVICE_URL",
        "LOG_LEVEL",
        "SEGMENT_DIR",
        "FRAGMENT_DURATION_MS",
        "OUTPUT_DELAY_MS",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let rtsp = arr
        .iter()
        .find(|e| e["name"] == "MEDIAMTX_RTSP_PORT")
        .unwrap();
    assert_eq!(rtsp["default"], "8554");
    assert!(rtsp["meaning"].as_str().unwrap().contains("RTSP"));
}

#[test]
fn media_server_restart_is_retried_and_the_stream_resumes() {
    let mut stack = start_stack(0, true);
    let name = "restart1";
    let clip = stack.dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 40);
    let _pub1 = stack.publish(&clip, name);
    let processed = |stack: &Stack| stack.processed(name);
    wait_until(Duration::from_secs(30), "first dubbed fragment", || {
        processed(&stack) >= 1.0
    });
    // The media server goes away: the worker fails and retries with backoff.
    let _ = stack.xiu.child.kill();
    let _ = stack.xiu.child.wait();
    wait_until(Duration::from_secs(20), "a restart to be counted", || {
        metric(&stack.metrics(), "worker_restarts_total", &[name]).unwrap_or(0.0) >= 1.0
    });
    let before = processed(&stack);
    // It comes back and the stream is published again: dubbing resumes.
    stack.xiu = Proc::spawn(
        "xiu2",
        Command::new(common::xiu_bin()).args([
            "--rtsp-port",
            &stack.rtsp.to_string(),
            "--rtmp-port",
            &stack.rtmp.to_string(),
            "--api-port",
            &stack.api.to_string(),
        ]),
        stack.dir.path(),
    );
    wait_until(Duration::from_secs(20), "xiu-lite back", || {
        http_get(stack.api, "/v3/paths/list").is_some()
    });
    let _pub2 = stack.publish(&clip, name);
    common::wait_until_explained(
        Duration::from_secs(40),
        "dubbing to resume after the restart",
        || processed(&stack) > before,
        || {
            let log = stack.ms.log_text();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            format!(
                "/health: {:?}\nmedia-service (last lines, newest first):\n{}",
                http_get(stack.http, "/health").map(|(_, b)| b),
                tail.join("\n")
            )
        },
    );
    let (_, health) = http_get(stack.http, "/health").unwrap();
    assert!(
        health.contains(name) && health.contains("\"running\""),
        "{health}"
    );
}

/// PLATFORM-NOTES: xiu-lite makes an SEI NAL its own access unit, which collapsed timestamps
/// in a plain h264parse/flvmux chain. The worker re-aggregates access units; its output
/// keeps one packet per frame at regular 40 ms steps even with SEI in the input.
#[test]
fn sei_nal_units_in_the_input_do_not_break_output_timestamps() {
    let stack = start_stack(0, true);
    let name = "sei1";
    let clip = stack.dir.path().join("sei.mp4");
    common::make_sync_clip_sei(&clip, 14, true);
    let _pub = stack.publish(&clip, name);
    let rec = stack.record_output(name);
    let (v, a) = stack.probe_both(&rec);
    assert!(
        v.packets > 200 && a.packets > 300,
        "video {} / audio {} packets",
        v.packets,
        a.packets
    );
    let (n, bad) = common::irregular_video_steps(&rec, 0.04);
    assert_eq!(bad, 0, "{bad} of {n} video steps are not 40 ms");
}

/// An input that stops and comes back at once (a new publisher session on the same name,
/// faster than discovery can see a gap) gets its output back under the same name, and the
/// fragment numbers continue; an input that stays away longer than INPUT_GRACE_MS ends its
/// stream.
/// Wall-clock seconds (of the day) of each "fragment processed" line the STS logged for
/// `stream`, by sequence number. Read from the STS's own log, not the media-service's: the
/// moments its fragments arrived (the echo STS answers at once).
fn sts_arrivals(sts_log: &str, stream: &str) -> std::collections::BTreeMap<u64, f64> {
    let mut out = std::collections::BTreeMap::new();
    for raw in sts_log.lines() {
        // Strip ANSI colour sequences (ESC [ ... m).
        let mut line = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                line.push(c);
            }
        }
        if !line.contains("fragment processed") {
            continue;
        }
        let mut words = line.split_whitespace();
        let Some(stamp) = words.next() else { continue };
        let fields: Vec<&str> = words.collect();
        if !fields.contains(&format!("stream={stream}").as_str()) {
            continue;
        }
        let Some(seq) = fields
            .iter()
            .find_map(|f| f.strip_prefix("seq=").and_then(|v| v.parse::<u64>().ok()))
        else {
            continue;
        };
        // 2026-12-04T19:55:01.123456Z -> seconds of the day.
        let Some(time) = stamp.split('T').nth(1).map(|t| t.trim_end_matches('Z')) else {
            continue;
        };
        let parts: Vec<f64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
        if let [h, m, sec] = parts[..] {
            out.insert(seq, h * 3600.0 + m * 60.0 + sec);
        }
    }
    out
}

/// Two live streams whose workers start at the same moment (both added through the control
/// API once both inputs are listed) get fragment boundaries apart (FRAGMENT_STAGGER, the
/// default): the second stream's first fragment is shorter, so their fragments reach the STS
/// half a fragment apart instead of together (or, when their workers happened to start far
/// enough apart, keeps both grids, at least F/16 apart). Judged on the STS's log of
/// arrivals. With FRAGMENT_STAGGER=false the same run measured the two streams' arrivals
/// 0.000 s apart and failed.
#[test]
fn concurrent_streams_get_staggered_fragment_boundaries() {
    let stack = start_stack(0, false);
    let clip = stack.dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 20);
    let names = ["stag-a", "stag-b"];
    let _publishers: Vec<Proc> = names.iter().map(|n| stack.publish(&clip, n)).collect();
    wait_until(
        Duration::from_secs(20),
        "both inputs listed as ready",
        || {
            http_get(stack.api, "/v3/paths/list").is_some_and(|(_, b)| {
                let v: serde_json::Value = serde_json::from_str(&b).unwrap_or_default();
                let ready =
                    |n: &str| {
                        v["items"].as_array().into_iter().flatten().any(|i| {
                            i["name"] == format!("live/{n}/in").as_str() && i["ready"] == true
                        })
                    };
                names.iter().all(|n| ready(n))
            })
        },
    );
    for n in names {
        let (code, body) = stack.add_stream(n);
        assert_eq!(code, 201, "{body}");
    }
    let fragment_s = 4.0; // FRAGMENT_DURATION_MS of the stack
    common::wait_until_explained(
        Duration::from_secs(40),
        "fragments 1 and 2 of both streams at the STS",
        || {
            let log = stack._sts.log_text();
            names.iter().all(|n| {
                let a = sts_arrivals(&log, n);
                a.contains_key(&1) && a.contains_key(&2)
            })
        },
        || stack.logs_of_the_run(),
    );
    let log = stack._sts.log_text();
    let phases = |n: &str| -> Vec<f64> {
        let a = sts_arrivals(&log, n);
        [1u64, 2].iter().map(|k| a[k] % fragment_s).collect()
    };
    let (pa, pb) = (phases(names[0]), phases(names[1]));
    let circular = |x: f64, y: f64| {
        let d = (x - y).abs() % fragment_s;
        d.min(fragment_s - d)
    };
    let closest = pa
        .iter()
        .flat_map(|x| pb.iter().map(move |y| circular(*x, *y)))
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "fragment arrival phases (s of {fragment_s}): {pa:?} and {pb:?}; closest {closest:.3}"
    );
    // Streams whose boundaries fall within F/16 of each other are moved apart (the second
    // by F/2); others keep their grids, already at least F/16 apart. Arrivals jitter by up
    // to ~50 ms (the two arrivals of one stream above), hence 100 ms of allowance.
    let ms_log = stack.ms.log_text();
    let moved = ms_log.matches("fragment boundaries staggered").count();
    assert!(
        moved <= 1,
        "only the second stream may move its grid:\n{ms_log}"
    );
    let least = if moved == 1 {
        fragment_s / 4.0
    } else {
        fragment_s / 16.0 - 0.1
    };
    assert!(
        closest >= least,
        "the two streams' fragments reach the STS {closest:.3} s apart (phases {pa:?} and {pb:?}; {moved} grid moved): not staggered\n{}",
        stack.logs_of_the_run()
    );
}

/// STS_SERVICE_URL with two instances: two streams go one to each (the least loaded, then
/// the first listed), judged from each STS's own log of the fragments it processed, and
/// `GET /v1/streams` names each stream's STS.
#[test]
fn streams_are_spread_over_several_sts_instances() {
    let second_dir = tempfile::tempdir().unwrap();
    let second_port = free_port();
    let _second = echo_sts("sts2", second_port, second_dir.path());
    let second_url = format!("http://127.0.0.1:{second_port}");
    let urls = format!("{{sts}},{second_url}");
    let stack = start_stack_with(0, true, &[("STS_SERVICE_URL", urls.as_str())]);
    let clip = stack.dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 12);
    let names = ["pool-a", "pool-b"];
    let _publishers: Vec<Proc> = names.iter().map(|n| stack.publish(&clip, n)).collect();
    let second_log =
        || std::fs::read_to_string(second_dir.path().join("sts2.log")).unwrap_or_default();
    let served = |log: &str| -> Vec<&str> {
        names
            .iter()
            .copied()
            .filter(|n| !sts_arrivals(log, n).is_empty())
            .collect()
    };
    common::wait_until_explained(
        Duration::from_secs(40),
        "a fragment of each stream processed",
        || {
            let (first, second) = (stack._sts.log_text(), second_log());
            names.iter().all(|n| {
                !sts_arrivals(&first, n).is_empty() || !sts_arrivals(&second, n).is_empty()
            })
        },
        || stack.logs_of_the_run(),
    );
    let (first, second) = (stack._sts.log_text(), second_log());
    let (on_first, on_second) = (served(&first), served(&second));
    assert!(
        on_first.len() == 1 && on_second.len() == 1 && on_first != on_second,
        "each STS serves one stream: first {on_first:?}, second {on_second:?}\n{}",
        stack.logs_of_the_run()
    );
    let (_, body) = http_get(stack.http, "/v1/streams").unwrap();
    assert!(
        body.contains(&format!("\"sts\":\"{second_url}\"")),
        "GET /v1/streams names the second STS: {body}"
    );
}

/// A publisher that stops mid-fragment still gets that fragment dubbed: once the input's
/// media has been quiet for QUIET_INPUT_FLUSH_MS (400 ms) the unfinished fragment goes to the
/// STS, long before INPUT_IDLE_TIMEOUT_MS ends the worker. Here the idle timeout (4 s) plus
/// the STS's 2 s would land after the fragment's deadline (start + 7 s - 0.5 s): without the
/// early send the last fragment goes out original.
#[test]
fn the_last_fragment_of_a_stopped_publisher_is_dubbed() {
    let stack = start_stack_with(2_000, true, &[("INPUT_IDLE_TIMEOUT_MS", "4000")]);
    let name = "end1";
    let clip = stack.dir.path().join("sync.mp4");
    // 10 s: fragments of 4 s, 4 s and what is left (the join costs a little of the start).
    common::make_sync_clip(&clip, 10);
    let mut publisher = stack.publish(&clip, name);
    let _rec = stack.record_output(name);
    assert!(publisher.wait_exit(Duration::from_secs(30)).is_some());
    let placed = || stack.placed(name);
    // Until the worker has ended, every fragment it cut is placed. Two at least: a first
    // read that lost its video is read again after VIDEO_START_TIMEOUT_MS (docs/e2e.md),
    // which leaves the first read one fragment and the second the rest.
    common::wait_until_explained(
        Duration::from_secs(30),
        "the worker to end with its fragments placed",
        || stack.ms.log_text().contains("worker ended") && placed().len() >= 2,
        || format!("placed: {:?}\n{}", placed(), stack.logs_of_the_run()),
    );
    // The fragment log is written off the worker's thread: let its last line land.
    std::thread::sleep(Duration::from_millis(500));
    let lines = placed();
    let last = lines
        .iter()
        .max_by_key(|l| l["sequence"].as_u64())
        .expect("fragments were placed");
    assert_eq!(
        last["status"],
        "processed",
        "the last (partial) fragment went out original: {lines:?}\n{}",
        stack.logs_of_the_run()
    );
    assert!(
        stack
            .ms
            .log_text()
            .contains("its unfinished fragment goes to the STS now"),
        "{}",
        stack.ms.log_text()
    );
}

#[test]
fn an_input_that_comes_back_gets_its_output_back() {
    let stack = start_stack_with(0, true, &[("INPUT_GRACE_MS", "6000")]);
    let name = "gap1";
    let (short, long) = (
        stack.dir.path().join("a.mp4"),
        stack.dir.path().join("b.mp4"),
    );
    common::make_sync_clip(&short, 10);
    common::make_sync_clip(&long, 24);
    let processed = |stack: &Stack| stack.processed(name);
    let status = |stack: &Stack| {
        http_get(stack.http, &format!("/v1/streams/{name}"))
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    let mut first = stack.publish(&short, name);
    wait_until(Duration::from_secs(30), "first dubbed fragment", || {
        processed(&stack) >= 1.0
    });
    assert!(first.wait_exit(Duration::from_secs(30)).is_some());
    // The publisher is back at once, as an encoder reconnecting after a network blip.
    let _second = stack.publish(&long, name);
    let before = processed(&stack);
    common::wait_until_explained(
        Duration::from_secs(40),
        "the stream to come back and dub the new publication",
        || processed(&stack) >= before + 2.0,
        || format!("status: {}\nlog:\n{}", status(&stack), stack.ms.log_text()),
    );
    let log = stack.ms.log_text();
    assert!(
        log.contains("input is back; starting its worker"),
        "the stream's own supervisor restarted it:\n{log}"
    );
    let rec = stack.record_output(name);
    let (v, a) = stack.probe_both(&rec);
    assert_eq!((v.codec.as_str(), a.codec.as_str()), ("h264", "aac"));
    // Second publisher gone: the stream waits, shows the grace left, then ends.
    common::wait_until_explained(
        Duration::from_secs(20),
        "waiting_for_input with the grace left",
        || {
            let s = status(&stack);
            s.contains("\"waiting_for_input\"") && s.contains("grace_left_ms")
        },
        || status(&stack),
    );
    common::wait_until_explained(
        Duration::from_secs(15),
        "the stream to end after INPUT_GRACE_MS",
        || !status(&stack).contains("waiting_for_input"),
        || status(&stack),
    );
    assert!(
        stack
            .ms
            .log_text()
            .contains("input did not come back within INPUT_GRACE_MS"),
        "{}",
        stack.ms.log_text()
    );
    assert_eq!(
        metric(&stack.metrics(), "worker_active_workers", &[]),
        Some(0.0)
    );
    // Numbering continued across the two runs: no sequence twice, none skipped.
    let log = std::fs::read_to_string(
        stack
            .dir
            .path()
            .join("segments")
            .join(name)
            .join("fragments.jsonl"),
    )
    .unwrap();
    let mut seqs: Vec<u64> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["sequence"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a fragment number was used twice: {log}");
    assert!(n >= 4, "fragments of both publications logged: {log}");
}

/// Every worker that joins a live input gets the same A/V alignment, whenever it joins.
/// (The 30-minute soak saw a different offset per output appearance, +46..+239 ms, with
/// the real STS; this check, three joins at different moments of one live input with the
/// echo STS, measured +42..+64 ms, spread at most 22 ms, and did not reproduce it.)
#[test]
fn workers_joining_a_live_input_at_any_moment_get_the_same_av_alignment() {
    let stack = start_stack(0, false);
    let name = "join1";
    let clip = stack.dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 10);
    let _pub = Proc::spawn(
        &format!("publish-{name}"),
        Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&clip)
            .args(["-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp"])
            .arg(format!("rtsp://127.0.0.1:{}/live/{name}/in", stack.rtsp)),
        stack.dir.path(),
    );
    let out_path = format!("live/{name}/out");
    let listed =
        |p: &str| http_get(stack.api, "/v3/paths/list").is_some_and(|(_, b)| b.contains(p));
    let mut medians = Vec::new();
    for (join, wait_ms) in [1700u64, 900, 2300].into_iter().enumerate() {
        // Join at a different point of the input each time.
        std::thread::sleep(Duration::from_millis(wait_ms));
        let (code, body) = stack.add_stream(name);
        assert_eq!(code, 201, "join {join}: {body}");
        wait_until(Duration::from_secs(40), "the output to appear", || {
            listed(&out_path)
        });
        let file = stack.dir.path().join(format!("{name}-{join}.flv"));
        let mut rec = Proc::spawn(
            &format!("record-{name}-{join}"),
            Command::new("ffmpeg")
                .args(["-v", "error", "-y", "-analyzeduration", "10000000"])
                .args([
                    "-probesize",
                    "20000000",
                    "-rtmp_app",
                    "live",
                    "-rtmp_playpath",
                ])
                .arg(format!("{name}/out"))
                .args(["-i", &format!("rtmp://127.0.0.1:{}", stack.rtmp)])
                .args(["-t", "8", "-c", "copy"])
                .arg(&file),
            stack.dir.path(),
        );
        assert!(
            rec.wait_exit(Duration::from_secs(40)).is_some(),
            "join {join}: the recording did not end; media-service log:\n{}",
            stack.ms.log_text()
        );
        let (code, _) =
            http_send(stack.http, "DELETE", &format!("/v1/streams/{name}"), "").unwrap();
        assert_eq!(code, 204, "join {join}: the stream could not be removed");
        wait_until(Duration::from_secs(20), "the output to end", || {
            !listed(&out_path)
        });
        let mut offsets = common::av_offsets_joined(&file);
        assert!(
            offsets.len() >= 5,
            "join {join}: flash/beep pairs found: {offsets:?}"
        );
        offsets.sort_by(f64::total_cmp);
        let median = offsets[offsets.len() / 2];
        eprintln!(
            "join {join}: A/V offset median {:+.0} ms over {} marks",
            median * 1e3,
            offsets.len()
        );
        medians.push(median);
    }
    let worst = medians.iter().fold(0.0f64, |m, o| m.max(o.abs()));
    let spread = medians.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - medians.iter().copied().fold(f64::INFINITY, f64::min);
    assert!(
        worst < 0.12,
        "a joining worker's output is out of sync (budget 120 ms): medians {medians:?} s"
    );
    assert!(
        spread < 0.06,
        "the A/V offset depends on when the worker joined: medians {medians:?} s (spread {:.0} ms, allowed 60)",
        spread * 1e3
    );
}

/// FRAGMENT_BOUNDARIES=speech through the whole service: an input of 1.8 s phrases and
/// 0.4 s pauses is cut in the pauses, not on the 4 s grid (with `grid` the cuts fall all
/// over the phrases and every whole fragment lasts 4 s, and this test fails). Once the cuts
/// have settled every fragment is one phrase and its pause (2.2 s); before that, a pause
/// that comes before the fragment holds FRAGMENT_MIN_MS (2000 ms here, half the longest)
/// is cut later in the pause, at the minimum (seen in CI: 2000, 2000, 2120, then 2200s).
#[test]
fn speech_boundaries_cut_a_live_input_in_its_pauses() {
    const PERIOD_MS: u64 = 2200;
    let stack = start_stack_with(0, true, &[("FRAGMENT_BOUNDARIES", "speech")]);
    let name = "pauses1";
    let clip = stack.dir.path().join("phrases.mp4");
    common::make_clip_with_audio(
        &clip,
        20,
        "aevalsrc=exprs='if(lt(mod(t,2.2),1.8),0.5*sin(2*PI*300*t),0)':s=48000",
    );
    let mut publisher = stack.publish(&clip, name);
    assert!(publisher.wait_exit(Duration::from_secs(40)).is_some());
    let placed = || stack.placed(name);
    common::wait_until_explained(
        Duration::from_secs(30),
        "seven fragments placed",
        || placed().len() >= 7,
        || format!("placed: {:?}\n{}", placed(), stack.logs_of_the_run()),
    );
    let mut lines = placed();
    lines.sort_by_key(|l| l["sequence"].as_u64());
    let lens: Vec<u64> = lines
        .iter()
        .map(|l| {
            l["duration_ms"]
                .as_u64()
                .unwrap_or_else(|| panic!("a placed line without duration_ms: {l}"))
        })
        .collect();
    // The first fragment starts wherever the worker joined, the last where the input ended.
    let whole = lens[1..lens.len() - 1]
        .iter()
        .filter(|len| len.abs_diff(PERIOD_MS) <= 50)
        .count();
    assert!(
        whole >= 3,
        "at least three fragments should be one phrase and its pause (2.2 s): {lens:?}\n{}",
        stack.logs_of_the_run()
    );
    // Every cut but the last (the input's end) lies in a pause: the audio the fragment
    // sent to the STS ends quiet (its last 10 ms peak under a quarter of its loudest).
    let dir = stack.dir.path().join("segments").join(name);
    for line in &lines[..lines.len() - 1] {
        let seq = line["sequence"].as_u64().unwrap();
        let wav = dir.join(format!("{seq:06}-original.wav"));
        let reader =
            hound::WavReader::open(&wav).unwrap_or_else(|e| panic!("{}: {e}", wav.display()));
        let spec = reader.spec();
        let per_10ms = (spec.sample_rate / 100 * u32::from(spec.channels)) as usize;
        let samples: Vec<i32> = reader
            .into_samples::<i16>()
            .map(|s| i32::from(s.unwrap()).abs())
            .collect();
        let tail = samples.len().saturating_sub(per_10ms);
        let peak = samples.iter().copied().max().unwrap_or(0);
        let tail_peak = samples[tail..].iter().copied().max().unwrap_or(0);
        assert!(
            peak > 0 && tail_peak * 4 < peak,
            "fragment {seq} ends loud (last 10 ms peak {tail_peak} of {peak}): cut inside a phrase, not in a pause. Lengths {lens:?}\n{}",
            stack.logs_of_the_run()
        );
    }
}
