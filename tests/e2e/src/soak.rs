//! The soak: one live stream for many minutes through a pair with the real STS, with
//! faults injected on a schedule (publisher stall, publisher reconnect, STS killed and
//! restarted, media server restarted) while the dubbed output is recorded; then the
//! figures of docs/e2e.md "Soak": output gaps, fragments dubbed outside the fault windows,
//! time from each fault's end to the next dubbed fragment, the services' resources at
//! start and end, and the output's A/V offset at start and end.
//!
//! `make soak` runs it for SOAK_MINUTES (the `soak` binary); the e2e suite runs a short
//! plan with one fault of each kind (`test_soak_short_faults_recover`). Native backend.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

use crate::analyzer::{median, SyncMarks};
use crate::media::{LiveRecorder, Publisher, RecordedSegment};
use crate::process::ProcStats;
use crate::stack::{Pair, PairSpec, Ports, Side};

/// A fault the soak injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// The publisher freezes (SIGSTOP) for [`Plan::stall`], its connection open.
    PublisherStall,
    /// The publisher goes away and comes back on the same name after
    /// [`Plan::reconnect_pause`], going on with the live content.
    PublisherReconnect,
    /// The STS is killed (SIGKILL) and started again (real models).
    StsRestart,
    /// The media server is restarted; the publisher reconnects once it is back.
    MediaServerRestart,
}

impl FaultKind {
    /// One of each, in the order a plan cycles through them.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::PublisherStall,
        FaultKind::PublisherReconnect,
        FaultKind::StsRestart,
        FaultKind::MediaServerRestart,
    ];

    /// Short name for tables and progress lines.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::PublisherStall => "publisher stall",
            FaultKind::PublisherReconnect => "publisher reconnect",
            FaultKind::StsRestart => "STS kill+restart",
            FaultKind::MediaServerRestart => "media server restart",
        }
    }
}

/// What a soak runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How long the stream is published.
    pub duration: Duration,
    /// Stream time before the first fault.
    pub warmup: Duration,
    /// Between the starts of two faults.
    pub spacing: Duration,
    /// The faults, cycled.
    pub kinds: Vec<FaultKind>,
    /// How long a stall lasts.
    pub stall: Duration,
    /// How long a reconnecting publisher stays away.
    pub reconnect_pause: Duration,
    /// After a fault's end, fragments still count as inside its window for this long (the
    /// STS may still be loading, the media-service backing off, a new worker starting).
    pub settle: Duration,
    /// FRAGMENT_DURATION_MS of the media-service.
    pub fragment_ms: u64,
    /// STS_BUDGET_MS of the media-service (the output delay follows from it).
    pub sts_budget_ms: u64,
}

/// DEADLINE_MARGIN_MS (the media-service's default).
const MARGIN_MS: u64 = 500;

impl Plan {
    /// A soak of `minutes`: 90 s of warm-up, then a fault every 90 s, cycling through
    /// the four kinds.
    pub fn minutes(minutes: f64) -> Self {
        Self {
            duration: Duration::from_secs_f64(minutes * 60.0),
            warmup: Duration::from_secs(90),
            spacing: Duration::from_secs(90),
            ..Self::short()
        }
    }

    /// About three minutes: one fault of each kind, 35 s apart.
    pub fn short() -> Self {
        Self {
            duration: Duration::from_secs(175),
            warmup: Duration::from_secs(35),
            spacing: Duration::from_secs(35),
            kinds: FaultKind::ALL.to_vec(),
            stall: Duration::from_secs(3),
            reconnect_pause: Duration::from_secs(2),
            settle: Duration::from_secs(15),
            fragment_ms: 6000,
            // As the suite's main pair: a shared 2-core machine needs more than 2.5 s now
            // and then.
            sts_budget_ms: 4000,
        }
    }

    /// The media-service's output delay D (OUTPUT_DELAY_MS's default for this plan).
    pub fn output_delay(&self) -> Duration {
        Duration::from_millis(self.fragment_ms + self.sts_budget_ms + MARGIN_MS)
    }

    /// Fault start times (from the stream's start), each leaving a whole spacing to
    /// recover before the stream ends.
    pub fn schedule(&self) -> Vec<(Duration, FaultKind)> {
        let mut out = Vec::new();
        let mut at = self.warmup;
        while !self.kinds.is_empty() && at + self.spacing <= self.duration {
            out.push((at, self.kinds[out.len() % self.kinds.len()]));
            at += self.spacing;
        }
        out
    }

    /// The pair a soak runs on: the product's defaults but for discovery at its default
    /// poll, fragment artifacts on (fragments.jsonl is read) and the plan's STS budget.
    pub fn pair_spec(&self, label: &str, ports: Ports) -> PairSpec {
        PairSpec::new(label, ports)
            .media("DISCOVERY", "true")
            .media("SEGMENT_ARTIFACTS", "true")
            .media("FRAGMENT_DURATION_MS", self.fragment_ms)
            .media("STS_BUDGET_MS", self.sts_budget_ms)
    }
}

/// Where the soak keeps its source: `$LIVEDUB_CACHE/soak` (default `/var/cache/livedub`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LIVEDUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/livedub".into())
        .join("soak")
}

/// The sync marks drawn into a picture ([`SyncMarks::SOAK`]): a black 64x64 square at
/// (8, 8) that turns white for one frame at every whole second.
const MARK_BOX: &str = "drawbox=x=8:y=8:w=64:h=64:color=black:t=fill,\
    drawbox=x=8:y=8:w=64:h=64:color=white:t=fill:enable='lt(mod(t+0.001\\,1)\\,0.02)'";
/// Their audio half, as an ffmpeg lavfi source: a 60 ms 9 kHz burst at every whole second.
const MARK_TONE: &str =
    "aevalsrc=exprs='0.5*sin(2*PI*9000*t)*lt(mod(t\\,1)\\,0.06)':s=48000:c=mono";
/// H.264 the way the fixture has it: 1 s GOPs, no B-frames, no SEI (the local media server
/// would split access units on them).
const MARK_X264: [&str; 14] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-crf",
    "30",
    "-g",
    "30",
    "-bf",
    "0",
    "-pix_fmt",
    "yuv420p",
    "-bsf:v",
    "filter_units=remove_types=6",
];

/// Runs ffmpeg making a marked file at `out` (written to a temporary name, checked for
/// marks in sync over its last 14 s, then renamed). `inputs` come before the marks' tone
/// source; `video`/`audio` are filter chains from `[0:v]`/`[0:a]` and the tone `[{n}:a]`
/// (n = number of inputs) to `[v]`/`[a]`.
fn make_marked(
    out: &Path,
    what: &str,
    inputs: &[&str],
    filters: &str,
    seconds: u64,
) -> anyhow::Result<()> {
    let partial = crate::temp_beside(out, "mp4");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(inputs)
        .args(["-f", "lavfi", "-i", MARK_TONE])
        .args(["-filter_complex", filters])
        .args(["-map", "[v]", "-map", "[a]", "-t", &seconds.to_string()])
        .args(MARK_X264)
        .args(["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-f", "mp4"])
        .arg(&partial)
        .output()
        .context("running ffmpeg")?;
    if !o.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "ffmpeg could not make the {what}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    if let Err(e) = check_marks_in_sync(&partial, seconds) {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("the {what} is unusable")));
    }
    std::fs::rename(&partial, out)?;
    Ok(())
}

/// The soak's source: the counting fixture looped for `seconds`, 640x360, with a burnt-in
/// clock (stream time) and a sync mark every second ([`SyncMarks::SOAK`]: a white square
/// in the top-left corner and a 60 ms 9 kHz burst). Made once and kept in `cache_dir`.
pub fn make_source(cache_dir: &Path, seconds: u64) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    let out = cache_dir.join(format!("soak-source-v2-{seconds}s.mp4"));
    if out.is_file() {
        return Ok(out);
    }
    let video = format!(
        "[0:v]scale=640:360,fps=30,{MARK_BOX},\
        drawtext=text='%{{pts\\:hms}}':x=90:y=20:fontsize=32:fontcolor=yellow:box=1:boxcolor=black[v]"
    );
    // `aresample=async`: the looped fixture's audio follows its timestamps (each loop
    // point costs the AAC priming otherwise), so the marks stay in sync for hours. v1 of
    // the source lacked it and drifted +0.6 ms per second (+189 ms at 5 min, over a second
    // at 25 min): that drift, not the service, was the soak's "A/V offset per appearance".
    let audio =
        "[0:a]aresample=async=1:first_pts=0,aformat=sample_rates=48000:channel_layouts=stereo[s];\
        [1:a]aformat=channel_layouts=stereo[b];[s][b]amix=inputs=2:normalize=0:duration=first[a]";
    let fixture = crate::fixture_path().display().to_string();
    make_marked(
        &out,
        "soak source",
        &["-stream_loop", "-1", "-i", &fixture],
        &format!("{video};{audio}"),
        seconds,
    )?;
    Ok(out)
}

/// The counting fixture with the soak's sync marks ([`SyncMarks::SOAK`]) and otherwise as
/// it is (1280x720, 30 fps, 1 s GOPs, AAC 48 kHz stereo, 30 s): a flash and a 9 kHz burst
/// at every whole second, where each number starts. The bursts are above what the STS
/// hears, so the speech is dubbed as in the plain fixture. Made once and kept in `dir`.
pub fn make_marked_fixture(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = dir.join("30s-counting-english-marked-v1.mp4");
    if out.is_file() {
        return Ok(out);
    }
    let fixture = crate::fixture_path().display().to_string();
    let filters = format!(
        "[0:v]{MARK_BOX}[v];[0:a]aformat=sample_rates=48000:channel_layouts=stereo[s];\
        [1:a]aformat=channel_layouts=stereo[b];[s][b]amix=inputs=2:normalize=0:duration=first[a]"
    );
    make_marked(&out, "marked fixture", &["-i", &fixture], &filters, 30)?;
    Ok(out)
}

/// Largest A/V offset of the soak source's own marks at its end (ms): the measure of the
/// output is only as good as the source.
const SOURCE_SYNC_MS: f64 = 15.0;

/// Refuses a source whose marks are out of sync by its end (a fixture that drifts would
/// be blamed on the service).
fn check_marks_in_sync(source: &Path, seconds: u64) -> anyhow::Result<()> {
    let from = seconds.saturating_sub(14);
    let tail = source.with_extension("tail.mkv");
    let o = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-nostdin",
            "-y",
            "-ss",
            &from.to_string(),
            "-i",
        ])
        .arg(source)
        .args(["-t", "12", "-c", "copy"])
        .arg(&tail)
        .output()
        .context("running ffmpeg")?;
    ensure!(
        o.status.success(),
        "cutting the soak source's end: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    let offsets = SyncMarks::SOAK.av_offsets(&tail);
    let _ = std::fs::remove_file(&tail);
    let offsets = offsets?;
    ensure!(
        offsets.len() >= 5,
        "the soak source's end has {} sync marks, expected about 12",
        offsets.len()
    );
    let ms = median(offsets.iter().map(|o| o * 1000.0).collect());
    ensure!(
        ms.abs() <= SOURCE_SYNC_MS,
        "the soak source drifts: its marks are {ms:+.0} ms apart at {from} s (allowed {SOURCE_SYNC_MS} ms)"
    );
    Ok(())
}

/// A fragment of fragments.jsonl, stamped when it appeared there.
#[derive(Debug, Clone)]
pub struct SeenFragment {
    /// Its sequence number.
    pub sequence: u64,
    /// `processed`, `no_speech`, `fallback`, `failed`.
    pub status: String,
    /// Its length (s).
    pub duration_s: f64,
    /// When its input started (s since the soak's start): the line's arrival, plus the
    /// slack it was pushed with, minus the deadline's distance from the fragment's start
    /// (D - margin). Good to the polling interval (0.1 s).
    pub start_s: f64,
}

/// Follows a fragments.jsonl as the media-service appends to it.
struct FragmentTail {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<SeenFragment>>>,
    thread: Option<JoinHandle<()>>,
}

impl FragmentTail {
    fn start(path: PathBuf, epoch: Instant, deadline_s: f64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut offset = 0u64;
                let mut partial = String::new();
                loop {
                    let last_round = stop.load(Ordering::SeqCst);
                    let mut text = String::new();
                    if let Ok(mut f) = std::fs::File::open(&path) {
                        if f.seek(SeekFrom::Start(offset)).is_ok() {
                            if let Ok(n) = f.read_to_string(&mut text) {
                                offset += n as u64;
                            }
                        }
                    }
                    let now = epoch.elapsed().as_secs_f64();
                    partial.push_str(&text);
                    while let Some(end) = partial.find('\n') {
                        let line: String = partial.drain(..=end).collect();
                        if let Ok(v) = serde_json::from_str::<Value>(&line) {
                            let slack_s = v["slack_ms"].as_f64().unwrap_or(0.0) / 1000.0;
                            lock(&seen).push(SeenFragment {
                                sequence: v["sequence"].as_u64().unwrap_or(0),
                                status: v["status"].as_str().unwrap_or("?").to_string(),
                                duration_s: v["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                                start_s: now + slack_s - deadline_s,
                            });
                        }
                    }
                    if last_round {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<SeenFragment> {
        lock(&self.seen).clone()
    }

    fn finish(mut self) -> Vec<SeenFragment> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen()
    }
}

/// A fault as it happened (seconds since the soak's start).
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// Which fault.
    pub kind: FaultKind,
    /// When it began.
    pub start_s: f64,
    /// When it was over: the publisher sending again (stall), the input listed again on
    /// the media server (reconnect, media server restart), the STS healthy again.
    pub end_s: f64,
}

/// Resources of one service at the start and the end of the soak.
#[derive(Debug, Clone)]
pub struct ResourceRow {
    /// Which service (and which of its processes).
    pub service: String,
    /// At the end of the warm-up (or the first sample of this process).
    pub start: Option<ProcStats>,
    /// Just before the publisher stopped.
    pub end: Option<ProcStats>,
}

impl ResourceRow {
    /// Relative RSS change (end / start - 1), when both are known.
    pub fn rss_growth(&self) -> Option<f64> {
        match (self.start, self.end) {
            (Some(s), Some(e)) if s.rss_kib > 0 => Some(e.rss_kib as f64 / s.rss_kib as f64 - 1.0),
            _ => None,
        }
    }
}

/// What happened after one fault.
#[derive(Debug, Clone)]
pub struct FaultResult {
    /// The fault.
    pub fault: FaultRecord,
    /// Start of the first dubbed fragment that ends after the fault's end, minus the
    /// fault's end (s; negative when that fragment began before the end). `None`: none.
    pub dubbed_after_s: Option<f64>,
    /// Seconds of output missing in the gaps attributed to this fault (gaps that began
    /// from 1 s before it started to 1 s before the next one started).
    pub output_gap_s: f64,
}

/// A/V offset of the output over a window.
#[derive(Debug, Clone, Copy)]
pub struct AvOffset {
    /// Median of the marks' (audio - video) offsets (ms).
    pub median_ms: f64,
    /// Marks found.
    pub marks: usize,
}

/// Everything a soak measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The stream's name.
    pub name: String,
    /// The output delay D.
    pub delay_s: f64,
    /// How long the stream was published (s).
    pub published_s: f64,
    /// The faults and what followed each.
    pub faults: Vec<FaultResult>,
    /// Fragments by status.
    pub statuses: BTreeMap<String, usize>,
    /// Fragments outside every fault window.
    pub outside: usize,
    /// Of those, dubbed (`processed`).
    pub outside_dubbed: usize,
    /// When the output first arrived (s since the start).
    pub first_output_s: Option<f64>,
    /// Output gaps (wall-clock spans without audio or video, s since the start).
    pub gaps: Vec<(f64, f64)>,
    /// Recorded connections (the output's appearances).
    pub segments: usize,
    /// Resources of the services.
    pub resources: Vec<ResourceRow>,
    /// A/V offset over the first minute of output (up to 60 s, from its 3rd second).
    pub av_start: Option<AvOffset>,
    /// A/V offset over the last minute of output.
    pub av_end: Option<AvOffset>,
    /// Things that went wrong in the harness (a publisher that died by itself, ...).
    pub incidents: Vec<String>,
}

impl Report {
    /// Seconds of output missing in total.
    pub fn missing_s(&self) -> f64 {
        self.gaps.iter().map(|(a, b)| b - a).sum()
    }

    /// Share of the fragments outside the fault windows that were dubbed (NaN: none).
    pub fn share_dubbed_outside(&self) -> f64 {
        self.outside_dubbed as f64 / self.outside as f64
    }

    /// What makes a soak fail outright (the soak command's exit status): no output, no
    /// dubbing, a fault that dubbing never came back from, a service gone at the end.
    pub fn gross_failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.first_output_s.is_none() {
            out.push("no output was ever recorded".to_string());
        }
        if self.statuses.get("processed").copied().unwrap_or(0) == 0 {
            out.push("no fragment was dubbed".to_string());
        }
        for f in &self.faults {
            if f.dubbed_after_s.is_none() {
                out.push(format!(
                    "no fragment was dubbed after the {} at {:.0} s",
                    f.fault.kind.as_str(),
                    f.fault.start_s
                ));
            }
        }
        for r in &self.resources {
            if r.start.is_some() && r.end.is_none() && !r.service.contains("first process") {
                out.push(format!("{} was gone at the end", r.service));
            }
        }
        out
    }

    /// The figures as a table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let total: usize = self.statuses.values().sum();
        let statuses = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            t,
            "soak of stream {} ({:.1} min published, output delay D = {:.1} s)",
            self.name,
            self.published_s / 60.0,
            self.delay_s
        );
        let _ = writeln!(t, "  {:<52} {total}: {statuses}", "fragments");
        let _ = writeln!(
            t,
            "  {:<52} {:.1} % ({} of {})",
            "dubbed outside fault windows (goal 100 %)",
            100.0 * self.share_dubbed_outside(),
            self.outside_dubbed,
            self.outside
        );
        let longest = self.gaps.iter().map(|(a, b)| b - a).fold(0.0, f64::max);
        let _ = writeln!(
            t,
            "  {:<52} {:.1} s in {} gaps (longest {:.1} s); {} output appearances",
            "output missing (wall clock, after the first output)",
            self.missing_s(),
            self.gaps.len(),
            longest,
            self.segments
        );
        let _ = writeln!(
            t,
            "  {:<52} {}",
            "first output after the publish started",
            self.first_output_s
                .map_or("never".into(), |s| format!("{s:.1} s"))
        );
        let av = |a: Option<AvOffset>| {
            a.map_or("not measured".into(), |a| {
                format!("{:+.0} ms ({} marks)", a.median_ms, a.marks)
            })
        };
        let _ = writeln!(
            t,
            "  {:<52} start {}, end {}",
            "output A/V offset (audio - video)",
            av(self.av_start),
            av(self.av_end)
        );
        let _ = writeln!(t, "  faults (s since the publish started; 'dubbed after': first dubbed fragment's start - fault end; the viewer hears it D later):");
        let _ = writeln!(
            t,
            "    {:<22} {:>8} {:>8} {:>14} {:>12}",
            "fault", "start", "end", "dubbed after", "output gap"
        );
        for f in &self.faults {
            let _ = writeln!(
                t,
                "    {:<22} {:>8.1} {:>8.1} {:>14} {:>10.1} s",
                f.fault.kind.as_str(),
                f.fault.start_s,
                f.fault.end_s,
                f.dubbed_after_s
                    .map_or("never".into(), |s| format!("{s:+.1} s")),
                f.output_gap_s
            );
        }
        let _ = writeln!(
            t,
            "  resources (start: end of warm-up; end: before the publisher stopped):"
        );
        let _ = writeln!(
            t,
            "    {:<28} {:>18} {:>18} {:>9} {:>9}",
            "service", "RSS MiB start/end", "threads start/end", "fds s/e", "RSS chg"
        );
        for r in &self.resources {
            let f = |p: Option<ProcStats>, g: fn(&ProcStats) -> u64| {
                p.map_or("-".into(), |p| g(&p).to_string())
            };
            let mib = |p: Option<ProcStats>| {
                p.map_or("-".into(), |p| format!("{:.1}", p.rss_kib as f64 / 1024.0))
            };
            let _ = writeln!(
                t,
                "    {:<28} {:>18} {:>18} {:>9} {:>9}",
                r.service,
                format!("{}/{}", mib(r.start), mib(r.end)),
                format!("{}/{}", f(r.start, |p| p.threads), f(r.end, |p| p.threads)),
                format!("{}/{}", f(r.start, |p| p.fds), f(r.end, |p| p.fds)),
                r.rss_growth()
                    .map_or("-".into(), |g| format!("{:+.1} %", g * 100.0))
            );
        }
        for i in &self.incidents {
            let _ = writeln!(t, "  incident: {i}");
        }
        t
    }
}

/// Runs `plan` on `pair` (native backend: faults act on its processes), publishing
/// `source` as stream `name`; logs and recordings go to `log_dir`. Progress lines go to
/// stderr (every fault, every minute).
pub fn run(
    pair: &mut Pair,
    plan: &Plan,
    name: &str,
    source: &Path,
    log_dir: &Path,
) -> anyhow::Result<Report> {
    let epoch = Instant::now();
    let delay = plan.output_delay();
    let deadline_s = (delay.as_millis() as u64 - MARGIN_MS) as f64 / 1000.0;
    let server = pair.media_server();
    let tail = FragmentTail::start(
        pair.segment_dir().join(name).join("fragments.jsonl"),
        epoch,
        deadline_s,
    );
    let recorder = LiveRecorder::start(
        &server,
        name,
        &log_dir.join(format!("{name}-output")),
        &log_dir.join(format!("{name}-recorder.log")),
        epoch,
    );
    let publish_log = log_dir.join(format!("{name}-publisher.log"));
    let publish =
        |offset: Duration| Publisher::start_at(&server, name, source, &publish_log, offset);
    let wait_listed = |within: Duration| server.wait_input_listed(name, within).is_some();
    let say = |text: &str| {
        let s = epoch.elapsed().as_secs();
        eprintln!("[soak] {:02}:{:02} {text}", s / 60, s % 60);
    };
    let sample = |pair: &Pair, side: Side| pair.service_pid(side).and_then(ProcStats::of);

    let mut publisher = publish(Duration::ZERO)?;
    say(&format!(
        "publishing {name} for {:.1} min; faults: {}",
        plan.duration.as_secs_f64() / 60.0,
        plan.schedule().len()
    ));
    let schedule = plan.schedule();
    let mut next = 0usize;
    let mut faults: Vec<FaultRecord> = Vec::new();
    let mut incidents = Vec::new();
    let (mut media_start, mut sts_start, mut sts_last_start) = (None, None, None);
    let mut sts_sample_due: Option<Duration> = None;
    let mut sts_restarts = 0;
    let mut next_minute = Duration::from_secs(60);
    let sample_at = plan.warmup.min(plan.duration) - Duration::from_secs(1).min(plan.warmup);
    while epoch.elapsed() < plan.duration {
        let now = epoch.elapsed();
        if media_start.is_none() && now >= sample_at {
            media_start = sample(pair, Side::Media);
            sts_start = sample(pair, Side::Sts);
        }
        if sts_sample_due.is_some_and(|t| now >= t) {
            sts_last_start = sample(pair, Side::Sts);
            sts_sample_due = None;
        }
        if next < schedule.len() && now >= schedule[next].0 {
            let kind = schedule[next].1;
            next += 1;
            say(&format!(
                "fault {next}/{}: {}",
                schedule.len(),
                kind.as_str()
            ));
            let start_s = epoch.elapsed().as_secs_f64();
            let mut note = String::new();
            match kind {
                FaultKind::PublisherStall => {
                    publisher.pause();
                    std::thread::sleep(plan.stall);
                    publisher.resume();
                }
                FaultKind::PublisherReconnect => {
                    publisher.stop();
                    std::thread::sleep(plan.reconnect_pause);
                    publisher = publish(epoch.elapsed())?;
                    if !wait_listed(Duration::from_secs(15)) {
                        note = " (input not listed again within 15 s)".into();
                    }
                }
                FaultKind::StsRestart => {
                    pair.kill_sts()?;
                    pair.start_side(Side::Sts)?;
                    sts_restarts += 1;
                    sts_sample_due = Some(epoch.elapsed() + plan.settle);
                }
                FaultKind::MediaServerRestart => {
                    pair.restart_media_server()?;
                    // The publisher lost its connection (an encoder reconnects by itself).
                    publisher.stop();
                    publisher = publish(epoch.elapsed())?;
                    if !wait_listed(Duration::from_secs(15)) {
                        note = " (input not listed again within 15 s)".into();
                    }
                }
            }
            let end_s = epoch.elapsed().as_secs_f64();
            say(&format!(
                "fault {next}/{}: {} over after {:.1} s{note}",
                schedule.len(),
                kind.as_str(),
                end_s - start_s
            ));
            faults.push(FaultRecord {
                kind,
                start_s,
                end_s,
            });
            continue;
        }
        if !publisher.running() {
            let text = format!(
                "publisher exited by itself at {:.1} s; restarted",
                epoch.elapsed().as_secs_f64()
            );
            say(&text);
            incidents.push(text);
            publisher = publish(epoch.elapsed())?;
        }
        if now >= next_minute {
            next_minute += Duration::from_secs(60);
            let seen = tail.seen();
            let dubbed = seen.iter().filter(|f| f.status == "processed").count();
            let res = |p: Option<ProcStats>| {
                p.map_or("gone".into(), |p| {
                    format!(
                        "rss {:.0} MiB, {} threads, {} fds",
                        p.rss_kib as f64 / 1024.0,
                        p.threads,
                        p.fds
                    )
                })
            };
            say(&format!(
                "minute {}: {} fragments ({} dubbed), {} output appearances; media-service {}; sts {}",
                now.as_secs() / 60,
                seen.len(),
                dubbed,
                recorder.segments().len(),
                res(sample(pair, Side::Media)),
                res(sample(pair, Side::Sts)),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let media_end = sample(pair, Side::Media);
    let sts_end = sample(pair, Side::Sts);
    let published_s = epoch.elapsed().as_secs_f64();
    publisher.stop();
    say("publisher stopped; waiting for the delayed output to drain");
    std::thread::sleep(delay + Duration::from_secs(5));
    let segments = recorder.finish();
    let fragments = tail.finish();
    say(&format!(
        "{} fragments, {} output appearances; measuring",
        fragments.len(),
        segments.len()
    ));

    let mut resources = vec![
        ResourceRow {
            service: "media-service".into(),
            start: media_start,
            end: media_end,
        },
        ResourceRow {
            service: if sts_restarts > 0 {
                "sts-service (first process)".into()
            } else {
                "sts-service".into()
            },
            start: sts_start,
            end: if sts_restarts > 0 { None } else { sts_end },
        },
    ];
    if sts_restarts > 0 {
        resources.push(ResourceRow {
            service: format!("sts-service (after restart {sts_restarts})"),
            start: sts_last_start,
            end: sts_end,
        });
    }
    let window_end = published_s + delay.as_secs_f64() - 1.0;
    let coverage = output_coverage(&segments);
    let first_output_s = coverage.first().map(|c| c.0);
    let gaps =
        first_output_s.map_or_else(Vec::new, |first| complement(&coverage, first, window_end));
    let (outside, outside_dubbed) = outside_windows(&fragments, &faults, plan.settle.as_secs_f64());
    let mut statuses = BTreeMap::new();
    for f in &fragments {
        *statuses.entry(f.status.clone()).or_insert(0) += 1;
    }
    let results = faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            // A fault that cuts the output at once (the media server going away) leaves the
            // last packets a moment before its recorded start: attribute from 1 s before.
            let until = faults.get(i + 1).map_or(f64::INFINITY, |n| n.start_s - 1.0);
            FaultResult {
                fault: f.clone(),
                dubbed_after_s: dubbed_after(&fragments, f.end_s),
                // `+ 0.0`: an empty sum is -0.0.
                output_gap_s: 0.0
                    + gaps
                        .iter()
                        .filter(|(a, _)| *a >= f.start_s - 1.0 && *a < until)
                        .map(|(a, b)| b - a)
                        .sum::<f64>(),
            }
        })
        .collect();
    let marks = SyncMarks::SOAK;
    let av = |seg: Option<&RecordedSegment>, at_end: bool| -> Option<AvOffset> {
        let seg = seg?;
        let offsets = av_window(&marks, seg, at_end, log_dir)
            .map_err(|e| eprintln!("[soak] A/V offset of {}: {e:#}", seg.path.display()))
            .ok()?;
        (!offsets.is_empty()).then(|| AvOffset {
            median_ms: median(offsets.clone()) * 1000.0,
            marks: offsets.len(),
        })
    };
    Ok(Report {
        name: name.to_string(),
        delay_s: delay.as_secs_f64(),
        published_s,
        faults: results,
        statuses,
        outside,
        outside_dubbed,
        first_output_s,
        gaps,
        segments: segments.len(),
        resources,
        av_start: av(segments.first(), false),
        av_end: av(segments.last(), true),
        incidents,
    })
}

/// Spans (s since the start) during which the output carried both audio and video, from
/// the recorder's arrival times. A connection's packets are placed on the wall clock by
/// their timestamps and the connection's live line (the smallest arrival - timestamp:
/// packets from the server's cache and ffmpeg's probing arrive late, live ones on time);
/// a stream's packets more than 0.5 s apart leave a gap between them.
pub fn output_coverage(segments: &[RecordedSegment]) -> Vec<(f64, f64)> {
    const HOLE_S: f64 = 0.5;
    let spans = |audio: bool| -> Vec<(f64, f64)> {
        let mut all = Vec::new();
        for seg in segments {
            let tags: Vec<&(f64, crate::flv::Tag)> =
                seg.media_tags().filter(|(_, t)| t.audio == audio).collect();
            let Some(live) = tags
                .iter()
                .map(|(at, t)| at - f64::from(t.ts_ms) / 1000.0)
                .min_by(f64::total_cmp)
            else {
                continue;
            };
            let mut times: Vec<f64> = tags
                .iter()
                .map(|(_, t)| f64::from(t.ts_ms) / 1000.0 + live)
                .collect();
            times.sort_by(f64::total_cmp);
            let mut start = times[0];
            for w in times.windows(2) {
                if w[1] - w[0] > HOLE_S {
                    all.push((start, w[0] + 0.05));
                    start = w[1];
                }
            }
            all.push((start, times[times.len() - 1] + 0.05));
        }
        merge(all)
    };
    intersect(&spans(true), &spans(false))
}

/// Sorted, non-overlapping union of `spans`.
pub fn merge(mut spans: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Intersection of two sorted, non-overlapping span lists.
pub fn intersect(x: &[(f64, f64)], y: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        let (a, b) = (x[i].0.max(y[j].0), x[i].1.min(y[j].1));
        if a < b {
            out.push((a, b));
        }
        if x[i].1 < y[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// The parts of [from, to] that `covered` (sorted, non-overlapping) leaves out.
pub fn complement(covered: &[(f64, f64)], from: f64, to: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut at = from;
    for &(a, b) in covered {
        if a > at && at < to {
            out.push((at, a.min(to)));
        }
        at = at.max(b);
    }
    if at < to {
        out.push((at, to));
    }
    out
}

/// (fragments outside every fault window, of which dubbed). A fault's window runs from
/// 1 s before it starts (the fragment timing's uncertainty) to `settle` after its end.
pub fn outside_windows(
    fragments: &[SeenFragment],
    faults: &[FaultRecord],
    settle: f64,
) -> (usize, usize) {
    let outside: Vec<&SeenFragment> = fragments
        .iter()
        .filter(|f| {
            !faults
                .iter()
                .any(|w| f.start_s < w.end_s + settle && f.start_s + f.duration_s > w.start_s - 1.0)
        })
        .collect();
    let dubbed = outside.iter().filter(|f| f.status == "processed").count();
    (outside.len(), dubbed)
}

/// Start of the first dubbed fragment that ends after `end`, minus `end`.
pub fn dubbed_after(fragments: &[SeenFragment], end: f64) -> Option<f64> {
    fragments
        .iter()
        .filter(|f| f.status == "processed" && f.start_s + f.duration_s > end)
        .map(|f| f.start_s - end)
        .min_by(f64::total_cmp)
}

/// A/V offsets of the sync marks over a window of up to 60 s of `seg`: its start (from
/// its 3rd second) or its end (up to 3 s before it).
fn av_window(
    marks: &SyncMarks,
    seg: &RecordedSegment,
    at_end: bool,
    dir: &Path,
) -> anyhow::Result<Vec<f64>> {
    let ts: Vec<f64> = seg
        .media_tags()
        .map(|(_, t)| f64::from(t.ts_ms) / 1000.0)
        .collect();
    let first = ts.iter().copied().fold(f64::INFINITY, f64::min);
    let last = ts.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let length = last - first;
    ensure!(
        length >= 16.0,
        "only {length:.1} s of output: too short to measure"
    );
    let span = (length - 6.0).min(60.0);
    let from = if at_end { length - 3.0 - span } else { 3.0 };
    let window = dir.join(format!(
        "{}-av-{}.flv",
        seg.path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("segment"),
        if at_end { "end" } else { "start" }
    ));
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(&seg.path)
        .args([
            "-ss",
            &format!("{from:.3}"),
            "-t",
            &format!("{span:.3}"),
            "-c",
            "copy",
        ])
        .arg(&window)
        .output()?;
    ensure!(
        o.status.success(),
        "cutting {}: {}",
        seg.path.display(),
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(marks.av_offsets(&window)?)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::Tag;

    /// On a cold cache two tests asked for the marked fixture at once and wrote, checked
    /// and renamed one temporary file between them: one failed with "No such file" (a
    /// fresh-clone CI run). Each call now writes its own; both get the fixture.
    #[test]
    fn two_tests_making_the_marked_fixture_at_once_both_get_it() {
        let dir = std::env::temp_dir().join(format!(
            "e2e-marked-race-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        ));
        let made: Vec<anyhow::Result<PathBuf>> = std::thread::scope(|s| {
            let a = s.spawn(|| make_marked_fixture(&dir));
            let b = s.spawn(|| make_marked_fixture(&dir));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        for m in &made {
            assert!(m.is_ok(), "{m:?}");
        }
        assert_eq!(left, ["30s-counting-english-marked-v1.mp4"], "{left:?}");
    }

    #[test]
    fn schedules_leave_room_to_recover() {
        let short = Plan::short();
        let s: Vec<(u64, FaultKind)> = short
            .schedule()
            .iter()
            .map(|(t, k)| (t.as_secs(), *k))
            .collect();
        assert_eq!(
            s,
            vec![
                (35, FaultKind::PublisherStall),
                (70, FaultKind::PublisherReconnect),
                (105, FaultKind::StsRestart),
                (140, FaultKind::MediaServerRestart)
            ]
        );
        assert_eq!(short.output_delay(), Duration::from_millis(10_500));
        let long = Plan::minutes(30.0).schedule();
        assert_eq!(long.len(), 19);
        assert_eq!(long.last().unwrap().0, Duration::from_secs(1710));
        assert_eq!(
            long.iter()
                .filter(|(_, k)| *k == FaultKind::StsRestart)
                .count(),
            5
        );
    }

    #[test]
    fn span_arithmetic() {
        assert_eq!(
            merge(vec![(5.0, 6.0), (0.0, 2.0), (1.0, 3.0)]),
            vec![(0.0, 3.0), (5.0, 6.0)]
        );
        assert_eq!(
            intersect(&[(0.0, 3.0), (5.0, 9.0)], &[(1.0, 6.0), (8.0, 10.0)]),
            vec![(1.0, 3.0), (5.0, 6.0), (8.0, 9.0)]
        );
        assert_eq!(
            complement(&[(0.0, 3.0), (5.0, 6.0)], 0.0, 10.0),
            vec![(3.0, 5.0), (6.0, 10.0)]
        );
        assert_eq!(
            complement(&[(0.0, 12.0)], 0.0, 10.0),
            Vec::<(f64, f64)>::new()
        );
    }

    fn segment(from_s: f64, arrive_late_s: f64, seconds: u32) -> RecordedSegment {
        // Audio every 20 ms, video every 40 ms; the first second arrives in a burst.
        let mut tags = Vec::new();
        for ms in (0..seconds * 1000).step_by(20) {
            let on_time = from_s + f64::from(ms) / 1000.0;
            let at = if ms < 1000 {
                from_s + 1.0 + arrive_late_s
            } else {
                on_time + arrive_late_s
            };
            tags.push((
                at,
                Tag {
                    audio: true,
                    ts_ms: 5000 + ms,
                    config: false,
                },
            ));
            if ms % 40 == 0 {
                tags.push((
                    at,
                    Tag {
                        audio: false,
                        ts_ms: 5000 + ms,
                        config: false,
                    },
                ));
            }
        }
        RecordedSegment {
            path: PathBuf::new(),
            connected_s: from_s,
            tags,
        }
    }

    #[test]
    fn coverage_follows_the_live_line() {
        // Two appearances of the output, 10-20 s and 30-40 s, the second with a hole
        // in its audio.
        let first = segment(10.0, 0.2, 10);
        let mut second = segment(30.0, 0.2, 10);
        second
            .tags
            .retain(|(_, t)| !(t.audio && (8000..10_000).contains(&t.ts_ms)));
        let cov = output_coverage(&[first, second]);
        assert_eq!(cov.len(), 3, "{cov:?}");
        assert!(
            (cov[0].0 - 10.2).abs() < 1e-6 && (cov[0].1 - 20.21).abs() < 0.03,
            "{cov:?}"
        );
        assert!(
            (cov[1].0 - 30.2).abs() < 1e-6 && (cov[1].1 - 33.23).abs() < 0.01,
            "{cov:?}"
        );
        assert!(
            (cov[2].0 - 35.2).abs() < 1e-6 && (cov[2].1 - 40.21).abs() < 0.01,
            "{cov:?}"
        );
        let gaps = complement(&cov, cov[0].0, 45.0);
        let missing: f64 = gaps.iter().map(|(a, b)| b - a).sum();
        // 10 s between the appearances, 2 s of missing audio, 4.8 s after the end.
        assert!((missing - 16.75).abs() < 0.02, "{gaps:?}");
    }

    #[test]
    fn fragments_in_and_out_of_fault_windows() {
        let frag = |start_s: f64, status: &str| SeenFragment {
            sequence: 0,
            status: status.into(),
            duration_s: 6.0,
            start_s,
        };
        let fragments = vec![
            frag(0.0, "processed"),
            frag(6.0, "processed"),
            frag(12.0, "fallback"),
            frag(18.0, "fallback"),
            frag(24.0, "processed"),
            frag(30.0, "processed"),
            frag(36.0, "fallback"),
        ];
        let faults = [FaultRecord {
            kind: FaultKind::StsRestart,
            start_s: 14.0,
            end_s: 20.0,
        }];
        // Window 13..35: fragments at 12, 18, 24 and 30 are inside.
        assert_eq!(outside_windows(&fragments, &faults, 15.0), (3, 2));
        assert_eq!(dubbed_after(&fragments, 20.0), Some(4.0));
        assert_eq!(dubbed_after(&fragments, 40.0), None);
    }
}
