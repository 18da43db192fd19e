//! Shared fixture for the media-service tests: binaries, free ports, child processes that
//! die with the test, HTTP waits, media generation and analysis with ffmpeg/ffprobe.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `$CARGO_TARGET_DIR` or the shared default.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/livedub/target"))
}

/// A binary from an env var or a default path; panics (fails the test) with a clear message.
pub fn binary(var: &str, default: PathBuf, how: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(p.is_file(), "{var}: {} not found. {how}", p.display());
    p
}

/// The local media server: XIU_LITE_BIN, else the installed `$LIVEDUB_CACHE/bin/xiu-lite`
/// (scripts/install-media-server.sh), else its build directory.
pub fn xiu_bin() -> PathBuf {
    let cache = std::env::var_os("LIVEDUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/livedub"));
    let installed = cache.join("bin/xiu-lite");
    let default = if installed.is_file() {
        installed
    } else {
        cache.join("xiu-lite-target/release/xiu-lite")
    };
    binary(
        "XIU_LITE_BIN",
        default,
        "Install it with scripts/install-media-server.sh (or set XIU_LITE_BIN).",
    )
}

/// The STS.
pub fn sts_bin() -> PathBuf {
    binary(
        "STS_SERVICE_BIN",
        target_dir().join("debug/sts-service"),
        "Build it with `cargo build -p sts-service` (or set STS_SERVICE_BIN).",
    )
}

/// This crate's binary.
pub fn media_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_media-service"))
}

/// A TCP port for a server a test starts (see `livedub_test_ports`: not from the
/// ephemeral range, free on loopback and on every interface, never handed out twice by
/// this test process).
pub fn free_port() -> u16 {
    livedub_test_ports::free_port(livedub_test_ports::TEST_SERVERS)
}

/// A child process killed when dropped; its output goes to a log file.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Self {
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::from(f.try_clone().expect("dup")))
            .stderr(Stdio::from(f))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name: name.into(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait up to `t`; returns the exit status if it exited.
    pub fn terminate(&mut self, t: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < t {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn wait_exit(&mut self, t: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < t {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET a URL with curl-free std networking (HTTP/1.0, loopback only).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// POST JSON.
pub fn http_send(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Polls until `f` is true or panics after `t` with `what`.
pub fn wait_until(t: Duration, what: &str, f: impl FnMut() -> bool) {
    wait_until_explained(t, what, f, String::new);
}

/// [`wait_until`], adding `explain()` (logs, state) to the panic message.
pub fn wait_until_explained(
    t: Duration,
    what: &str,
    mut f: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let t0 = Instant::now();
    while t0.elapsed() < t {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {t:?} waiting for {what}\n{}", explain());
}

/// Generates a clip: testsrc H.264 (SEI stripped) + sine AAC 48 kHz stereo.
pub fn make_clip(path: &Path, seconds: u32, freq: u32) {
    make_clip_with_audio(
        path,
        seconds,
        &format!("sine=frequency={freq}:sample_rate=48000"),
    );
}

/// Generates a clip: testsrc H.264 (SEI stripped) + the lavfi `audio` source as AAC 48 kHz
/// stereo.
pub fn make_clip_with_audio(path: &Path, seconds: u32, audio: &str) {
    let st = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
        ])
        .arg("-i")
        .arg(audio)
        .arg("-t")
        .arg(seconds.to_string())
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-b:a",
            "96k",
        ])
        .args(["-bsf:v", "filter_units=remove_types=6"])
        .arg(path)
        .status()
        .expect("ffmpeg is installed");
    assert!(st.success(), "ffmpeg could not generate {}", path.display());
}

/// Per-stream packet timing from ffprobe.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    pub codec: String,
    pub first_pts: f64,
    pub last_end: f64,
    pub packets: usize,
}

/// Codec, first PTS, end of last packet for video and audio of a media file.
pub fn probe(path: &Path) -> (Option<StreamInfo>, Option<StreamInfo>) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=index,codec_type,codec_name:packet=stream_index,pts_time,duration_time",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut res: [Option<StreamInfo>; 2] = [None, None];
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    for s in &streams {
        let idx = s["index"].as_u64().unwrap_or(99);
        let kind = match s["codec_type"].as_str() {
            Some("video") => 0,
            Some("audio") => 1,
            _ => continue,
        };
        let mut first = f64::MAX;
        let mut last = f64::MIN;
        let mut n = 0;
        for p in v["packets"].as_array().into_iter().flatten() {
            if p["stream_index"].as_u64() != Some(idx) {
                continue;
            }
            let pts: f64 = p["pts_time"]
                .as_str()
                .and_then(|x| x.parse().ok())
                .unwrap_or(f64::NAN);
            let d: f64 = p["duration_time"]
                .as_str()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0);
            if pts.is_nan() {
                continue;
            }
            first = first.min(pts);
            last = last.max(pts + d);
            n += 1;
        }
        res[kind] = Some(StreamInfo {
            codec: s["codec_name"].as_str().unwrap_or("").into(),
            first_pts: first,
            last_end: last,
            packets: n,
        });
    }
    let [v, a] = res;
    (v, a)
}

/// Decodes the audio of a media file to mono 16 kHz s16.
pub fn decode_audio_16k(path: &Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not decode {}",
        path.display()
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Goertzel power of `freq` in a 16 kHz window.
pub fn tone_power(x: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 16_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64).powi(2)
}

/// Value of a Prometheus sample whose line starts with `prefix` and contains all `labels`.
pub fn metric(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(name)
                && (l.as_bytes().get(name.len()) == Some(&b'{')
                    || l.as_bytes().get(name.len()) == Some(&b' '))
        })
        .find(|l| labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Generates a sync clip: one white video frame and one 60 ms 1 kHz beep at every whole
/// second (H.264 25 fps with SEI stripped, AAC 48 kHz stereo).
pub fn make_sync_clip(path: &Path, seconds: u32) {
    make_sync_clip_sei(path, seconds, false)
}

/// [`make_sync_clip`], optionally keeping x264's SEI NAL (which xiu-lite turns into an
/// access unit of its own).
pub fn make_sync_clip_sei(path: &Path, seconds: u32, keep_sei: bool) {
    let bsf = if keep_sei {
        "null"
    } else {
        "filter_units=remove_types=6"
    };
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("color=c=black:s=320x240:r=25,format=yuv420p,geq=lum='if(lt(mod(T+0.001,1),0.02),235,16)':cb=128:cr=128")
        .args(["-f", "lavfi", "-i"])
        .arg("aevalsrc=exprs='if(lt(mod(t,1),0.06),0.7*sin(2*PI*1000*t),0)|if(lt(mod(t,1),0.06),0.7*sin(2*PI*1000*t),0)':s=48000")
        .arg("-t")
        .arg(seconds.to_string())
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k"])
        .args(["-bsf:v", bsf])
        .arg(path)
        .status()
        .expect("ffmpeg is installed");
    assert!(st.success(), "ffmpeg could not generate {}", path.display());
}

/// Times (s, file timeline) of bright video frames.
pub fn flash_times(path: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi"])
        .arg(format!("movie={},signalstats", path.display()))
        .args([
            "-show_entries",
            "frame=pts_time:frame_tags=lavfi.signalstats.YAVG",
            "-of",
            "csv=p=0",
        ])
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            let t: f64 = it.next()?.parse().ok()?;
            let y: f64 = it.next()?.parse().ok()?;
            (y > 100.0).then_some(t)
        })
        // One mark per second: a neighbouring frame that also reads bright is the same mark.
        .fold(Vec::new(), |mut v: Vec<f64>, t| {
            if v.last().is_none_or(|l| t - l > 0.5) {
                v.push(t);
            }
            v
        })
}

/// Times (s, file timeline) where a beep starts after at least 300 ms of quiet.
pub fn beep_times(path: &Path, audio_start: f64, joined_mid_stream: bool) -> Vec<f64> {
    let pcm = decode_audio_16k(path);
    let mut out = Vec::new();
    // A recording that joins a live stream mid-way starts "not quiet": an onset then needs
    // 300 ms of *observed* quiet before it, so a decoder start-up burst is not taken for a
    // beep. A file starts at its beginning, where a beep at 0 is real.
    let mut quiet_ms = if joined_mid_stream { 0 } else { 1000 };
    for (i, block) in pcm.chunks(16).enumerate() {
        let loud = block.iter().any(|&s| (s as i32).abs() > 3000);
        if loud {
            if quiet_ms >= 300 {
                out.push(audio_start + i as f64 / 1000.0);
            }
            quiet_ms = 0;
        } else {
            quiet_ms += 1;
        }
    }
    out
}

/// For every flash with a beep within 0.5 s: beep - flash (s).
pub fn av_offsets(path: &Path) -> Vec<f64> {
    av_offsets_opts(path, false)
}

/// [`av_offsets`] for a recording that joined a live stream mid-way.
pub fn av_offsets_joined(path: &Path) -> Vec<f64> {
    av_offsets_opts(path, true)
}

fn av_offsets_opts(path: &Path, joined_mid_stream: bool) -> Vec<f64> {
    let (_, a) = probe(path);
    let a_start = a.map(|a| a.first_pts).unwrap_or(0.0);
    let beeps = beep_times(path, a_start, joined_mid_stream);
    flash_times(path)
        .into_iter()
        .filter_map(|f| {
            beeps
                .iter()
                .map(|b| b - f)
                .filter(|d| d.abs() < 0.5)
                .min_by(|x, y| x.abs().total_cmp(&y.abs()))
        })
        .collect()
}

/// Video packet PTS steps that differ from the nominal frame interval by more than 10 ms.
pub fn irregular_video_steps(path: &Path, frame_s: f64) -> (usize, usize) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    let mut pts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    pts.sort_by(f64::total_cmp);
    let bad = pts
        .windows(2)
        .filter(|w| ((w[1] - w[0]) - frame_s).abs() > 0.010)
        .count();
    (pts.len(), bad)
}

/// A worker config for file-to-file tests: 2 s fragments, 4 s delay, no artifacts, the
/// default mix; tests override what they are about with struct update syntax.
pub fn worker_config(
    name: &str,
    input: &Path,
    output: &Path,
) -> media_service::worker::WorkerConfig {
    media_service::worker::WorkerConfig {
        name: name.into(),
        input_uri: media_service::pipeline::input_uri(input.to_str().unwrap()).unwrap(),
        output: media_service::pipeline::OutputTarget::parse(output.to_str().unwrap()).unwrap(),
        fragment_ms: 2000,
        boundaries: media_service::fragmenter::Boundaries::Grid,
        delay_ms: 4000,
        deadline_margin_ms: 400,
        idle_timeout_ms: 3000,
        start_timeout_ms: 10_000,
        resync_tolerance_ms: 40,
        first_sequence: 0,
        stagger: None,
        // The tests that use this config run fake STSs; nothing connects here.
        sts_url: "http://127.0.0.1:9".into(),
        segment_keep: 600,
        aac_bitrate: 96_000,
        segment_dir: None,
        mix: media_service::mix::MixConfig::default(),
    }
}
