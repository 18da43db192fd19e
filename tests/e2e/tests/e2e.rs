//! The livedub end-to-end suite (custom harness: `libtest-mimic`).
//!
//! One stack per run: the main pair (real STS) and the slow pair (echo STS slower than the
//! output deadline) start lazily on first use, are shared by every test, and are torn down
//! at the end of the run, whatever happened (tests failing or panicking: teardown after
//! the run; Ctrl-C / SIGTERM: the handler kills every process group and runs `compose down`).
//! Tests that restart services or need special settings start their own pair on free ports.
//! Every test publishes to its own stream name (`e2e<run>-<test>`).
//!
//! Run: `cargo test -p livedub-e2e --test e2e` (see docs/e2e.md for the variables).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use libtest_mimic::{Arguments, Failed, Trial};
use livedub_e2e::analyzer::{
    decode_audio_48k, decode_audio_mono, judge_av_after_start, median, rms_db, tone_level_db,
    AvJudgement, StreamReport, SyncMarks,
};
use livedub_e2e::compose;
use livedub_e2e::contract::{self, ContractFile};
use livedub_e2e::delay;
use livedub_e2e::fingerprint::{self, Fingerprint};
use livedub_e2e::media::{LiveRecorder, MediaServerAddr, Publisher, RecordedSegment, Recorder};
use livedub_e2e::monitor::Monitor;
use livedub_e2e::placement::{self, FragmentAudio, PlacementReport};
use livedub_e2e::process::{grep_file, install_interrupt_handler, tail_file};
use livedub_e2e::prom::Metrics;
use livedub_e2e::soak::{self, Plan};
use livedub_e2e::stack::{BackendKind, Pair, PairSpec, Ports, Settings, Side};
use livedub_e2e::{fixture_path, http, repo_root};
use serde_json::{json, Value};

/// Fragment length the suite runs with (the contract's default).
const FRAGMENT_MS: u64 = 6000;
/// Fixture length.
const FIXTURE_S: f64 = 30.0;
/// Length of the output of a whole-fixture publish: the fixture plus the silent tail
/// (the video-only lead-in has no audio, and the output starts with the audio).
const OUTPUT_S: f64 = FIXTURE_S + TAIL_S as f64;
/// The A/V sync budget (ARCHITECTURE §5).
const SYNC_BUDGET_MS: f64 = 120.0;
/// Echo delay of the slow pair's STS: far beyond the media-service's STS budget.
const SLOW_ECHO_DELAY_MS: u64 = 20_000;
/// STS_BUDGET_MS of the main pair (see [`Suite::main_pair`]).
const MAIN_STS_BUDGET_MS: u64 = 4000;
/// The media-service's default DEADLINE_MARGIN_MS.
const DEADLINE_MARGIN_MS: u64 = 500;
/// The main pair's output delay: OUTPUT_DELAY_MS is not set there, so it is the default
/// the media-service derives (FRAGMENT_DURATION_MS + STS_BUDGET_MS + DEADLINE_MARGIN_MS).
const MAIN_OUTPUT_DELAY_MS: u64 = FRAGMENT_MS + MAIN_STS_BUDGET_MS + DEADLINE_MARGIN_MS;
/// The slow pair's output delay, set explicitly (an overridden OUTPUT_DELAY_MS).
const SLOW_OUTPUT_DELAY_MS: u64 = 8000;
/// The fixture's GOP (a key frame every second) and frame duration (ms).
const GOP_MS: f64 = 1000.0;
const FRAME_MS: f64 = 1000.0 / 30.0;
/// The A/V aim below the budget (reported against, not judged).
const SYNC_AIM_MS: f64 = 40.0;
/// The output's first mark: a known defect under load (audio frames clamped onto one
/// timestamp at the start of an output, docs/e2e.md) put it 194 ms off once in compose.
const START_SYNC_BUDGET_MS: f64 = 250.0;
/// Largest placement error of a fragment's dub (or original) in the output.
const PLACEMENT_BUDGET_MS: f64 = 40.0;
/// Bit error rate below which two audio segments are "the same audio".
const SAME_AUDIO_BER: f64 = 0.2;
/// Bit error rate above which two audio segments are "different audio".
const DIFFERENT_AUDIO_BER: f64 = 0.3;

// ---------------------------------------------------------------------------------------
// Suite state
// ---------------------------------------------------------------------------------------

/// What tests need to know about a running pair (the pair itself stays in the suite).
#[derive(Debug, Clone)]
struct PairInfo {
    label: String,
    server: MediaServerAddr,
    host: String,
    media_port: u16,
    sts_port: u16,
    sts_url: String,
    segment_dir: PathBuf,
    log_files: Vec<PathBuf>,
}

impl PairInfo {
    fn of(pair: &Pair) -> Self {
        PairInfo {
            label: pair.label().to_string(),
            server: pair.media_server(),
            host: pair.host().to_string(),
            media_port: pair.media_port(),
            sts_port: pair.sts_port(),
            sts_url: pair.sts_url(),
            segment_dir: pair.segment_dir(),
            log_files: pair.log_files(),
        }
    }
}

struct Suite {
    settings: Arc<Settings>,
    rt: tokio::runtime::Runtime,
    /// Test streams at once (see [`with_slot`]): each costs CPU on shared cores.
    stream_slots: Arc<tokio::sync::Semaphore>,
    /// `E2E_STREAM_SLOTS`: how many test streams may run at once (the semaphore has at
    /// least 2 permits, for the one test that runs two streams by design).
    slots: u32,
    /// Publishes are spread out so fragment boundaries of different streams (and with them
    /// the STS load) do not coincide.
    last_publish: tokio::sync::Mutex<Option<Instant>>,
    main: OnceLock<Result<PairInfo, String>>,
    slow: OnceLock<Result<PairInfo, String>>,
    /// The pairs themselves, for teardown and for log dumps.
    pairs: Mutex<Vec<Pair>>,
}

static SUITE: OnceLock<Suite> = OnceLock::new();

fn suite() -> &'static Suite {
    SUITE.get().expect("suite initialised in main")
}

impl Suite {
    fn start_pair(&self, spec: PairSpec) -> Result<PairInfo, String> {
        let pair = Pair::start(self.settings.clone(), spec).map_err(|e| format!("{e:#}"))?;
        let info = PairInfo::of(&pair);
        self.pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pair);
        Ok(info)
    }

    /// The main pair (real STS); started on first use.
    fn main_pair(&self) -> anyhow::Result<PairInfo> {
        self.main
            .get_or_init(|| {
                let ports = Ports::from_env().map_err(|e| e.to_string())?;
                if self.settings.backend == BackendKind::Native {
                    ports
                        .ensure_free(&self.settings.host)
                        .map_err(|e| e.to_string())?;
                }
                // A shared 2-core machine (other builds, concurrent streams) needs more
                // than the default 2.5 s per fragment now and then: 4 s keeps dubbing
                // reliable for +1.5 s of output delay.
                self.start_pair(base_spec("main", ports).media("STS_BUDGET_MS", MAIN_STS_BUDGET_MS))
            })
            .clone()
            .map_err(|e| anyhow!("main pair did not start: {e}"))
    }

    /// The slow pair: an echo STS answering after 20 s, far past the output deadline.
    fn slow_pair(&self) -> anyhow::Result<PairInfo> {
        self.slow
            .get_or_init(|| {
                let ports = Ports::free().map_err(|e| e.to_string())?;
                let spec = base_spec("slow", ports)
                    .sts("STS_MODE", "echo")
                    .sts("ECHO_DELAY_MS", SLOW_ECHO_DELAY_MS)
                    .sts("PROCESSING_TIMEOUT", 60)
                    .media("OUTPUT_DELAY_MS", SLOW_OUTPUT_DELAY_MS);
                self.start_pair(spec)
            })
            .clone()
            .map_err(|e| anyhow!("slow pair did not start: {e}"))
    }

    /// Waits so that publishes start at least `gap` apart.
    async fn stagger(&self, gap: Duration) {
        let mut last = self.last_publish.lock().await;
        if let Some(t) = *last {
            let due = t + gap;
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        *last = Some(Instant::now());
    }

    fn teardown(&self) {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        for mut p in pairs.drain(..) {
            p.teardown();
        }
    }
}

/// Settings every pair of the suite shares (discovery on, fast polling, artifacts on).
fn base_spec(label: &str, ports: Ports) -> PairSpec {
    PairSpec::new(label, ports)
        .media("DISCOVERY", "true")
        .media("DISCOVERY_INTERVAL_MS", 250)
        .media("SEGMENT_ARTIFACTS", "true")
        .media("FRAGMENT_DURATION_MS", FRAGMENT_MS)
        // The stream's end is known sooner, so its last partial fragment still makes its deadline.
        .media("INPUT_IDLE_TIMEOUT_MS", 1500)
        // The checks read fragment k as the fixture's seconds 6k..6k+6 (lead-in), which a
        // stream staggered against another test's stream would not be. Staggering is
        // judged by live_stack (`concurrent_streams_get_staggered_fragment_boundaries`) and
        // measured by `make bench-live`, both with the default.
        .media("FRAGMENT_STAGGER", "false")
}

// ---------------------------------------------------------------------------------------
// Helpers shared by tests
// ---------------------------------------------------------------------------------------

/// A unique, path-safe stream name for a test.
fn stream_name(test: &str) -> String {
    let run = &suite().settings.run_id;
    let short: String = run
        .chars()
        .rev()
        .take(6)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    let test: String = test
        .trim_start_matches("test_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("e2e{short}-{test}")
}

fn scrape(host: &str, port: u16) -> anyhow::Result<Metrics> {
    let r = http::get(host, port, "/metrics", Duration::from_secs(5))?;
    ensure!(
        r.status == 200,
        "GET /metrics on port {port} answered {}",
        r.status
    );
    Ok(Metrics::parse(&r.body)?)
}

/// Everything one published stream produced.
#[derive(Debug)]
struct StreamRun {
    name: String,
    /// `fragment:processed` events seen by the Socket.IO monitor, by sequence number.
    processed: Vec<Value>,
    /// The recorded output (FLV).
    recording: PathBuf,
    /// The file that was published.
    published: PathBuf,
    /// media-service fragment log lines (fragments.jsonl), by sequence number.
    fragments: Vec<Value>,
    /// media-service metrics after the stream ended.
    metrics: Metrics,
    /// Seconds from publish start to the first output data.
    output_latency_s: Option<f64>,
    /// With [`RunOptions::live`]: the output's connections with their tags' arrival times
    /// (seconds since `published_at_s` was measured from), and when the publisher started.
    live: Option<LiveOutput>,
}

/// A live-recorded output: when each of its packets reached the viewer.
#[derive(Debug)]
struct LiveOutput {
    segments: Vec<RecordedSegment>,
    /// When the publisher started, on the segments' clock (s).
    published_at_s: f64,
    /// When the media server first listed the input, on the same clock (s): the
    /// publisher's start-up (its clock starts in between) is at most this minus
    /// `published_at_s`.
    listed_at_s: f64,
}

impl StreamRun {
    /// Seconds of audio the media-service cut from the input (sum of its fragments):
    /// what the output must carry.
    fn input_audio_s(&self) -> f64 {
        self.fragments
            .iter()
            .filter_map(|f| f["duration_ms"].as_f64())
            .sum::<f64>()
            / 1000.0
    }

    fn fragment_count(&self, status: &str) -> usize {
        self.fragments
            .iter()
            .filter(|f| f["status"] == status)
            .count()
    }

    fn metric(&self, status: &str) -> f64 {
        self.metrics.sum(
            "worker_audio_fragments_total",
            &[("stream", &self.name), ("status", status)],
        )
    }
}

struct RunOptions {
    /// Publish only the first N seconds (None = the whole fixture).
    seconds: Option<u32>,
    /// Fragments the monitor waits for.
    expect_processed: usize,
    /// Whether to record the output.
    record: bool,
    /// Publish the video-only lead-in first, so fragments line up with the fixture's
    /// seconds (see [`lead_in_s`]).
    lead_in: bool,
    /// What is published.
    source: Source,
    /// Record with arrival times ([`LiveRecorder`]), for the glass-to-glass delay.
    live: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            seconds: None,
            expect_processed: 5,
            record: true,
            lead_in: false,
            source: Source::Counting,
            live: false,
        }
    }
}

/// The content a test publishes (each then gets the lead-in and tail of
/// [`published_fixture`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The committed counting fixture.
    Counting,
    /// The counting fixture with sync marks (a flash and a 9 kHz burst every second).
    Marked,
    /// The counting fixture over a 10 kHz bed tone (stream A of the isolation test).
    IsolationA,
    /// The counting fixture's audio rotated by 12 s (numbers 13..30 then 1..12: the wrap
    /// falls on a fragment boundary, so no fragment hears "thirty, one" as 31) over a
    /// 12 kHz bed tone (stream B of the isolation test).
    IsolationB,
}

/// Level of the isolation fixtures' bed tones (dBFS): above what the STS hears, so they
/// pass through the dubbing ducked but never dubbed.
const ISOLATION_TONE_DB: f64 = -30.0;

impl Source {
    fn tag(self) -> &'static str {
        match self {
            Source::Counting => "counting",
            Source::Marked => "marked",
            Source::IsolationA => "iso-a",
            Source::IsolationB => "iso-b",
        }
    }

    /// The bed tone of an isolation fixture (Hz).
    fn tone_hz(self) -> Option<f64> {
        match self {
            Source::IsolationA => Some(10_000.0),
            Source::IsolationB => Some(12_000.0),
            _ => None,
        }
    }

    /// The 30 s file (made once per run, or kept in the cache for the marked one).
    fn path(self) -> anyhow::Result<PathBuf> {
        let dir = &suite().settings.log_dir;
        match self {
            Source::Counting => Ok(fixture_path()),
            Source::Marked => soak::make_marked_fixture(&soak::cache_dir()),
            Source::IsolationA | Source::IsolationB => {
                let out = dir.join(format!("{}-fixture.mp4", self.tag()));
                static LOCK: Mutex<()> = Mutex::new(());
                let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
                if out.exists() {
                    return Ok(out);
                }
                let hz = self.tone_hz().unwrap_or_default();
                let amp = 10f64.powf(ISOLATION_TONE_DB / 20.0);
                let speech = if self == Source::IsolationB {
                    "[0:a]asplit[x][y];[x]atrim=12:30,asetpts=PTS-STARTPTS[p];\
                     [y]atrim=0:12,asetpts=PTS-STARTPTS[q];[p][q]concat=n=2:v=0:a=1[s]"
                } else {
                    "[0:a]anull[s]"
                };
                let filters = format!(
                    "{speech};[1:a]volume={amp:.5},aformat=channel_layouts=stereo[t];\
                     [s]aformat=sample_rates=48000:channel_layouts=stereo[u];\
                     [u][t]amix=inputs=2:normalize=0:duration=first[a]"
                );
                let o = std::process::Command::new("ffmpeg")
                    .args(["-v", "error", "-nostdin", "-y", "-i"])
                    .arg(fixture_path())
                    .args(["-f", "lavfi", "-i"])
                    .arg(format!("sine=frequency={hz}:sample_rate=48000"))
                    .args(["-filter_complex", &filters])
                    .args(["-map", "0:v", "-map", "[a]", "-t", "30", "-c:v", "copy"])
                    .args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000"])
                    .arg(&out)
                    .output()?;
                ensure!(
                    o.status.success(),
                    "ffmpeg could not make the {} fixture: {}",
                    self.tag(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                Ok(out)
            }
        }
    }
}

/// Publishes the fixture as `name` through `pair` and collects what came out.
async fn run_stream(pair: &PairInfo, name: &str, opts: RunOptions) -> anyhow::Result<StreamRun> {
    let s = suite();
    let log_dir = &s.settings.log_dir;
    // Observe before publishing, so no event can be missed.
    let mut monitor = Monitor::connect(&pair.sts_url, None)
        .await
        .with_context(|| format!("connecting the Socket.IO monitor to {}", pair.sts_url))?;
    monitor.subscribe(name).await?;
    let recording = log_dir.join(format!("{name}-output.flv"));
    let epoch = Instant::now();
    let recorder = match (opts.record, opts.live) {
        (false, _) => None,
        (true, false) => Some(OutputRecorder::Plain(Recorder::start(
            &pair.server,
            name,
            &recording,
            &log_dir.join(format!("{name}-recorder.log")),
            Duration::from_secs(60),
        ))),
        (true, true) => Some(OutputRecorder::Live(LiveRecorder::start(
            &pair.server,
            name,
            &log_dir.join(format!("{name}-output")),
            &log_dir.join(format!("{name}-recorder.log")),
            epoch,
        ))),
    };
    let lead = if opts.lead_in { lead_in_s() } else { 0 };
    let fixture = published_fixture(opts.source, opts.seconds, lead)?;
    let publish_log = log_dir.join(format!("{name}-publisher.log"));
    eprintln!("[e2e] publishing {name} to the {} pair", pair.label);
    let mut publisher = Publisher::start(&pair.server, name, &fixture, &publish_log)?;
    let publish_started = publisher.started();
    // When the media server listed the input: the publisher's clock started before it, so
    // the delay measured from the spawn and from here bracket the true one.
    let listed = opts.live.then(|| {
        let (server, name) = (pair.server.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            server.wait_input_listed(&name, Duration::from_secs(15))
        })
    });
    let length = opts.seconds.map_or(FIXTURE_S, f64::from) + f64::from(lead + TAIL_S);
    let done = tokio::task::spawn_blocking({
        let wait = Duration::from_secs_f64(length + 20.0);
        move || {
            let ok = publisher.wait(wait);
            (publisher, ok)
        }
    })
    .await?;
    let (_publisher, ok) = done;
    if !ok? {
        bail!(
            "publishing {name} failed or took too long; publisher log:\n{}",
            tail_file(&publish_log, 20).join("\n")
        );
    }
    // Fragments are answered at most PROCESSING_TIMEOUT after the last one was sent.
    let processed = monitor
        .collect_processed(name, opts.expect_processed, Duration::from_secs(35))
        .await;
    monitor.close().await;
    let mut output_latency_s = None;
    let mut live = None;
    let recording = match recorder {
        Some(OutputRecorder::Plain(r)) => {
            output_latency_s = r
                .connected_at()
                .map(|t| t.saturating_duration_since(publish_started).as_secs_f64());
            let rec =
                tokio::task::spawn_blocking(move || r.finish(Duration::from_secs(30))).await?;
            rec.map_err(|e| anyhow!("{e}"))?
        }
        Some(OutputRecorder::Live(r)) => {
            let segments = tokio::task::spawn_blocking(move || {
                r.finish_when_ended(epoch, Duration::from_secs(30))
            })
            .await?;
            let first = segments
                .first()
                .ok_or_else(|| anyhow!("{name}: no output was recorded"))?;
            let published_at_s = publish_started
                .saturating_duration_since(epoch)
                .as_secs_f64();
            let listed_at = match listed {
                Some(task) => task.await?,
                None => None,
            };
            let listed_at_s = listed_at
                .map(|t| t.saturating_duration_since(epoch).as_secs_f64())
                .ok_or_else(|| anyhow!("{name}: the media server never listed the input"))?;
            output_latency_s = Some(first.connected_s - published_at_s);
            let path = first.path.clone();
            live = Some(LiveOutput {
                segments,
                published_at_s,
                listed_at_s,
            });
            path
        }
        None => PathBuf::new(),
    };
    let fragments = read_fragment_log(pair, name).await;
    let metrics = scrape(&pair.host, pair.media_port)?;
    Ok(StreamRun {
        name: name.to_string(),
        processed,
        recording,
        published: fixture,
        fragments,
        metrics,
        output_latency_s,
        live,
    })
}

/// How a run records its output.
enum OutputRecorder {
    Plain(Recorder),
    Live(LiveRecorder),
}

/// The media-service's fragments.jsonl for `name`, sorted by sequence (waits briefly for
/// the last lines: they are written from a blocking task).
async fn read_fragment_log(pair: &PairInfo, name: &str) -> Vec<Value> {
    let path = pair.segment_dir.join(name).join("fragments.jsonl");
    let mut last = Vec::new();
    for _ in 0..20 {
        let mut lines: Vec<Value> = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines.sort_by_key(|v| v["sequence"].as_u64().unwrap_or(u64::MAX));
        if !lines.is_empty() && lines.len() == last.len() {
            return lines;
        }
        last = lines;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    last
}

/// Seconds of video-only lead-in published before the fixture (`E2E_LEAD_IN_S`, default 3).
///
/// The media-service cuts fragments from the first audio sample it receives, and it can
/// only start reading a stream once the stream exists on the media server, i.e. a moment
/// after the publisher started (discovery poll + RTSP set-up: ~1 s measured). Published
/// as is, the fixture's first second would be partly lost and every fragment would be
/// shifted against the numbers. With a lead-in of video only (the fixture's own first
/// seconds of video) the worker is attached before the first audio packet, so fragment k
/// holds exactly the numbers 6k+1..6k+6, as a viewer joining a running stream would not
/// get but a test needs.
fn lead_in_s() -> u32 {
    std::env::var("E2E_LEAD_IN_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Seconds of trailing video + silence after the fixture's end: whatever drops the last
/// packets of a stream when its publisher disconnects (measured: ~0.65 s lost) then drops
/// padding, not the number "thirty".
const TAIL_S: u32 = 2;

/// The file the publisher sends: lead-in (video only), the fixture (or its first `secs`
/// seconds), then [`TAIL_S`] of video with silence. Built once per run from stream copies
/// of the fixture plus a generated silent AAC tail.
fn published_fixture(source: Source, secs: Option<u32>, lead: u32) -> anyhow::Result<PathBuf> {
    let dir = &suite().settings.log_dir;
    let tag = format!(
        "{}-{}",
        source.tag(),
        secs.map_or("full".to_string(), |s| format!("{s}s"))
    );
    let out = dir.join(format!("published-{tag}-leadin{lead}s.mp4"));
    let source = source.path()?;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if out.exists() {
        return Ok(out);
    }
    let ffmpeg = |args: &[&str]| -> anyhow::Result<()> {
        let o = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-y"])
            .args(args)
            .output()?;
        ensure!(
            o.status.success(),
            "ffmpeg {:?} failed: {}",
            args,
            String::from_utf8_lossy(&o.stderr).trim()
        );
        Ok(())
    };
    let path = |p: &Path| p.display().to_string();
    let fixture = path(&source);
    let len = secs.unwrap_or(FIXTURE_S as u32);
    let video = dir.join(format!("fixture-video-{tag}.mp4"));
    let audio = dir.join(format!("fixture-audio-{tag}.m4a"));
    let silence = dir.join("silence.m4a");
    ffmpeg(&[
        "-i",
        &fixture,
        "-map",
        "0:v:0",
        "-t",
        &len.to_string(),
        "-c",
        "copy",
        &path(&video),
    ])?;
    ffmpeg(&[
        "-i",
        &fixture,
        "-map",
        "0:a:0",
        "-t",
        &len.to_string(),
        "-c",
        "copy",
        &path(&audio),
    ])?;
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=stereo",
        "-t",
        &TAIL_S.to_string(),
        "-c:a",
        "aac",
        "-b:a",
        "96k",
        &path(&silence),
    ])?;
    // Video: the fixture's first `lead` seconds (whole 1 s GOPs), the fixture, and its
    // last TAIL_S seconds again.
    let vlist = dir.join(format!("video-{tag}.txt"));
    let mut v = String::new();
    if lead > 0 {
        v.push_str(&format!("file '{}'\noutpoint {lead}\n", video.display()));
    }
    v.push_str(&format!("file '{}'\n", video.display()));
    v.push_str(&format!(
        "file '{}'\ninpoint {}\n",
        video.display(),
        len - TAIL_S
    ));
    std::fs::write(&vlist, v)?;
    // Audio: the fixture's, starting `lead` s later (no audio packets before), then silence.
    let alist = dir.join(format!("audio-{tag}.txt"));
    std::fs::write(
        &alist,
        format!("file '{}'\nfile '{}'\n", audio.display(), silence.display()),
    )?;
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        &path(&vlist),
        "-itsoffset",
        &lead.to_string(),
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        &path(&alist),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c",
        "copy",
        &path(&out),
    ])?;
    Ok(out)
}

/// Numbers in a text: digits ("12"), English words ("twelve", "twenty-one") and Spanish
/// words ("doce", "veintiuno", "treinta y uno").
fn numbers_in(text: &str) -> Vec<u32> {
    fn word(w: &str) -> Option<u32> {
        const EN: [&str; 20] = [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ];
        const ES: [&str; 30] = [
            "cero",
            "uno",
            "dos",
            "tres",
            "cuatro",
            "cinco",
            "seis",
            "siete",
            "ocho",
            "nueve",
            "diez",
            "once",
            "doce",
            "trece",
            "catorce",
            "quince",
            "dieciséis",
            "diecisiete",
            "dieciocho",
            "diecinueve",
            "veinte",
            "veintiuno",
            "veintidós",
            "veintitrés",
            "veinticuatro",
            "veinticinco",
            "veintiséis",
            "veintisiete",
            "veintiocho",
            "veintinueve",
        ];
        let plain = |s: &str| {
            s.replace('á', "a")
                .replace('é', "e")
                .replace('í', "i")
                .replace('ó', "o")
                .replace('ú', "u")
        };
        let w_plain = plain(w);
        if let Some(i) = EN.iter().position(|x| *x == w) {
            return Some(i as u32);
        }
        if let Some(i) = ES.iter().position(|x| plain(x) == w_plain) {
            return Some(i as u32);
        }
        match w_plain.as_str() {
            "un" | "una" => Some(1),
            "twenty" => Some(20),
            "thirty" | "treinta" => Some(30),
            "forty" | "cuarenta" => Some(40),
            _ => None,
        }
    }
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric()))
        .filter(|t| !t.is_empty())
        .collect();
    let mut out: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        if let Ok(n) = t.parse::<u32>() {
            out.push(n);
            i += 1;
            continue;
        }
        if let Some(n) = word(t) {
            // Tens followed by a unit: "twenty one" (hyphen split), "treinta y uno".
            if n % 10 == 0 && n >= 20 {
                let mut j = i + 1;
                if tokens.get(j) == Some(&"y") {
                    j += 1;
                }
                if let Some(u) = tokens
                    .get(j)
                    .and_then(|t| word(t))
                    .filter(|u| (1..10).contains(u))
                {
                    out.push(n + u);
                    i = j + 1;
                    continue;
                }
            }
            out.push(n);
        }
        i += 1;
    }
    out
}

/// Decodes an STS audio object's base64 PCM s16le into samples.
fn dubbed_samples(audio: &Value) -> anyhow::Result<Vec<f32>> {
    use base64::Engine;
    let data = audio["data"]
        .as_str()
        .ok_or_else(|| anyhow!("dubbed_audio without data"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .context("dubbed_audio.data is not base64")?;
    ensure!(
        audio["format"] == "pcm_s16le",
        "dubbed_audio.format is {}",
        audio["format"]
    );
    Ok(fingerprint::pcm_s16le_to_f32(&bytes))
}

/// Checks that the recorded output carries the audio the media-service cut, allowing for
/// the recorder: it can only join once the output exists, and the media server then hands
/// it the stream from the last key frame, so up to a GOP (1 s) of the output's beginning
/// (audio that precedes the first video key frame) may be missing from the recording.
fn check_audio_length(name: &str, carried: f64, cut: f64) -> anyhow::Result<()> {
    ensure!(
        carried <= cut + 0.25 && carried >= cut - 1.1,
        "{name}: output carries {carried:.2} s of audio but {cut:.2} s went in (allowed: {:.2}..{:.2}): it stalled, was cut or grew",
        cut - 1.1,
        cut + 0.25
    );
    Ok(())
}

/// Per 6 s segment of the fixture: bit error rate of the output's audio against it.
///
/// The output is lined up with the input to a quarter of a fingerprint hop (8 ms): a
/// recorder joining late, encoder priming and the media-service's timestamp resync shift
/// it by amounts that are not multiples of a hop, and half a hop off already costs ~0.2
/// BER on identical audio.
///
/// `settle_s`: seconds at the start of the fixture left out of segment 0's judgement (a
/// worker that joins a running stream gets the media server's key-frame cache as a burst;
/// the first seconds of its audio can then sit up to ~200 ms off while RTSP timestamps
/// settle, which no single alignment matches).
fn segment_bers(
    recording: &Path,
    segments: usize,
    settle_s: f64,
) -> anyhow::Result<(isize, Vec<f64>)> {
    let seg_s = FRAGMENT_MS as f64 / 1000.0;
    let spans: Vec<(f64, f64)> = (0..segments)
        .map(|k| ((k as f64 * seg_s).max(settle_s), (k + 1) as f64 * seg_s))
        .collect();
    span_bers(recording, &spans)
}

/// Like [`segment_bers`], for arbitrary spans `(from_s, to_s)` of the fixture.
fn span_bers(recording: &Path, spans: &[(f64, f64)]) -> anyhow::Result<(isize, Vec<f64>)> {
    let input = Fingerprint::compute(&decode_audio_mono(&fixture_path())?);
    let samples = decode_audio_mono(recording)?;
    // One fingerprint per quarter-hop start, each with its best global offset.
    let mut outputs: Vec<(isize, f64, Fingerprint)> = Vec::new();
    for quarter in 0..4 {
        let skip = (quarter * fingerprint::HOP / 4).min(samples.len());
        let output = Fingerprint::compute(&samples[skip..]);
        // The recorder may join a little late, and the encoder adds priming: search ±3 s.
        let (offset, whole) = input.best_offset(&output, 100);
        outputs.push((offset, whole.bit_error_rate, output));
    }
    let global = outputs
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|o| o.0)
        .ok_or_else(|| anyhow!("no audio in {}", recording.display()))?;
    // Each segment may sit a little off the global alignment (the media-service resyncs
    // its audio timeline to the input's timestamps, most at the start of a stream): search
    // ±8 hops (±256 ms) around each quarter-hop alignment, per segment.
    let bers = spans
        .iter()
        .map(|&(from, to)| {
            outputs
                .iter()
                .flat_map(|(offset, _, output)| (-8..=8).map(move |d| (offset + d, output)))
                .map(|(o, output)| input.compare_seconds(output, o, from, to).bit_error_rate)
                .fold(1.0, f64::min)
        })
        .collect();
    Ok((global, bers))
}

/// The fragments of a run as the output must carry them: what the media-service cut
/// (its `NNNNNN-original.wav` artifacts) and, for those it placed as dubbed, the dubbed
/// audio the STS answered (as the Socket.IO monitor received it, not the service's copy).
/// Fragments whose original is silent (the stream's silent tail) have nothing to place.
fn fragment_audio(pair: &PairInfo, run: &StreamRun) -> anyhow::Result<Vec<FragmentAudio>> {
    let dir = pair.segment_dir.join(&run.name);
    let mut out = Vec::new();
    for f in &run.fragments {
        let seq = f["sequence"]
            .as_u64()
            .ok_or_else(|| anyhow!("{}: fragment log line without sequence: {f}", run.name))?;
        let wav = dir.join(format!("{seq:06}-original.wav"));
        let original = decode_audio_mono(&wav)
            .with_context(|| format!("{}: fragment {seq}'s original audio", run.name))?;
        if rms_db(&original) < -50.0 {
            continue;
        }
        let dubbed = if f["status"] == "processed" {
            let ev = run
                .processed
                .iter()
                .find(|p| p["sequence_number"] == seq)
                .ok_or_else(|| {
                    anyhow!(
                        "{}: fragment {seq} went out dubbed but the monitor saw no answer for it",
                        run.name
                    )
                })?;
            let rate = ev["dubbed_audio"]["sample_rate_hz"].as_u64();
            ensure!(
                rate == Some(u64::from(placement::RATE)),
                "{}: fragment {seq}'s dubbed audio is at {rate:?} Hz, the stream asked for {}",
                run.name,
                placement::RATE
            );
            Some(dubbed_samples(&ev["dubbed_audio"])?)
        } else {
            None
        };
        out.push(FragmentAudio {
            sequence: seq,
            pts_s: f["pts_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0,
            original,
            dubbed,
        });
    }
    Ok(out)
}

/// Item by item, the output carries each fragment's dub (or, where it fell back, its
/// original) within [`PLACEMENT_BUDGET_MS`] of its place; returns the report.
fn check_placement(pair: &PairInfo, run: &StreamRun) -> anyhow::Result<PlacementReport> {
    let fragments = fragment_audio(pair, run)?;
    ensure!(
        !fragments.is_empty(),
        "{}: no fragment with sound to look for in the output: {}",
        run.name,
        describe_fragments(run)
    );
    let output = decode_audio_mono(&run.recording)?;
    let report = placement::place(&output, &fragments, PLACEMENT_BUDGET_MS);
    for p in &report.fragments {
        eprintln!("[e2e] {}: placement {p}", run.name);
    }
    eprintln!(
        "[e2e] {}: {} of {} fragments judged, worst placement error {:.1} ms (budget {PLACEMENT_BUDGET_MS} ms)",
        run.name,
        report.judged(),
        report.fragments.len(),
        report.worst_error_ms().unwrap_or(f64::NAN)
    );
    let problems = report.problems();
    ensure!(problems.is_empty(), "{}: {}", run.name, problems.join("\n"));
    // A fragment left unjudged is one whose span the recording does not hold whole: only
    // the first can be (the recorder joins at the output's first key frame).
    ensure!(
        report.judged() + 1 >= report.fragments.len() && report.judged() >= 3,
        "{}: only {} of {} fragments wholly in the recording: {}",
        run.name,
        report.judged(),
        report.fragments.len(),
        describe_fragments(run)
    );
    Ok(report)
}

/// The glass-to-glass delay of a live-recorded run, see [`delay::measure`]: measured from
/// the publisher's spawn, with the start-up that may hold (see [`delay::Bracket`]).
fn measure_delay(run: &StreamRun) -> anyhow::Result<delay::Bracket> {
    let live = run
        .live
        .as_ref()
        .ok_or_else(|| anyhow!("{}: not recorded live", run.name))?;
    ensure!(
        live.segments.len() == 1,
        "{}: the output was interrupted ({} connections)",
        run.name,
        live.segments.len()
    );
    let m = delay::measure(&live.segments[0], &run.published, live.published_at_s)?;
    eprintln!(
        "[e2e] {}: the output starts {:.2} s into the published audio",
        run.name, m.lost_start_s
    );
    Ok(delay::Bracket {
        from_spawn_s: m.delay_s,
        start_up_s: (live.listed_at_s - live.published_at_s).max(0.0),
    })
}

/// The marks' A/V offsets in a run's output, judged against [`SYNC_BUDGET_MS`] (every
/// mark; the first and the last are the output's start and end) and reported against
/// [`SYNC_AIM_MS`]. `min_marks`: marks that must be found.
/// Sync marks a 30 s marked run must show (of its 30). The worker joins 0.1-0.3 s after
/// the input is ready and its video starts at a key frame (a mark or two); a first read
/// that got no video is read again after the media-service's VIDEO_START_TIMEOUT_MS (3 s)
/// and a 0.5 s retry, then waits for a key frame (up to five more; docs/e2e.md). Fewer
/// means the output lost picture or sound, or drifted apart by 0.5 s.
const MIN_SYNC_MARKS: usize = 22;

fn check_marks(run: &StreamRun, min_marks: usize) -> anyhow::Result<AvJudgement> {
    let survey = SyncMarks::SOAK.survey(&run.recording)?;
    let offsets = survey.offsets();
    let j = judge_av_after_start(&offsets, min_marks, SYNC_BUDGET_MS, START_SYNC_BUDGET_MS)
        .map_err(|e| {
            let spans = StreamReport::probe(&run.recording, true)
                .map(|r| describe_spans(&r))
                .unwrap_or_else(|e| format!("(not probed: {e})"));
            anyhow!(
                "{}: {e}\n  marks: {}\n  output: {spans}",
                run.name,
                survey.describe()
            )
        })?;
    eprintln!(
        "[e2e] {}: A/V from content over {} marks: median {:+.0} ms, worst {:.0} ms, start {:+.0}, end {:+.0} (budget {SYNC_BUDGET_MS}, aim {SYNC_AIM_MS}: {})",
        run.name,
        j.marks,
        j.median_ms,
        j.worst_ms,
        j.first_ms,
        j.last_ms,
        if j.worst_ms <= SYNC_AIM_MS { "met" } else { "not met" }
    );
    Ok(j)
}

/// The first and last timestamps of a recording's video and audio (s).
fn describe_spans(r: &StreamReport) -> String {
    let span = |pts: Vec<f64>| match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => format!("{a:.2}..{b:.2} s ({} packets)", pts.len()),
        _ => "none".to_string(),
    };
    format!(
        "video {}, audio {}",
        span(r.video_pts()),
        span(r.audio_pts())
    )
}

fn describe_fragments(run: &StreamRun) -> String {
    run.fragments
        .iter()
        .map(|f| {
            format!(
                "#{} {} {}",
                f["sequence"],
                f["status"].as_str().unwrap_or("?"),
                f["reason"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// The fixture is what ARCHITECTURE §6 promises.
fn test_fixture_properties() -> anyhow::Result<()> {
    let path = fixture_path();
    let r = StreamReport::probe(&path, true)?;
    ensure!(
        (r.duration - FIXTURE_S).abs() < 0.05,
        "fixture lasts {} s, expected 30.0",
        r.duration
    );
    let v = r
        .video
        .as_ref()
        .ok_or_else(|| anyhow!("fixture has no video"))?;
    ensure!(
        v.codec == "h264" && v.width == 1280 && v.height == 720 && (v.fps - 30.0).abs() < 0.01,
        "fixture video is {v:?}, expected h264 1280x720 30 fps"
    );
    let a = r
        .audio
        .as_ref()
        .ok_or_else(|| anyhow!("fixture has no audio"))?;
    ensure!(
        a.codec == "aac" && a.sample_rate == 48_000 && a.channels == 2,
        "fixture audio is {a:?}, expected aac 48 kHz stereo"
    );
    let frames = r.video_pts().len();
    ensure!(
        frames == 900,
        "fixture has {frames} video frames, expected 900"
    );
    // No SEI NAL units: the local media server would split access units on them.
    let annexb = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(&path)
        .args([
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-bsf:v",
            "h264_mp4toannexb",
            "-f",
            "h264",
            "-",
        ])
        .output()?;
    ensure!(
        annexb.status.success(),
        "extracting the H.264 stream failed"
    );
    let sei = count_nal_type(&annexb.stdout, 6);
    ensure!(
        sei == 0,
        "fixture carries {sei} SEI NAL units; regenerate it with scripts/make-fixture.sh"
    );
    ensure!(
        count_nal_type(&annexb.stdout, 5) >= 30,
        "fixture should have a key frame every second"
    );
    // Number n starts at t = n-1: sound at the start of every second, silence at its end.
    let audio = decode_audio_mono(&path)?;
    let sr = fingerprint::SAMPLE_RATE as usize;
    for n in 0..30usize {
        let head = rms_db(&audio[n * sr..n * sr + sr / 10]);
        let tail = rms_db(&audio[(n + 1) * sr - sr / 20..(n + 1) * sr]);
        ensure!(
            head > -35.0,
            "second {n}: no speech in its first 100 ms ({head:.1} dBFS)"
        );
        ensure!(
            tail < -50.0,
            "second {n}: not silent in its last 50 ms ({tail:.1} dBFS)"
        );
    }
    Ok(())
}

fn count_nal_type(annexb: &[u8], nal_type: u8) -> usize {
    annexb
        .windows(4)
        .filter(|w| w[0] == 0 && w[1] == 0 && w[2] == 1 && (w[3] & 0x1f) == nal_type)
        .count()
}

/// Health endpoints of all three services, their metrics, and a Socket.IO session.
async fn test_services_can_communicate() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let h = &pair.host;
    ensure!(
        http::is_ok(h, pair.server.api_port, "/v3/paths/list"),
        "media server API not healthy"
    );
    let paths: Value = serde_json::from_str(
        &http::get(
            h,
            pair.server.api_port,
            "/v3/paths/list",
            Duration::from_secs(3),
        )?
        .body,
    )?;
    ensure!(
        paths["items"].is_array(),
        "/v3/paths/list is not MediaMTX-shaped: {paths}"
    );
    for (what, port) in [
        ("media-service", pair.media_port),
        ("sts-service", pair.sts_port),
    ] {
        let r = http::get(h, port, "/health", Duration::from_secs(3))?;
        ensure!(
            r.status == 200,
            "{what} /health answered {}: {}",
            r.status,
            r.body
        );
        let m = scrape(h, port).with_context(|| format!("{what} /metrics"))?;
        ensure!(!m.samples.is_empty(), "{what} /metrics is empty");
    }
    let media = scrape(h, pair.media_port)?;
    ensure!(
        media.has_family("worker_active_workers"),
        "media-service /metrics lacks worker_active_workers"
    );
    // Socket.IO: connect, observe a stream, and open a session the way the media-service does.
    let name = stream_name("test_services_can_communicate");
    let monitor = Monitor::connect(&pair.sts_url, None).await?;
    monitor.subscribe(&name).await?;
    let ack = monitor
        .emit_with_ack(
            "stream:init",
            stream_init(&name, FRAGMENT_MS),
            Duration::from_secs(10),
        )
        .await?;
    ensure!(
        ack["status"] == "ready",
        "stream:init was not accepted: {ack}"
    );
    ensure!(
        ack["session_id"].is_string(),
        "stream:init ack lacks session_id: {ack}"
    );
    ensure!(
        ack["protocol_version"].is_string() || ack["protocol_version"].is_number(),
        "ack lacks protocol_version: {ack}"
    );
    let _ = monitor
        .emit_with_ack(
            "stream:end",
            json!({"stream_id": name}),
            Duration::from_secs(5),
        )
        .await;
    monitor.close().await;
    Ok(())
}

/// A `fragment:data` payload of 16 kHz mono PCM (s16le bytes).
fn fragment_data(name: &str, seq: u64, duration_ms: u64, pcm: &[u8]) -> Value {
    use base64::Engine;
    json!({
        "fragment_id": format!("{name}-{seq}"), "stream_id": name, "sequence_number": seq,
        "pts_ms": seq * duration_ms, "duration_ms": duration_ms,
        "audio": {"format": "pcm_s16le", "sample_rate_hz": placement::RATE, "channels": 1,
                  "data": base64::engine::general_purpose::STANDARD.encode(pcm)},
    })
}

fn stream_init(name: &str, fragment_ms: u64) -> Value {
    json!({
        "stream_id": name,
        "source_language": "en",
        "target_language": "es",
        "fragment_duration_ms": fragment_ms,
        "audio": {"format": "pcm_s16le", "sample_rate_hz": 16000, "channels": 1},
    })
}

/// Fixture in, five fragments dubbed, a playable H.264 + AAC output of about 30 s.
async fn test_full_pipeline_media_to_sts_to_output() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let name = stream_name("test_full_pipeline_media_to_sts_to_output");
    let run = with_slot(1, run_stream(&pair, &name, RunOptions::default())).await?;
    ensure!(
        run.processed.len() >= 5,
        "the STS answered {} of 5 fragments: {:?}",
        run.processed.len(),
        run.processed
            .iter()
            .map(|p| (p["sequence_number"].clone(), p["status"].clone()))
            .collect::<Vec<_>>()
    );
    // Fragments 0..4 carry the fixture's speech (a 6th one holds the silent tail): every
    // one is dubbed. Published without a lead-in, a fragment can straddle seven numbers,
    // whose Spanish may not fit 6 s: "partial" (dubbed, trimmed to fit) is a dubbed answer
    // too. Exact content is test_sts_processes_real_audio's job.
    let mut problems = Vec::new();
    for k in 0..5u64 {
        let answer = run.processed.iter().find(|p| p["sequence_number"] == k);
        let placed = run.fragments.iter().find(|f| f["sequence"] == k);
        match answer {
            Some(p) if p["status"] == "success" || p["status"] == "partial" => {}
            Some(p) => problems.push(format!(
                "fragment {k}: STS status {}: {}",
                p["status"], p["error"]
            )),
            None => problems.push(format!("fragment {k}: no fragment:processed")),
        }
        match placed {
            Some(f) if f["status"] == "processed" => {}
            Some(f) => problems.push(format!(
                "fragment {k}: went out {} ({})",
                f["status"],
                f["reason"].as_str().unwrap_or("")
            )),
            None => problems.push(format!("fragment {k}: not in the fragment log")),
        }
    }
    ensure!(
        problems.is_empty(),
        "{name}: not every speech fragment was dubbed:\n{}\nfragments: {}",
        problems.join("\n"),
        describe_fragments(&run)
    );
    let r = StreamReport::probe(&run.recording, false)?;
    ensure!(
        r.video.as_ref().is_some_and(|v| v.codec == "h264"),
        "output video is {:?}",
        r.video
    );
    ensure!(
        r.audio.as_ref().is_some_and(|a| a.codec == "aac"),
        "output audio is {:?}",
        r.audio
    );
    ensure!(
        (r.duration - OUTPUT_S).abs() < 2.0,
        "output lasts {:.2} s, expected about {OUTPUT_S}",
        r.duration
    );
    let cut = run.input_audio_s();
    let carried = StreamReport::probe(&run.recording, true)?.audio_seconds();
    check_audio_length(&name, carried, cut)?;
    let placed = run.fragments.len();
    ensure!(
        placed >= 5,
        "media-service placed {placed} fragments: {}",
        describe_fragments(&run)
    );
    let processed = run.metric("processed");
    ensure!(
        processed >= 5.0,
        "worker_audio_fragments_total{{status=processed}} = {processed} (fallback {}, failed {}): {}",
        run.metric("fallback"),
        run.metric("failed"),
        describe_fragments(&run)
    );
    eprintln!(
        "[e2e] {name}: output appeared {:.1} s after publishing; fragments: {}",
        run.output_latency_s.unwrap_or(f64::NAN),
        describe_fragments(&run)
    );
    Ok(())
}

/// Real ASR/MT/TTS: each fragment's transcript and translation hold exactly its numbers.
async fn test_sts_processes_real_audio() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let name = stream_name("test_sts_processes_real_audio");
    let run = with_slot(
        1,
        run_stream(
            &pair,
            &name,
            RunOptions {
                record: false,
                // Lead-in: fragment k must hold exactly the numbers 6k+1..6k+6.
                lead_in: true,
                ..Default::default()
            },
        ),
    )
    .await?;
    ensure!(
        run.processed.len() >= 5,
        "got {} of 5 fragment:processed events",
        run.processed.len()
    );
    let mut problems = Vec::new();
    for k in 0..5u64 {
        let Some(p) = run.processed.iter().find(|p| p["sequence_number"] == k) else {
            problems.push(format!("fragment {k}: no fragment:processed"));
            continue;
        };
        let want: BTreeSet<u32> = (6 * k as u32 + 1..=6 * k as u32 + 6).collect();
        let transcript = p["transcript"].as_str().unwrap_or("");
        let translated = p["translated_text"].as_str().unwrap_or("");
        let heard: BTreeSet<u32> = numbers_in(transcript).into_iter().collect();
        let said: BTreeSet<u32> = numbers_in(translated).into_iter().collect();
        if heard != want {
            problems.push(format!(
                "fragment {k}: transcript {transcript:?} has numbers {heard:?}, expected {want:?}"
            ));
        }
        if said != want {
            problems.push(format!(
                "fragment {k}: translation {translated:?} has numbers {said:?}, expected {want:?}"
            ));
        }
        match dubbed_samples(&p["dubbed_audio"]) {
            Ok(samples) => {
                let db = rms_db(&samples);
                if samples.is_empty() || db < -40.0 {
                    problems.push(format!(
                        "fragment {k}: dubbed audio is silent ({db:.1} dBFS, {} samples)",
                        samples.len()
                    ));
                }
            }
            Err(e) => problems.push(format!("fragment {k}: {e}")),
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    // Apertium passes digits through, so the numbers above cannot tell a translator from
    // an identity function: a sentence of words must come back in Spanish.
    check_sentence_translation(&pair, &format!("{name}-sentence")).await
}

/// English sentence for the translation check, and Spanish words its translation must
/// hold (at least [`SENTENCE_MIN_WORDS`] of them) while none of the English content words
/// may remain.
const SENTENCE: &str = "Good morning. The weather is very nice today.";
const SENTENCE_ES: [&str; 6] = ["buenos", "días", "tiempo", "muy", "hoy", "bueno"];
const SENTENCE_EN: [&str; 4] = ["morning", "weather", "today", "nice"];
const SENTENCE_MIN_WORDS: usize = 3;

/// Sends [`SENTENCE`] (spoken by espeak-ng's English voice) to the STS as one fragment of
/// its own stream and checks the answer: transcribed in English, translated into
/// Spanish, spoken.
async fn check_sentence_translation(pair: &PairInfo, name: &str) -> anyhow::Result<()> {
    let wav = suite().settings.log_dir.join("sentence-en.wav");
    livedub_e2e::bench::speak_english(SENTENCE, 150, &wav)?;
    let mut pcm = decode_audio_mono(&wav)?;
    // One 6 s fragment: the sentence (~3 s) then silence.
    pcm.resize(6 * placement::RATE as usize, 0.0);
    let bytes: Vec<u8> = pcm
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect();
    let mut client = Monitor::connect(&pair.sts_url, None).await?;
    let ack = client
        .emit_with_ack(
            "stream:init",
            stream_init(name, FRAGMENT_MS),
            Duration::from_secs(10),
        )
        .await?;
    ensure!(ack["status"] == "ready", "stream:init rejected: {ack}");
    let frag_ack = client
        .emit_with_ack(
            "fragment:data",
            fragment_data(name, 0, FRAGMENT_MS, &bytes),
            Duration::from_secs(10),
        )
        .await?;
    ensure!(
        frag_ack["status"] == "accepted",
        "sentence fragment rejected: {frag_ack}"
    );
    let answers = client
        .collect_processed(name, 1, Duration::from_secs(30))
        .await;
    let _ = client
        .emit_with_ack(
            "stream:end",
            json!({"stream_id": name}),
            Duration::from_secs(5),
        )
        .await;
    client.close().await;
    let answer = answers
        .first()
        .ok_or_else(|| anyhow!("{name}: no answer for the sentence within 30 s"))?;
    let transcript = answer["transcript"].as_str().unwrap_or("").to_lowercase();
    let translated = answer["translated_text"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    eprintln!("[e2e] {name}: {transcript:?} -> {translated:?}");
    ensure!(
        answer["status"] == "success",
        "{name}: the sentence was answered {}: {}",
        answer["status"],
        answer["error"]
    );
    let words = |text: &str| -> BTreeSet<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (heard, said) = (words(&transcript), words(&translated));
    ensure!(
        SENTENCE_EN.iter().filter(|w| heard.contains(**w)).count() >= 3,
        "{name}: transcript {transcript:?} misses the sentence {SENTENCE:?}"
    );
    let spanish: Vec<&str> = SENTENCE_ES
        .iter()
        .copied()
        .filter(|w| said.contains(*w))
        .collect();
    let english: Vec<&str> = SENTENCE_EN
        .iter()
        .copied()
        .filter(|w| said.contains(*w))
        .collect();
    ensure!(
        spanish.len() >= SENTENCE_MIN_WORDS && english.is_empty(),
        "{name}: translation {translated:?} of {transcript:?} is not Spanish (Spanish words {spanish:?}, English words left {english:?})"
    );
    let dubbed = dubbed_samples(&answer["dubbed_audio"])?;
    ensure!(
        rms_db(&dubbed) > -40.0,
        "{name}: the sentence's dubbed audio is silent"
    );
    Ok(())
}

/// The recorded output decodes cleanly from start to end with the expected formats.
async fn test_output_stream_is_playable() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let name = stream_name("test_output_stream_is_playable");
    let run = with_slot(1, run_stream(&pair, &name, RunOptions::default())).await?;
    let r = StreamReport::probe(&run.recording, true)?;
    let v = r
        .video
        .as_ref()
        .ok_or_else(|| anyhow!("output has no video"))?;
    let a = r
        .audio
        .as_ref()
        .ok_or_else(|| anyhow!("output has no audio"))?;
    ensure!(
        v.codec == "h264" && v.width == 1280 && v.height == 720,
        "output video {v:?}"
    );
    ensure!(
        a.codec == "aac" && a.sample_rate == 48_000,
        "output audio {a:?}"
    );
    let frames = r.video_pts().len();
    // The output covers the audio the media-service received (it joins a moment after
    // the publisher starts): that span of video at 30 fps, and that much audio.
    let cut = run.input_audio_s();
    // Video starts at the first key frame after the audio (up to 1 s later).
    let (min_frames, max_frames) = (
        ((cut - 1.1) * 30.0) as usize,
        ((cut + 0.25) * 30.0) as usize,
    );
    let span = |pts: Vec<f64>| match (pts.first(), pts.last()) {
        (Some(a), Some(b)) => format!("{a:.2}..{b:.2} s"),
        _ => "none".to_string(),
    };
    eprintln!(
        "[e2e] {name}: output {frames} video frames ({}), {:.2} s of audio ({}); the fragments hold {cut:.2} s of input",
        span(r.video_pts()),
        r.audio_seconds(),
        span(r.audio_pts())
    );
    ensure!(
        (min_frames..=max_frames).contains(&frames),
        "output has {frames} video frames; {cut:.2} s of input make {min_frames}..{max_frames}"
    );
    check_audio_length(&name, r.audio_seconds(), cut)?;
    check_decodes_cleanly(&run.recording)
}

/// Reports, without judging, what a full decode says about a lead-in run's output: a
/// worker joining during the video-only lead-in gets the media server's key-frame cache as
/// a burst. The video's timestamps are spread (two frames on one millisecond used to fail
/// here, fixed); under load the first ~0.2 s of audio can still land on one timestamp
/// (seen once in compose: 11 AAC frames at 227 ms, a known defect, docs/e2e.md). The
/// playable test judges the same decode on an output without lead-in.
fn report_join_timestamps(name: &str, recording: &Path) {
    if let Err(e) = check_decodes_cleanly(recording) {
        eprintln!("[e2e] {name}: KNOWN DEFECT (reported, not judged): {e:#}");
    }
}

/// Decodes every frame of a recording; any message fails. The null muxer keeps the
/// stream's own timestamps at their own (millisecond) resolution (passthrough, the
/// demuxer's time base: rounding them to 1/30 s would invent repeats), so what is reported
/// are the file's own defects, timestamp complaints ("non monotonically increasing dts")
/// included.
fn check_decodes_cleanly(recording: &Path) -> anyhow::Result<()> {
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(recording)
        .args([
            "-fps_mode",
            "passthrough",
            "-enc_time_base",
            "-1",
            "-f",
            "null",
            "-",
        ])
        .output()?;
    let stderr = String::from_utf8_lossy(&decode.stderr);
    let errors: Vec<&str> = stderr.lines().collect();
    ensure!(
        decode.status.success() && errors.is_empty(),
        "decoding {} reported errors:\n{}",
        recording.display(),
        errors.join("\n")
    );
    Ok(())
}

/// A/V sync of a dubbed output, from its content: the marked fixture's flashes and tone
/// bursts (one each second) found in the recorded output, every one within 120 ms (the
/// first and last marks are the output's start and end); the packet timestamps agree, and
/// the media-service's own metric. The same run measures the glass-to-glass delay against
/// the main pair's OUTPUT_DELAY_MS (the default the service derives) and the placement
/// of every fragment's dub.
async fn test_output_av_sync_within_120ms() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let name = stream_name("test_output_av_sync_within_120ms");
    let run = with_slot(
        1,
        run_stream(
            &pair,
            &name,
            RunOptions {
                source: Source::Marked,
                live: true,
                ..Default::default()
            },
        ),
    )
    .await?;
    check_marks(&run, MIN_SYNC_MARKS)?;
    let r = StreamReport::probe(&run.recording, true)?;
    let sync = r
        .sync()
        .ok_or_else(|| anyhow!("output lacks audio or video packets"))?;
    eprintln!("[e2e] {name}: packets {sync:?}");
    ensure!(
        sync.worst_ms() < SYNC_BUDGET_MS,
        "A/V packet timestamps off by up to {:.1} ms: {sync:?}",
        sync.worst_ms()
    );
    // The start: the output's video can only start at a key frame, so it starts up to a
    // GOP (1 s) after the audio (measured -0.70 s), never before it; sync at the start
    // is the first mark's (judged above). The end delta is reported, not judged: it
    // measures how much of each stream's tail survived the publisher's disconnect (audio
    // ends ~0.5 s before video, a known defect; docs/e2e.md).
    ensure!(
        sync.start_delta_ms > -(GOP_MS + FRAME_MS) && sync.start_delta_ms < SYNC_BUDGET_MS,
        "{name}: the output's video starts {:+.0} ms after its audio (allowed: up to one GOP, {GOP_MS} ms, after; never more than {SYNC_BUDGET_MS} ms before): {sync:?}",
        -sync.start_delta_ms
    );
    let gauges: Vec<f64> = run
        .metrics
        .find("worker_av_sync_delta_ms", &[("stream", &name)])
        .map(|s| s.value)
        .collect();
    ensure!(
        !gauges.is_empty(),
        "no worker_av_sync_delta_ms{{stream=\"{name}\"}} sample"
    );
    for g in gauges {
        ensure!(g.abs() < SYNC_BUDGET_MS, "worker_av_sync_delta_ms = {g}");
    }
    let delay = measure_delay(&run)?;
    eprintln!(
        "[e2e] {name}: glass-to-glass delay {delay} (OUTPUT_DELAY_MS {MAIN_OUTPUT_DELAY_MS}, derived default)"
    );
    delay::judge_bracket(delay, MAIN_OUTPUT_DELAY_MS).map_err(|e| anyhow!("{name}: {e}"))?;
    check_placement(&pair, &run)?;
    Ok(())
}

/// Dubbed segments differ from the input audio; fallback segments are the input audio.
async fn test_output_audio_fingerprints_dubbed_vs_fallback() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let name = stream_name("test_output_audio_fingerprints");
    // Lead-in: the media-service's fragments then coincide with the fixture's 6 s segments.
    let run = with_slot(
        1,
        run_stream(
            &pair,
            &name,
            RunOptions {
                lead_in: true,
                ..Default::default()
            },
        ),
    )
    .await?;
    ensure!(
        run.fragments.len() >= 5,
        "media-service logged {} fragments",
        run.fragments.len()
    );
    // Lead-in: the worker is attached before the first audio, nothing to settle.
    let (offset, bers) = segment_bers(&run.recording, 5, 0.0)?;
    // The lead-in makes the worker join while the media server replays its key-frame
    // cache. The jitter buffer then repeated video timestamps for seconds, and the whole
    // output video froze on one timestamp (1016 of 1049 frames) until the media-service
    // spread the repeats (`RepeatedPtsSpreader`). Every frame must keep its own time.
    let video = StreamReport::probe(&run.recording, true)?.video_pts();
    let distinct: BTreeSet<u64> = video.iter().map(|t| (t * 1000.0).round() as u64).collect();
    ensure!(
        distinct.len() + 3 >= video.len(),
        "{name}: {} of {} output video frames share a timestamp with another (frozen video timeline)",
        video.len() - distinct.len(),
        video.len()
    );
    eprintln!(
        "[e2e] {name}: offset {offset} frames, BER per segment {bers:.3?}; {}",
        describe_fragments(&run)
    );
    // The main pair runs the default voice-over mix: a dubbed segment still carries the
    // input, ducked by 15 dB while the Spanish voice speaks and back at full level after it
    // (the TTS rarely fills all 6 s). Over a whole segment the BER against the input is
    // then anything from "same" to "different" (measured 0.19-0.38 per segment; 0.44-0.49
    // in replace mode), so dubbed segments are judged where the dubbed voice speaks: from
    // its first to its last sound in the STS's answer (measured there: 0.39-0.42).
    let seg_s = FRAGMENT_MS as f64 / 1000.0;
    let voiced: Vec<Option<(f64, f64)>> = (0..bers.len())
        .map(|k| {
            let ev = run
                .processed
                .iter()
                .find(|e| e["sequence_number"] == k as u64)?;
            let rate = ev["dubbed_audio"]["sample_rate_hz"].as_f64()?;
            let pcm = dubbed_samples(&ev["dubbed_audio"]).ok()?;
            // The mixer's voice threshold (-45 dBFS), per sample.
            let loud = |s: &&f32| s.abs() > 0.0056;
            let first = pcm.iter().position(|s| loud(&s))?;
            let last = pcm.iter().rposition(|s| loud(&s))?;
            let from = k as f64 * seg_s + first as f64 / rate;
            let to = k as f64 * seg_s + last as f64 / rate;
            (to - from >= 1.0).then_some((from, to))
        })
        .collect();
    let voiced_spans: Vec<(f64, f64)> = voiced.iter().flatten().copied().collect();
    let (_, voiced_bers) = span_bers(&run.recording, &voiced_spans)?;
    let mut voiced_ber = voiced_spans.iter().zip(voiced_bers);
    let voiced_ber: Vec<Option<f64>> = voiced
        .iter()
        .map(|v| v.and_then(|_| voiced_ber.next().map(|(_, b)| b)))
        .collect();
    eprintln!("[e2e] {name}: BER where the dubbed voice speaks {voiced_ber:.3?}");
    let mut problems = Vec::new();
    let mut dubbed = 0;
    for (k, ber) in bers.iter().enumerate() {
        let status = run.fragments[k]["status"].as_str().unwrap_or("?");
        match status {
            "processed" => {
                dubbed += 1;
                match voiced_ber[k] {
                    Some(b) if b < DIFFERENT_AUDIO_BER => problems.push(format!(
                        "segment {k} was dubbed but where its dubbed voice speaks the audio matches the input (BER {b:.3})"
                    )),
                    Some(_) => {}
                    None => problems.push(format!(
                        "segment {k} was dubbed but its dubbed audio has no voice (>= 1 s above -45 dBFS)"
                    )),
                }
            }
            _ => {
                if *ber > SAME_AUDIO_BER {
                    problems.push(format!("segment {k} fell back ({status}) but its audio differs from the input (BER {ber:.3})"));
                }
            }
        }
    }
    // Each segment is judged by its own outcome; at least one must have been dubbed for
    // the "differs" half to be tested at all.
    ensure!(
        dubbed >= 1,
        "no segment was dubbed, nothing to compare: {}",
        describe_fragments(&run)
    );
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    // Not only different from the input: the dub the STS returned, where it belongs.
    check_placement(&pair, &run)?;
    report_join_timestamps(&run.name, &run.recording);
    Ok(())
}

/// Depth of the duck the main pair runs with (the media-service's default DUCK_DB).
const DUCK_DB: f64 = -15.0;
/// The bed tone of the voice-over fixture, measured in the output. Above 8 kHz on purpose:
/// the STS works at 16 kHz, so the dubbed voice cannot carry any energy there and the
/// tone's level in the output is the ducked original alone (a 440 Hz tone shares its band
/// with the voice's harmonics, which would blur a ±2 dB measurement).
const BED_TONE_HZ: f64 = 9000.0;

/// The voice-over fixture: the counting fixture's first 12 s of speech then 12 s without
/// speech, all over a steady bed (a 9 kHz tone at −26 dBFS for the measurement, a 440 Hz
/// hum at −30 dBFS that the STS hears under the speech and alone in the speechless part).
fn voice_over_fixture() -> anyhow::Result<PathBuf> {
    let out = suite().settings.log_dir.join("voice-over-fixture.mp4");
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if out.exists() {
        return Ok(out);
    }
    let fixture = fixture_path();
    let o = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(&fixture)
        .args([
            "-f", "lavfi", "-i", "sine=frequency=9000:sample_rate=48000",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-filter_complex",
            "[0:a]aformat=sample_rates=48000:channel_layouts=mono,atrim=0:11.8,afade=t=out:st=11.6:d=0.2,apad=whole_dur=24[s];\
             [1:a]volume=0.4,atrim=0:24[t];[2:a]volume=0.2529,atrim=0:24[h];\
             [s][t][h]amix=inputs=3:normalize=0,aformat=channel_layouts=stereo[a]",
            "-map", "0:v", "-map", "[a]", "-t", "24",
            "-c:v", "copy", "-c:a", "aac", "-b:a", "192k", "-ar", "48000",
        ])
        .arg(&out)
        .output()?;
    ensure!(
        o.status.success(),
        "ffmpeg could not build the voice-over fixture: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(out)
}

/// Voice-over (the default mix) and `no_speech` through the main pair: the bed under the
/// speech survives the dubbing, lowered by DUCK_DB only while the dubbed voice speaks, and a
/// fragment without speech is reported `no_speech` and goes out as the original.
async fn test_voice_over_keeps_the_bed_and_no_speech_keeps_the_original() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let name = stream_name("test_voice_over");
    let fixture = voice_over_fixture()?;
    let log_dir = &suite().settings.log_dir;
    let recording = log_dir.join(format!("{name}-output.flv"));
    let (processed, recording) = with_slot(1, async {
        let mut monitor = Monitor::connect(&pair.sts_url, None).await?;
        monitor.subscribe(&name).await?;
        let recorder = Recorder::start(
            &pair.server,
            &name,
            &recording,
            &log_dir.join(format!("{name}-recorder.log")),
            Duration::from_secs(60),
        );
        let publish_log = log_dir.join(format!("{name}-publisher.log"));
        let mut publisher = Publisher::start(&pair.server, &name, &fixture, &publish_log)?;
        let ok =
            tokio::task::spawn_blocking(move || publisher.wait(Duration::from_secs(50))).await??;
        ensure!(ok, "publishing {name} failed or took too long");
        // Fragments 0..3: the worker joins up to a few seconds into the 24 s publish.
        let processed = monitor
            .collect_processed(&name, 4, Duration::from_secs(35))
            .await;
        monitor.close().await;
        let rec = tokio::task::spawn_blocking(move || recorder.finish(Duration::from_secs(30)))
            .await?
            .map_err(|e| anyhow!("{e}"))?;
        anyhow::Ok((processed, rec))
    })
    .await?;
    let fragments = read_fragment_log(&pair, &name).await;
    let metrics = scrape(&pair.host, pair.media_port)?;
    let statuses: Vec<String> = fragments
        .iter()
        .map(|f| format!("{}:{}", f["sequence"], f["status"].as_str().unwrap_or("?")))
        .collect();
    eprintln!("[e2e] {name}: fragments {statuses:?}");

    // Fragment 2 covers fixture seconds 12+d..18+d (d >= 0: the worker cannot start before
    // the publish): no speech, whatever the join delay d.
    let seq2 = fragments
        .iter()
        .find(|f| f["sequence"] == 2)
        .ok_or_else(|| anyhow!("{name}: no fragment 2 in the log: {statuses:?}"))?;
    ensure!(
        seq2["status"] == "no_speech" && seq2["sts_status"] == "no_speech",
        "{name}: the speechless fragment 2 should be no_speech (original audio): {seq2}"
    );
    let ev2 = processed
        .iter()
        .find(|e| e["sequence_number"] == 2)
        .ok_or_else(|| anyhow!("{name}: no fragment:processed for 2"))?;
    ensure!(
        ev2["status"] == "no_speech" && ev2.get("dubbed_audio").is_none(),
        "{name}: STS answer for the speechless fragment: {}",
        first_lines(&ev2.to_string(), 1)
    );
    ensure!(
        fragments.iter().any(|f| f["status"] == "processed"),
        "{name}: no fragment was dubbed: {statuses:?}"
    );
    let no_speech = metrics.sum(
        "worker_audio_fragments_total",
        &[("stream", &name), ("status", "no_speech")],
    );
    ensure!(
        no_speech >= 1.0,
        "{name}: worker_audio_fragments_total{{status=\"no_speech\"}} = {no_speech}"
    );

    // The bed, window by window (100 ms) over the output, against the input's level.
    let input = decode_audio_48k(&fixture)?;
    let input_db = median(
        input
            .chunks_exact(4800)
            .map(|w| tone_level_db(w, BED_TONE_HZ))
            .collect(),
    );
    let output = decode_audio_48k(&recording)?;
    ensure!(
        output.len() > 48_000 * 12,
        "{name}: only {:.1} s of output audio",
        output.len() as f64 / 48_000.0
    );
    // Leave out the first and last half second (recorder join, encoder edges).
    let inner = &output[24_000..output.len() - 24_000];
    let windows: Vec<(f64, f64)> = inner
        .chunks_exact(4800)
        .map(|w| (tone_level_db(w, BED_TONE_HZ), rms_db(w)))
        .collect();
    let lowest = windows.iter().map(|w| w.0).fold(f64::INFINITY, f64::min);
    ensure!(
        lowest > input_db + DUCK_DB - 3.0,
        "{name}: the bed drops to {lowest:.1} dB in some window (input {input_db:.1} dB, duck {DUCK_DB} dB): it was removed, not ducked"
    );
    let full: Vec<f64> = windows
        .iter()
        .filter(|w| (w.0 - input_db).abs() <= 1.5)
        .map(|w| w.0)
        .collect();
    let ducked: Vec<&(f64, f64)> = windows
        .iter()
        .filter(|w| (w.0 - input_db - DUCK_DB).abs() <= 2.0)
        .collect();
    let depth = median(ducked.iter().map(|w| w.0).collect()) - median(full.clone());
    eprintln!(
        "[e2e] {name}: bed tone {input_db:.1} dB in, {:.1} s at full level, {:.1} s ducked, measured depth {depth:.2} dB (DUCK_DB {DUCK_DB}), lowest window {lowest:.1} dB",
        full.len() as f64 / 10.0,
        ducked.len() as f64 / 10.0
    );
    // The speechless fragments (>= 6 s) carry the bed at its input level...
    ensure!(
        full.len() >= 40,
        "{name}: only {:.1} s of output carry the bed at its input level",
        full.len() as f64 / 10.0
    );
    // ...and the dubbed voice ducks it by DUCK_DB (±2 dB) while it speaks.
    ensure!(
        ducked.len() >= 15,
        "{name}: only {:.1} s of output have the bed ducked by {DUCK_DB} dB ±2",
        ducked.len() as f64 / 10.0
    );
    // Where the bed is ducked, something much louder than it plays: the dubbed voice.
    let above = median(ducked.iter().map(|w| w.1 - w.0).collect());
    ensure!(
        above >= 10.0,
        "{name}: where the bed is ducked the output is only {above:.1} dB above it: no dubbed voice"
    );
    Ok(())
}

/// An STS slower than the deadline: original audio goes out, the output does not stall,
/// fallbacks are counted.
async fn test_fallback_when_sts_slower_than_deadline() -> anyhow::Result<()> {
    let pair = suite().slow_pair()?;
    let name = stream_name("test_fallback_when_sts_slower_than_deadline");
    // Echo STS, but its stream still loads the CPU: it takes its turn like the real-STS ones.
    let run = with_slot(
        1,
        run_stream(
            &pair,
            &name,
            RunOptions {
                expect_processed: 0,
                source: Source::Marked,
                live: true,
                ..Default::default()
            },
        ),
    )
    .await?;
    let r = StreamReport::probe(&run.recording, true)?;
    let cut = run.input_audio_s();
    check_audio_length(&name, r.audio_seconds(), cut)?;
    let sync = r
        .sync()
        .ok_or_else(|| anyhow!("output lacks audio or video"))?;
    ensure!(
        sync.max_audio_gap_ms < SYNC_BUDGET_MS && sync.max_video_gap_ms < SYNC_BUDGET_MS,
        "output has holes: {sync:?}"
    );
    // The original audio, fragment by fragment, where it belongs, and in sync with the
    // video by content; the delay is the slow pair's overridden OUTPUT_DELAY_MS.
    check_placement(&pair, &run)?;
    check_marks(&run, MIN_SYNC_MARKS)?;
    let delay = measure_delay(&run)?;
    eprintln!(
        "[e2e] {name}: glass-to-glass delay {delay} (OUTPUT_DELAY_MS={SLOW_OUTPUT_DELAY_MS}, overridden)"
    );
    delay::judge_bracket(delay, SLOW_OUTPUT_DELAY_MS).map_err(|e| anyhow!("{name}: {e}"))?;
    let fallback = run.metric("fallback");
    ensure!(
        fallback >= 5.0,
        "worker_audio_fragments_total{{status=fallback}} = {fallback}, expected >= 5"
    );
    ensure!(
        run.metric("processed") == 0.0,
        "a fragment counted as processed despite the slow STS"
    );
    ensure!(
        run.fragment_count("processed") == 0,
        "fragment log shows dubbed fragments: {}",
        describe_fragments(&run)
    );
    Ok(())
}

/// Two streams at once, with content that tells them apart (A: the counting fixture over
/// a 10 kHz bed; B: its audio rotated by 12 s, numbers 13..30 then 1..12, over a 12 kHz
/// bed): each output carries its own input and not the other's (bed tones), each
/// fragment's answer holds its own stream's numbers, and each output carries its own dubs
/// in place.
async fn test_two_concurrent_streams_do_not_interfere() -> anyhow::Result<()> {
    let pair = suite().main_pair()?;
    let a = stream_name("test_concurrent_a");
    let b = stream_name("test_concurrent_b");
    let opts = |source| RunOptions {
        source,
        // Fragment k holds the source's seconds 6k..6k+6: its numbers are known.
        lead_in: true,
        ..Default::default()
    };
    let (ra, rb) = with_slot(2, async {
        tokio::join!(run_stream(&pair, &a, opts(Source::IsolationA)), async {
            // Start the second one mid-fragment so the two do not hit the STS together.
            tokio::time::sleep(Duration::from_secs(3)).await;
            run_stream(&pair, &b, opts(Source::IsolationB)).await
        })
    })
    .await;
    let (ra, rb) = (ra?, rb?);
    for (run, own, other) in [
        (&ra, Source::IsolationA, Source::IsolationB),
        (&rb, Source::IsolationB, Source::IsolationA),
    ] {
        let r = StreamReport::probe(&run.recording, false)?;
        ensure!(
            r.video.is_some() && r.audio.is_some(),
            "{}: output lacks audio or video",
            run.name
        );
        let carried = StreamReport::probe(&run.recording, true)?.audio_seconds();
        check_audio_length(&run.name, carried, run.input_audio_s())?;
        let dubbed = run.fragment_count("processed");
        ensure!(
            dubbed >= 3,
            "{}: only {dubbed} fragments dubbed: {}",
            run.name,
            describe_fragments(run)
        );
        check_own_bed(run, own, other)?;
        check_own_numbers(run, own)?;
        check_placement(&pair, run)?;
        report_join_timestamps(&run.name, &run.recording);
    }
    Ok(())
}

/// The output carries its own input's bed tone (ducked at most by the voice-over) and
/// not the other stream's.
fn check_own_bed(run: &StreamRun, own: Source, other: Source) -> anyhow::Result<()> {
    let (own_hz, other_hz) = (
        own.tone_hz().ok_or_else(|| anyhow!("{own:?} has no bed"))?,
        other
            .tone_hz()
            .ok_or_else(|| anyhow!("{other:?} has no bed"))?,
    );
    let level =
        |x: &[f32], hz: f64| median(x.chunks_exact(4800).map(|w| tone_level_db(w, hz)).collect());
    let input = decode_audio_48k(&own.path()?)?;
    let output = decode_audio_48k(&run.recording)?;
    let (input_db, own_db, other_db) = (
        level(&input, own_hz),
        level(&output, own_hz),
        level(&output, other_hz),
    );
    eprintln!(
        "[e2e] {}: own bed ({own_hz} Hz) {input_db:.1} dB in, {own_db:.1} dB out; the other stream's ({other_hz} Hz) {other_db:.1} dB out",
        run.name
    );
    ensure!(
        own_db > input_db + DUCK_DB - 3.0,
        "{}: its own input's bed is missing from its output ({own_db:.1} dB, input {input_db:.1} dB)",
        run.name
    );
    ensure!(
        other_db < own_db - 25.0,
        "{}: the other stream's bed is in its output ({other_db:.1} dB against its own {own_db:.1} dB)",
        run.name
    );
    Ok(())
}

/// Every answer of the stream holds that stream's numbers: fragment k covers its source's
/// seconds 6k..6k+6 (lead-in), at least 4 of their 6 numbers are heard and none other.
fn check_own_numbers(run: &StreamRun, source: Source) -> anyhow::Result<()> {
    let number_at = |second: u32| match source {
        Source::IsolationB => (second + 12) % 30 + 1,
        _ => second + 1,
    };
    let mut problems = Vec::new();
    let mut judged = 0;
    for p in &run.processed {
        let Some(k) = p["sequence_number"].as_u64().filter(|k| *k < 5) else {
            continue;
        };
        let want: BTreeSet<u32> = (6 * k as u32..6 * k as u32 + 6).map(number_at).collect();
        let heard: BTreeSet<u32> = numbers_in(p["transcript"].as_str().unwrap_or(""))
            .into_iter()
            .collect();
        judged += 1;
        if heard.intersection(&want).count() < 4 || !heard.is_subset(&want) {
            problems.push(format!(
                "fragment {k}: heard {heard:?}, its stream says {want:?}"
            ));
        }
    }
    ensure!(judged >= 3, "{}: only {judged} answers to check", run.name);
    ensure!(problems.is_empty(), "{}: {}", run.name, problems.join("; "));
    Ok(())
}

/// Each side starts, stops and restarts without the other (own pair, echo STS).
async fn test_media_service_compose_starts() -> anyhow::Result<()> {
    let s = suite();
    let spec = base_spec("lifecycle", Ports::free()?)
        .sts("STS_MODE", "echo")
        .sts("ECHO_DELAY_MS", 200);
    let settings = s.settings.clone();
    let mut pair = tokio::task::spawn_blocking(move || Pair::start(settings, spec)).await??;
    let h = pair.host().to_string();
    let (mp, sp) = (pair.media_port(), pair.sts_port());
    let api = pair.media_server().api_port;
    let up = |port: u16, path: &str| http::ok_within(&h, port, path, Duration::from_secs(5));
    let result: anyhow::Result<()> = async {
        // Stops, starts and health polls block: keep them off the runtime's workers, which
        // the other tests' monitors share.
        // Identities are read from the system (process ids; container ids and start times
        // from the Docker engine), never from the suite's own bookkeeping.
        tokio::task::block_in_place(|| -> anyhow::Result<()> {
            ensure!(up(mp, "/health") && up(sp, "/health"), "pair not healthy after start");
            ensure!(pair.side_running(Side::Sts)? && pair.side_running(Side::Media)?, "a side is not running after start");
            let sts_id = pair.service_identity(Side::Sts)?;
            let media_id = pair.service_identity(Side::Media)?;
            // Media side down: STS unaffected.
            pair.stop_side(Side::Media)?;
            ensure!(!pair.side_running(Side::Media)?, "the media side still runs after stop");
            ensure!(!http::is_ok(&h, mp, "/health"), "media-service still answers after stop");
            ensure!(!http::is_ok(&h, api, "/v3/paths/list"), "media server still answers after stop");
            ensure!(up(sp, "/health"), "stopping the media side took the STS down");
            ensure!(pair.side_running(Side::Sts)?, "the STS stopped along with the media side");
            pair.start_side(Side::Media)?;
            ensure!(up(mp, "/health"), "media-service not healthy after restart");
            ensure!(pair.service_identity(Side::Sts)? == sts_id, "the STS was restarted along with the media side ({sts_id} before)");
            // The identity check can fail: the restarted media-service is a new process.
            let media_id_2 = pair.service_identity(Side::Media)?;
            ensure!(media_id_2 != media_id, "the media-service restart is not visible in its identity ({media_id} before and after)");
            // STS side down: media side unaffected.
            pair.stop_side(Side::Sts)?;
            ensure!(!pair.side_running(Side::Sts)?, "the STS still runs after stop");
            ensure!(!http::is_ok(&h, sp, "/health"), "STS still answers after stop");
            ensure!(up(mp, "/health"), "stopping the STS took the media-service down");
            ensure!(pair.side_running(Side::Media)?, "media side died while the STS was down");
            pair.start_side(Side::Sts)?;
            ensure!(pair.service_identity(Side::Media)? == media_id_2, "the media-service was restarted along with the STS ({media_id_2} before)");
            ensure!(pair.service_identity(Side::Sts)? != sts_id, "the STS restart is not visible in its identity ({sts_id} before and after)");
            Ok(())
        })?;
        // After both restarts the pipeline works end to end: the media-service found the
        // restarted STS again.
        let info = PairInfo::of(&pair);
        let name = stream_name("test_media_service_compose_starts");
        // No recording: this test is about the services finding each other again.
        let opts = RunOptions { seconds: Some(13), expect_processed: 2, record: false, ..Default::default() };
        let run = with_slot(1, run_stream(&info, &name, opts)).await?;
        ensure!(
            run.processed.len() >= 2,
            "after the restarts the STS answered {} fragments (expected 2): the media-service did not reconnect",
            run.processed.len()
        );
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("{}", pair.log_tails(40));
    }
    tokio::task::spawn_blocking(move || pair.teardown()).await?;
    result
}

/// The short soak (docs/e2e.md "Soak"): about three minutes of one live stream through a
/// pair of its own (real STS), with one fault of each kind: publisher stall (3 s),
/// publisher reconnect, STS killed and restarted, media server restarted. After every fault
/// dubbing comes back and the output returns; the media-service's resources stay bounded;
/// the output's A/V offset holds. Native backend only (it kills and restarts processes).
async fn test_soak_short_faults_recover() -> anyhow::Result<()> {
    let s = suite();
    let plan = Plan::short();
    // Made once per cache, outside the stream slot (a minute of CPU the first time).
    let seconds = plan.duration.as_secs() + 60;
    let source =
        tokio::task::spawn_blocking(move || soak::make_source(&soak::cache_dir(), seconds))
            .await??;
    let settings = s.settings.clone();
    let name = stream_name("test_soak_short_faults_recover");
    let run_plan = plan.clone();
    let report = with_slot(1, async move {
        let plan = run_plan;
        tokio::task::spawn_blocking(move || -> anyhow::Result<soak::Report> {
            let mut pair = Pair::start(settings.clone(), plan.pair_spec("soak", Ports::free()?))?;
            let report = soak::run(&mut pair, &plan, &name, &source, &settings.log_dir);
            if report.is_err() {
                eprintln!("{}", pair.log_tails(40));
            }
            pair.teardown();
            report
        })
        .await?
    })
    .await?;
    eprintln!("{}", report.table());
    let gross = report.gross_failures();
    ensure!(gross.is_empty(), "{}", gross.join("; "));
    let delay = plan.output_delay().as_secs_f64();
    for f in &report.faults {
        let what = format!("{} at {:.0} s", f.fault.kind.as_str(), f.fault.start_s);
        let back = f.dubbed_after_s.unwrap_or(f64::INFINITY);
        ensure!(back <= SOAK_DUBBED_AGAIN_S, "after the {what}, dubbing came back only {back:.1} s after its end (allowed: {SOAK_DUBBED_AGAIN_S} s)");
        // A known defect, reported and not judged here (docs/e2e.md "Soak", finding 3):
        // after a media server restart the output sometimes comes back without video, so a
        // recorder cannot read it, while the worker goes on dubbing (judged above).
        if f.fault.kind == soak::FaultKind::MediaServerRestart {
            if f.output_gap_s > delay + SOAK_OUTPUT_GAP_EXTRA_S {
                eprintln!(
                    "[e2e] known defect: after the {what}, {:.1} s of output were missing",
                    f.output_gap_s
                );
            }
            continue;
        }
        // An input that stops costs the output about D + 2 s (docs/media-service.md "Input gaps").
        ensure!(
            f.output_gap_s <= delay + SOAK_OUTPUT_GAP_EXTRA_S,
            "after the {what}, {:.1} s of output were missing (allowed: D + {SOAK_OUTPUT_GAP_EXTRA_S} s = {:.1} s)",
            f.output_gap_s,
            delay + SOAK_OUTPUT_GAP_EXTRA_S
        );
    }
    ensure!(
        report.share_dubbed_outside() >= 0.5,
        "only {}/{} fragments outside the fault windows were dubbed",
        report.outside_dubbed,
        report.outside
    );
    let media = &report.resources[0];
    if let (Some(a), Some(b)) = (media.start, media.end) {
        ensure!(
            b.rss_kib <= a.rss_kib + a.rss_kib / 2 + 64 * 1024
                && b.threads <= a.threads + 16
                && b.fds <= a.fds + 32,
            "media-service resources grew: {a:?} at the start, {b:?} at the end"
        );
    }
    // Each appearance of the output (a new worker after an input gap) has an A/V offset of
    // its own, constant while it lasts: measured +46, +73, +86 and +145 ms in one run (see
    // docs/e2e.md "Soak"). Judged against a bound that catches a broken sync, not the budget.
    for (when, av) in [("start", report.av_start), ("end", report.av_end)] {
        let av =
            av.with_context(|| format!("no A/V offset measured at the {when} of the output"))?;
        ensure!(
            av.marks >= 5 && av.median_ms.abs() <= SOAK_AV_OFFSET_MS,
            "output A/V offset at the {when}: {:+.0} ms over {} marks (allowed: {SOAK_AV_OFFSET_MS} ms, 5 marks)",
            av.median_ms,
            av.marks
        );
    }
    Ok(())
}

/// Short soak: dubbing must be back within this long after a fault's end (measured at the
/// first dubbed fragment's start). A reconnecting input gets its worker once the old one has
/// drained (D + ~2 s after the input stopped), an STS restart waits for the reconnect backoff.
const SOAK_DUBBED_AGAIN_S: f64 = 30.0;
/// Short soak: output missing after a fault, beyond the output delay D.
const SOAK_OUTPUT_GAP_EXTRA_S: f64 = 20.0;
/// Short soak: largest |A/V offset| of the output at its start and end (ms).
const SOAK_AV_OFFSET_MS: f64 = 120.0;

/// Overridden ports, MAX_INFLIGHT, PROCESSING_TIMEOUT and fragment length take effect.
async fn test_env_config_overrides() -> anyhow::Result<()> {
    let s = suite();
    let ports = Ports::free()?;
    let spec = base_spec("envcfg", ports)
        .sts("STS_MODE", "echo")
        .sts("ECHO_DELAY_MS", 2500)
        .sts("MAX_INFLIGHT", 2)
        .sts("PROCESSING_TIMEOUT", 1)
        .media("FRAGMENT_DURATION_MS", 4000)
        .media("OUTPUT_DELAY_MS", 6000);
    let settings = s.settings.clone();
    let mut pair = tokio::task::spawn_blocking(move || Pair::start(settings, spec)).await??;
    let info = PairInfo::of(&pair);
    let result: anyhow::Result<()> = async {
        // Ports: everything answers where the overrides put it.
        ensure!(
            http::is_ok(&info.host, ports.sts, "/health"),
            "STS not on STS_PORT={}",
            ports.sts
        );
        ensure!(
            http::is_ok(&info.host, ports.media, "/health"),
            "media-service not on MEDIA_SERVICE_PORT={}",
            ports.media
        );
        ensure!(
            http::is_ok(&info.host, ports.api, "/v3/paths/list"),
            "media server not on its API port {}",
            ports.api
        );
        // MAX_INFLIGHT is announced in the stream:init ack.
        let name = stream_name("test_env_config_overrides-direct");
        let mut client = Monitor::connect(&info.sts_url, None).await?;
        let ack = client
            .emit_with_ack(
                "stream:init",
                stream_init(&name, 4000),
                Duration::from_secs(10),
            )
            .await?;
        ensure!(ack["status"] == "ready", "stream:init rejected: {ack}");
        ensure!(
            ack["max_inflight"] == 2,
            "MAX_INFLIGHT=2 not in effect: ack {ack}"
        );
        // PROCESSING_TIMEOUT=1 s beats ECHO_DELAY_MS=2.5 s: the answer is a timeout, after ~1 s.
        let pcm = vec![0u8; 16000 * 2 * 4];
        let sent = Instant::now();
        let frag_ack = client
            .emit_with_ack(
                "fragment:data",
                fragment_data(&name, 0, 4000, &pcm),
                Duration::from_secs(10),
            )
            .await?;
        ensure!(
            frag_ack["status"] == "accepted",
            "fragment rejected: {frag_ack}"
        );
        let answers = client
            .collect_processed(&name, 1, Duration::from_secs(10))
            .await;
        let answer = answers
            .first()
            .ok_or_else(|| anyhow!("no fragment:processed within 10 s"))?;
        let took = sent.elapsed();
        ensure!(
            answer["status"] == "timeout",
            "PROCESSING_TIMEOUT=1 not in effect: status {} after {took:?}",
            answer["status"]
        );
        ensure!(
            took < Duration::from_millis(2400),
            "timeout answer took {took:?}, PROCESSING_TIMEOUT=1 s"
        );
        // MAX_INFLIGHT=2, kept: four more fragments at once, while the first may still
        // occupy its slot; the STS's sts_stream_busy_slots (judged below, after the
        // media-service's stream too) shows how many slots were busy whenever one started.
        for seq in 1..5u64 {
            let a = client
                .emit_with_ack(
                    "fragment:data",
                    fragment_data(&name, seq, 4000, &pcm),
                    Duration::from_secs(10),
                )
                .await?;
            ensure!(a["status"] == "accepted", "fragment {seq} rejected: {a}");
        }
        let burst = client
            .collect_processed(&name, 5, Duration::from_secs(10))
            .await;
        ensure!(
            burst.len() == 5,
            "{} of 5 fragments of {name} were answered",
            burst.len()
        );
        client.close().await;
        // FRAGMENT_DURATION_MS=4000: a 9 s publish gives 4 s fragments.
        let stream = stream_name("test_env_config_overrides");
        let run = with_slot(
            1,
            run_stream(
                &info,
                &stream,
                RunOptions {
                    seconds: Some(9),
                    expect_processed: 2,
                    record: false,
                    // Fragment lengths are checked: the first fragment must not be the only full one.
                    lead_in: true,
                    ..Default::default()
                },
            ),
        )
        .await?;
        ensure!(
            !run.fragments.is_empty(),
            "no fragments logged for {stream}"
        );
        let full: Vec<&Value> = run
            .fragments
            .iter()
            .filter(|f| f["duration_ms"] == 4000)
            .collect();
        ensure!(
            full.len() >= 2,
            "FRAGMENT_DURATION_MS=4000 not in effect: {:?}",
            run.fragments
                .iter()
                .map(|f| f["duration_ms"].clone())
                .collect::<Vec<_>>()
        );
        ensure!(
            !run.processed.is_empty(),
            "the STS answered no fragment of {stream}: nothing shows PROCESSING_TIMEOUT in effect"
        );
        ensure!(
            run.processed.iter().all(|p| p["status"] == "timeout"),
            "fragments sent by the media-service should time out at the STS: {:?}",
            run.processed
                .iter()
                .map(|p| p["status"].clone())
                .collect::<Vec<_>>()
        );
        let delay = run
            .metrics
            .sum("worker_output_delay_ms", &[("stream", &stream)]);
        ensure!(
            delay == 6000.0,
            "OUTPUT_DELAY_MS=6000 not in effect: worker_output_delay_ms = {delay}"
        );
        let sts = scrape(&info.host, ports.sts)?;
        sts.check_limit_kept("sts_stream_busy_slots", 2.0, 3.0)
            .map_err(|e| anyhow!("MAX_INFLIGHT=2 not kept: {e}"))?;
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("{}", pair.log_tails(40));
    }
    tokio::task::spawn_blocking(move || pair.teardown()).await?;
    result
}

/// A bad value stops a service at once with one line naming the variable and the value.
fn test_bad_env_value_fails_fast() -> anyhow::Result<()> {
    let s = suite();
    let cases: [(Side, &str, &str); 6] = [
        (Side::Sts, "MAX_INFLIGHT", "lots"),
        (Side::Sts, "PROCESSING_TIMEOUT", "-5"),
        (Side::Sts, "STS_PORT", "70000"),
        (Side::Media, "MEDIA_SERVICE_PORT", "http"),
        (Side::Media, "FRAGMENT_DURATION_MS", "soon"),
        (Side::Media, "STS_SERVICE_URL", "not a url"),
    ];
    let mut problems = Vec::new();
    for (side, var, value) in cases {
        let env = vec![(var.to_string(), value.to_string())];
        // The wait covers a container's creation on a loaded machine (compose); "fast" is
        // judged on the service's own run time below.
        let out = Pair::run_once(&s.settings, side, &env, &[], Duration::from_secs(40))?;
        let all = format!("{}{}", out.stdout, out.stderr);
        let line = all
            .lines()
            .find(|l| l.contains(var))
            .unwrap_or("")
            .to_string();
        if !out.exited {
            problems.push(format!(
                "{} with {var}={value:?} was still running after 40 s",
                side.as_str()
            ));
        } else if out.code == Some(0) {
            problems.push(format!("{} with {var}={value:?} exited 0", side.as_str()));
        } else if line.is_empty() || !line.contains(value) {
            problems.push(format!(
                "{} with {var}={value:?}: no line naming the variable and the value; output:\n{}",
                side.as_str(),
                all.trim()
            ));
        } else if out.service_elapsed > Duration::from_secs(10) {
            problems.push(format!(
                "{} took {:?} to reject {var}={value:?}",
                side.as_str(),
                out.service_elapsed
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// Contracts JSON, compose files, .env.e2e.example files and each service's
/// `--print-env-contract` name the same variables with the same defaults.
fn test_env_contracts_agree_with_compose_and_services() -> anyhow::Result<()> {
    let s = suite();
    let root = repo_root();
    let mut problems = Vec::new();
    for (side, app, svc, fixed) in [
        (
            Side::Sts,
            "sts-service",
            "sts-service",
            &[
                "STS_PORT",
                "HOST",
                "LOG_LEVEL",
                "ASR_MODEL",
                "TRANSLATION_PROVIDER",
                "TTS_PROVIDER",
                "TTS_MODEL",
                "DEVICE",
                "MAX_INFLIGHT",
                "PROCESSING_TIMEOUT",
            ][..],
        ),
        (
            Side::Media,
            "media-service",
            "media-service",
            &[
                "MEDIAMTX_HOST",
                "MEDIAMTX_RTSP_PORT",
                "MEDIAMTX_RTMP_PORT",
                "MEDIAMTX_API_PORT",
                "MEDIA_SERVICE_PORT",
                "STS_SERVICE_URL",
                "LOG_LEVEL",
                "SEGMENT_DIR",
            ][..],
        ),
    ] {
        let contract_path = root.join(format!(
            "specs/019-dual-docker-e2e-infrastructure/contracts/{app}-env.json"
        ));
        let contract = ContractFile::load(&contract_path)?;
        let by_name = contract.by_name();
        for f in fixed {
            if !by_name.contains_key(f) {
                problems.push(format!(
                    "{}: ARCHITECTURE §3 variable {f} missing",
                    contract_path.display()
                ));
            }
        }
        // The service's own parser.
        let out = Pair::run_once(
            &s.settings,
            side,
            &[],
            &["--print-env-contract"],
            Duration::from_secs(30),
        )?;
        if out.code != Some(0) {
            problems.push(format!(
                "{app} --print-env-contract exited {:?}: {}",
                out.code,
                out.stderr.trim()
            ));
        } else {
            let printed =
                contract::parse_printed_contract(&out.stdout).map_err(|e| anyhow!("{app}: {e}"))?;
            let printed_names: BTreeSet<&str> = printed.iter().map(|v| v.name.as_str()).collect();
            let contract_names: BTreeSet<&str> = by_name.keys().copied().collect();
            for missing in printed_names.difference(&contract_names) {
                problems.push(format!(
                    "{app} reads {missing}, which {} does not document",
                    contract_path.display()
                ));
            }
            for extra in contract_names.difference(&printed_names) {
                problems.push(format!(
                    "{} documents {extra}, which {app} does not read",
                    contract_path.display()
                ));
            }
            for v in &printed {
                if let Some(c) = by_name.get(v.name.as_str()) {
                    if c.default != v.default {
                        problems.push(format!(
                            "{app} {}: default {:?} in the service, {:?} in the contract",
                            v.name, v.default, c.default
                        ));
                    }
                }
            }
        }
        // The compose file passes only documented variables.
        let compose_path = root.join(format!("apps/{app}/docker-compose.e2e.yml"));
        let env = contract::compose_environment(&compose_path, svc)?;
        for k in env.keys() {
            if !by_name.contains_key(k.as_str()) {
                problems.push(format!(
                    "{}: {svc} gets {k}, which the contract does not document",
                    compose_path.display()
                ));
            }
        }
        let interpolated = contract::compose_interpolations(&compose_path)?;
        let compose_vars: BTreeSet<&str> = contract
            .compose_variables
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        for k in &interpolated {
            if !by_name.contains_key(k.as_str()) && !compose_vars.contains(k.as_str()) {
                problems.push(format!(
                    "{}: interpolates ${{{k}}}, documented nowhere in the contract",
                    compose_path.display()
                ));
            }
        }
        let example = root.join(format!("apps/{app}/.env.e2e.example"));
        for (k, _) in contract::dotenv(&example)? {
            if !by_name.contains_key(k.as_str()) && !compose_vars.contains(k.as_str()) {
                problems.push(format!("{}: {k} is not in the contract", example.display()));
            }
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// Variables each composition sets itself (container-internal addresses and paths); every
/// other variable of a service's env contract must pass from the caller to the container.
const COMPOSE_FIXED: [(&str, &str, &str); 5] = [
    ("sts-service", "HOST", "0.0.0.0"),
    ("sts-service", "MODEL_DIR", "/var/cache/livedub/models"),
    ("media-service", "MEDIAMTX_HOST", "mediamtx"),
    ("media-service", "MEDIA_SERVICE_HOST", "0.0.0.0"),
    ("media-service", "SEGMENT_DIR", "/tmp/segments"),
];

/// Compose only: every variable of both env contracts reaches its container. Each gets a
/// distinctive value in the caller's environment, and the environment is read back from
/// inside the container (`compose run --entrypoint env`, the image and compose file the
/// suite runs). Self-check: a copy of a compose file missing one variable is caught.
fn test_compose_passes_every_contract_variable() -> anyhow::Result<()> {
    let s = suite();
    let mut problems = Vec::new();
    for (side, app) in [(Side::Sts, "sts-service"), (Side::Media, "media-service")] {
        let file = s.settings.compose_file(side);
        problems.extend(compose_forwarding_problems(side, app, &file)?);
        // The check can fail: drop one pass-through variable from a copy of the file.
        let dropped = match side {
            Side::Sts => "ASR_BEAM_SIZE",
            Side::Media => "STS_BUDGET_MS",
        };
        let text = std::fs::read_to_string(&file)?;
        let broken: String = text
            .lines()
            .filter(|l| l.trim() != format!("{dropped}:"))
            .map(|l| format!("{l}\n"))
            .collect();
        ensure!(
            broken != text,
            "{}: no `{dropped}:` line to drop for the self-check",
            file.display()
        );
        // Next to the original, so its relative paths resolve the same way.
        let copy = file.with_file_name(format!(".e2e-{}-without-{dropped}.yml", s.settings.run_id));
        std::fs::write(&copy, broken)?;
        let caught = compose_forwarding_problems(side, app, &copy);
        let _ = std::fs::remove_file(&copy);
        let caught = caught?;
        ensure!(
            caught.len() == 1 && caught[0].contains(dropped),
            "self-check: a compose file without {dropped} gave {caught:?}, expected one problem naming it"
        );
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// Sets every contract variable of `app` to a distinctive value, runs `env` in the
/// service's container through `file`, and names each variable that did not arrive.
fn compose_forwarding_problems(side: Side, app: &str, file: &Path) -> anyhow::Result<Vec<String>> {
    let s = suite();
    let contract = ContractFile::load(&repo_root().join(format!(
        "specs/019-dual-docker-e2e-infrastructure/contracts/{app}-env.json"
    )))?;
    let fixed: Vec<(&str, &str)> = COMPOSE_FIXED
        .iter()
        .filter(|(a, _, _)| *a == app)
        .map(|(_, k, v)| (*k, *v))
        .collect();
    // Ports must stay numbers (the file maps them); everything else gets a tagged string.
    let mut next_port = 40_001u16;
    let mut sent: Vec<(String, String)> = Vec::new();
    for v in &contract.variables {
        if fixed.iter().any(|(k, _)| *k == v.name) {
            continue;
        }
        let value = if v.name.ends_with("_PORT") {
            next_port += 1;
            next_port.to_string()
        } else {
            format!(
                "e2e-{}-{}",
                v.name.to_lowercase(),
                &s.settings.run_id[s.settings.run_id.len() - 6..]
            )
        };
        sent.push((v.name.clone(), value));
    }
    let mut env = sent.clone();
    let segments = s.settings.log_dir.join("envcheck-segments");
    std::fs::create_dir_all(&segments)?;
    env.push(("E2E_SEGMENTS_DIR".into(), segments.display().to_string()));
    env.push((
        "STS_MODEL_CACHE".into(),
        s.settings.model_cache.display().to_string(),
    ));
    env.push(("MEDIA_SERVICE_USER".into(), compose::host_user()));
    static CHECKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let label = format!(
        "envcheck{}",
        CHECKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut project = s.settings.project(&label, side)?;
    project.file = file.to_path_buf();
    let result = project.run(
        &env,
        &["run", "--rm", "--no-deps", "-T", "--entrypoint", "env", app],
    );
    project.down()?;
    let inside: std::collections::BTreeMap<String, String> = result?
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut problems = Vec::new();
    for (k, v) in sent
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(fixed.iter().copied())
    {
        match inside.get(k) {
            Some(got) if got == v => {}
            Some(got) => problems.push(format!(
                "{}: {app} sees {k}={got:?}, expected {v:?}",
                file.display()
            )),
            None => problems.push(format!(
                "{}: {k} does not reach {app} (the compose file does not name it)",
                file.display()
            )),
        }
    }
    Ok(problems)
}

/// The least healthcheck interval of a container: nothing waits on the engine's checks
/// (twelve containers checked every 2 s took a third of a core on 2 cores).
const MIN_SERVICE_HEALTHCHECK_MS: u64 = 10_000;

/// Both compose files are valid and have what the e2e setup relies on.
fn test_compose_files_validate() -> anyhow::Result<()> {
    let root = repo_root();
    let mut problems = Vec::new();
    let media = root.join("apps/media-service/docker-compose.e2e.yml");
    let sts = root.join("apps/sts-service/docker-compose.e2e.yml");
    for f in [&media, &sts] {
        match contract::validate_compose_file(f) {
            Ok(Some(_)) => {}
            Ok(None) => eprintln!("[e2e] note: neither docker-compose nor docker compose is installed; structure checked only"),
            Err(e) => problems.push(e.to_string()),
        }
        let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(f)?)?;
        let services = doc["services"]
            .as_mapping()
            .ok_or_else(|| anyhow!("{}: no services", f.display()))?;
        for (name, svc) in services {
            let name = name.as_str().unwrap_or("?");
            let hc = &svc["healthcheck"];
            if hc.is_null() {
                problems.push(format!("{}: {name} has no healthcheck", f.display()));
            } else if hc["interval"].is_null() {
                problems.push(format!("{}: {name}'s healthcheck has no explicit interval (the 30 s default delays start-up)", f.display()));
            } else {
                // Each check costs the engine a `docker exec` (~60 ms of CPU); the suite
                // probes the containers' endpoints itself.
                let interval = hc["interval"].as_str().unwrap_or("");
                match contract::compose_duration_ms(interval) {
                    Some(ms) if ms >= MIN_SERVICE_HEALTHCHECK_MS => {}
                    _ => problems.push(format!(
                        "{}: {name}'s healthcheck interval {interval:?} is not a duration of at least {MIN_SERVICE_HEALTHCHECK_MS} ms",
                        f.display()
                    )),
                }
            }
        }
    }
    let doc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&media)?)?;
    let ms = &doc["services"]["media-service"];
    let hosts = serde_yaml::to_string(&ms["extra_hosts"])?;
    if !hosts.contains("host.docker.internal") || !hosts.contains("host-gateway") {
        problems.push("media-service lacks extra_hosts host.docker.internal:host-gateway".into());
    }
    let deps = serde_yaml::to_string(&ms["depends_on"])?;
    // Started beside the media server: waiting for its first healthcheck would hold
    // media-service back a whole interval; its discovery retries the API until it answers.
    if !deps.contains("mediamtx") || !deps.contains("service_started") {
        problems.push(format!(
            "media-service must depend on mediamtx with condition service_started, found {}",
            deps.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    let mtx = serde_yaml::to_string(&doc["services"]["mediamtx"])?;
    if !mtx.contains("bluenviron/mediamtx") || !mtx.contains("/v3/paths/list") {
        problems
            .push("mediamtx must run bluenviron/mediamtx with a /v3/paths/list healthcheck".into());
    }
    let sdoc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&sts)?)?;
    if sdoc["volumes"].as_mapping().is_none_or(|m| m.is_empty()) {
        problems.push("sts-service composition has no model-cache volume".into());
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// Unit check of the number reader used by the transcript test (runs with the suite so a
/// broken reader cannot hide a broken STS).
fn test_number_reader() -> anyhow::Result<()> {
    let cases: [(&str, &[u32]); 6] = [
        ("1, 2, 3, 4, 5, 6.", &[1, 2, 3, 4, 5, 6]),
        ("Twenty-one, twenty two, 23", &[21, 22, 23]),
        ("Uno, dos, tres, cuatro, cinco, seis.", &[1, 2, 3, 4, 5, 6]),
        (
            "veintidós, veintitres, treinta y uno, dieciséis",
            &[22, 23, 31, 16],
        ),
        (
            "Seven, eight, nine, ten, eleven, twelve",
            &[7, 8, 9, 10, 11, 12],
        ),
        ("no numbers here", &[]),
    ];
    for (text, want) in cases {
        let got = numbers_in(text);
        ensure!(
            got == want,
            "numbers_in({text:?}) = {got:?}, expected {want:?}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Two real-STS streams at once natively (the STS batches ASR and its crate is
/// optimised: a fragment's ASR 0.25 s alone). Natively the suite took 415 s with two
/// against 570 s with one slot and the earlier STS; with compose 265 s with two against
/// 398 s with one (2026-12-06, every fragment of every test dubbed in both). Before the
/// batching, two at once pushed ASR to p90 5 s / max 10 s per fragment.
const DEFAULT_STREAM_SLOTS: u32 = 2;
/// One on the compose backend: on a slower 2-core machine (AMD EPYC, 2026-12-07) two
/// streams at once beside the four compositions' containers took the STS's ASR from
/// 0.5 s per fragment (alone in compose, and natively with two) to p50 0.9-1.4 s, p90
/// 2.8 s, max 7.6 s, and two of three fresh-clone runs had speech fragments time out.
const DEFAULT_COMPOSE_STREAM_SLOTS: u32 = 1;

/// Runs `fut`, which publishes `n` streams, once that fits in the `E2E_STREAM_SLOTS`
/// budget. With one slot every stream test runs alone (the concurrency test's two streams
/// together): the echo pairs' streams take turns too, since a real-STS stream that shares
/// the 2 cores with them (and with the suite's start-up) saw 6-9 s of ASR per fragment.
async fn with_slot<T>(n: u32, fut: impl std::future::Future<Output = T>) -> T {
    let s = suite();
    let capacity = s.slots.max(2);
    let permits = (n * capacity / s.slots.max(1)).clamp(1, capacity);
    let _permit = s
        .stream_slots
        .clone()
        .acquire_many_owned(permits)
        .await
        .expect("semaphore open");
    s.stagger(Duration::from_millis(3000)).await;
    fut.await
}

/// Lines of every log of every pair that mention `needle`, plus the tail of each log.
fn log_context(needle: &str) -> String {
    let s = suite();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&s.settings.log_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    // Compose logs live in the engine until fetched.
    if s.settings.backend == BackendKind::Compose {
        for p in s.pairs.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            files.extend(p.log_files());
        }
        files.sort();
        files.dedup();
    }
    files.sort();
    let mut text = String::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let own = name.starts_with(needle);
        let matching = grep_file(&f, needle, 30);
        if own || !matching.is_empty() {
            let lines = if own { tail_file(&f, 30) } else { matching };
            text.push_str(&format!(
                "---- {} ----\n{}\n",
                f.display(),
                lines.join("\n")
            ));
        }
    }
    for info in [s.main.get(), s.slow.get()].into_iter().flatten().flatten() {
        for f in &info.log_files {
            text.push_str(&format!(
                "---- {} (last 15 lines) ----\n{}\n",
                f.display(),
                tail_file(f, 15).join("\n")
            ));
        }
    }
    text
}

/// What an async test body returns.
type TestFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + Send>>;

enum Body {
    Sync(fn() -> anyhow::Result<()>),
    Async(fn() -> TestFuture),
}

fn run_body(name: &'static str, body: &Body) -> Result<(), Failed> {
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match body {
        Body::Sync(f) => f(),
        Body::Async(f) => suite().rt.block_on(f()),
    }));
    let err = match outcome {
        Ok(Ok(())) => {
            eprintln!(
                "[e2e] {name} passed in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            format!("panicked: {msg}")
        }
    };
    // CI shows only the tail of the output, and the log excerpts below can be long:
    // keep the cause for the one-line summary printed after everything else.
    FAILURES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!(
            "{name} (after {:.1}s): {}",
            started.elapsed().as_secs_f64(),
            first_lines(&err, 6)
        ));
    let stream = stream_name(name);
    // The concurrency test uses two names with a common prefix.
    let needle = if name.contains("concurrent") {
        stream_name("test_concurrent")
    } else {
        stream.clone()
    };
    Err(format!(
        "{err}\n(after {:.1}s; logs in {})\n==== logs mentioning {needle} ====\n{}",
        started.elapsed().as_secs_f64(),
        suite().settings.log_dir.display(),
        log_context(&needle)
    )
    .into())
}

/// Causes of the failed tests, for the summary at the end of the run.
static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// At most `n` lines of `text`, with a marker when some were left out.
fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[..lines.len().min(n)].join("\n    ");
    if lines.len() > n {
        out.push_str(&format!(
            "\n    ... ({} more lines above the log excerpts)",
            lines.len() - n
        ));
    }
    out
}

macro_rules! sync_test {
    ($f:ident) => {
        (stringify!($f), Body::Sync($f))
    };
}
macro_rules! async_test {
    ($f:ident) => {
        (stringify!($f), Body::Async(|| Box::pin($f())))
    };
}

/// Tests that check the compositions themselves (ignored on the native backend).
const COMPOSE_ONLY: [&str; 1] = ["test_compose_passes_every_contract_variable"];
/// Tests that kill and restart service processes (ignored on the compose backend, which
/// runs the same suite a second time in CI).
const NATIVE_ONLY: [&str; 1] = ["test_soak_short_faults_recover"];

fn main() {
    let mut args = Arguments::from_args();
    let tests: Vec<(&'static str, Body)> = vec![
        sync_test!(test_fixture_properties),
        sync_test!(test_number_reader),
        sync_test!(test_compose_files_validate),
        sync_test!(test_env_contracts_agree_with_compose_and_services),
        sync_test!(test_bad_env_value_fails_fast),
        async_test!(test_services_can_communicate),
        async_test!(test_full_pipeline_media_to_sts_to_output),
        async_test!(test_sts_processes_real_audio),
        async_test!(test_output_stream_is_playable),
        async_test!(test_output_av_sync_within_120ms),
        async_test!(test_output_audio_fingerprints_dubbed_vs_fallback),
        async_test!(test_voice_over_keeps_the_bed_and_no_speech_keeps_the_original),
        async_test!(test_fallback_when_sts_slower_than_deadline),
        async_test!(test_two_concurrent_streams_do_not_interfere),
        async_test!(test_media_service_compose_starts),
        async_test!(test_env_config_overrides),
        async_test!(test_soak_short_faults_recover),
        sync_test!(test_compose_passes_every_contract_variable),
    ];
    if args.list {
        let trials = tests
            .into_iter()
            .map(|(n, _)| Trial::test(n, || Ok(())))
            .collect();
        libtest_mimic::run(&args, trials).exit();
    }
    // Tests mostly wait on real-time streams: run them all at once; the stream slots
    // bound the load on the real STS.
    if args.test_threads.is_none() {
        args.test_threads = Some(tests.len());
    }
    let settings =
        match Settings::from_env(&repo_root()).and_then(|s| s.check_prerequisites().map(|_| s)) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("[e2e] cannot run the suite: {e:#}");
                std::process::exit(2);
            }
        };
    let slots: u32 = std::env::var("E2E_STREAM_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(match settings.backend {
            BackendKind::Compose => DEFAULT_COMPOSE_STREAM_SLOTS,
            _ => DEFAULT_STREAM_SLOTS,
        });
    eprintln!(
        "[e2e] run {} on the {} backend{}; logs in {} ({} concurrent test streams)",
        settings.run_id,
        settings.backend.as_str(),
        settings
            .compose
            .as_ref()
            .map(|t| format!(" with {}", t.describe()))
            .unwrap_or_default(),
        settings.log_dir.display(),
        slots
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _ = SUITE.set(Suite {
        settings: settings.clone(),
        rt,
        stream_slots: Arc::new(tokio::sync::Semaphore::new(slots.max(2) as usize)),
        slots,
        last_publish: tokio::sync::Mutex::new(None),
        main: OnceLock::new(),
        slow: OnceLock::new(),
        pairs: Mutex::new(Vec::new()),
    });
    install_interrupt_handler();
    let started = Instant::now();
    let trials = tests
        .into_iter()
        .map(|(name, body)| {
            let ignored = (COMPOSE_ONLY.contains(&name)
                && settings.backend != BackendKind::Compose)
                || (NATIVE_ONLY.contains(&name) && settings.backend != BackendKind::Native);
            Trial::test(name, move || run_body(name, &body)).with_ignored_flag(ignored)
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    suite().teardown();
    let leftovers = check_nothing_left(&settings);
    eprintln!(
        "[e2e] run {} finished in {:.1}s; logs kept in {}",
        settings.run_id,
        started.elapsed().as_secs_f64(),
        settings.log_dir.display()
    );
    let failures = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
    if !failures.is_empty() {
        eprintln!("[e2e] {} failed:", failures.len());
        for f in failures.iter() {
            eprintln!("  - {f}");
        }
    }
    if let Err(e) = leftovers {
        eprintln!("[e2e] FAILED after the tests: {e:#}");
        std::process::exit(101);
    }
    conclusion.exit();
}

/// After the compose run: no container, network or volume of this run's projects may be
/// left in the engine. Whatever is found is removed, and the run fails.
fn check_nothing_left(settings: &Settings) -> anyhow::Result<()> {
    if settings.backend != BackendKind::Compose {
        return Ok(());
    }
    let prefix = settings.project_prefix();
    // The check can fail: it must find what a project leaves behind.
    compose::self_check_leftovers(&prefix)?;
    let left = compose::leftovers(&prefix)?;
    if left.is_empty() {
        eprintln!("[e2e] teardown check: no container, network or volume of {prefix}-* left");
        return Ok(());
    }
    compose::remove(&left);
    bail!(
        "teardown left {} thing(s) of this run in the Docker engine (removed now):\n  {}",
        left.len(),
        left.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n  ")
    )
}
