//! One worker = one stream: runs the graph, cuts fragments, sends them to the STS, and
//! places each answer (or the original audio) at the fragment's own timestamps before its
//! deadline.
//!
//! Timing model (all on the pipeline's running time; D = output delay, F = fragment length,
//! M = deadline margin):
//!
//! ```text
//! input    |--- fragment k: [t, t+F) ---|
//! STS                                   |== send, ASR/MT/TTS, answer ==|
//! deadline                                                             t+D-M   (push original if no answer)
//! output                                                                   t+D |--- fragment k plays ---|
//! ```
//! The sinks render with `sync=true` at running time + D (the appsrc reports D as its
//! latency), so the whole output runs exactly D behind the input. The encoder needs the
//! next samples to finish a frame, so audio must be in the appsrc M (>= 300 ms) before
//! render time. STS budget = D - F - M.
//!
//! Threads: GStreamer streaming threads run the appsink callback (fragmenter, then a
//! non-blocking `try_send`); a plain std thread pops the bus; the coordinator is one tokio
//! task that never blocks (PCM conversion and WAV writing go to `spawn_blocking`).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Serialize;
use sts_protocol::{
    AudioFormat, AudioPayload, Backpressure, BackpressureAction, FragmentData, FragmentProcessed,
    FragmentStatus,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::artifacts;
use crate::fragmenter::{Boundaries, Fragment, Fragmenter};
use crate::ledger::{AnswerFate, Entry, Ledger, Resolution};
use crate::metrics::Metrics;
use crate::mix::{MixConfig, MixMode};
use crate::pcm::{self, INTERNAL_CHANNELS, INTERNAL_RATE, STS_CHANNELS, STS_RATE};
use crate::pipeline::{self, GraphSpec, MediaPipeline, OutputTarget, PipelineError};
use crate::redact;

/// AAC (avenc_aac) priming: 1024 samples at 48 kHz put the audio content this late.
pub const AAC_PRIMING_MS: f64 = 1024.0 * 1000.0 / INTERNAL_RATE as f64;

/// What the STS side tells the worker.
#[derive(Debug, Clone)]
pub enum DubEvent {
    /// A fragment's answer.
    Processed(Box<FragmentProcessed>),
    /// An answer that could not be understood; `sequence` when it could still be read.
    Malformed {
        /// Sequence number, if present in the payload.
        sequence: Option<u64>,
        /// What was wrong.
        error: String,
    },
    /// Flow-control advice.
    Backpressure(Backpressure),
    /// The STS session became ready (`true`, after `stream:init` was acknowledged) or lost.
    Ready {
        /// Ready or not.
        ready: bool,
        /// A readiness after an earlier one (a reconnection).
        reconnect: bool,
    },
}

/// The STS as the worker sees it. Implemented over Socket.IO in [`crate::sts`]; tests use
/// fakes.
pub trait Dubber: Send + Sync + 'static {
    /// Sends one fragment; resolves when the STS acknowledged it (accepted) or refused it.
    fn submit(&self, fragment: FragmentData) -> BoxFuture<'static, Result<(), String>>;
    /// Whether fragments can be sent now.
    fn is_ready(&self) -> bool;
}

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Stream name (`live/<name>/in`).
    pub name: String,
    /// Input URI.
    pub input_uri: String,
    /// Output.
    pub output: OutputTarget,
    /// Fragment length (ms), the longest with speech boundaries.
    pub fragment_ms: u32,
    /// Where fragments end (FRAGMENT_BOUNDARIES).
    pub boundaries: Boundaries,
    /// Fixed output delay (ms).
    pub delay_ms: u32,
    /// Fall back this long before a fragment's render time (ms).
    pub deadline_margin_ms: u32,
    /// No input for this long ends a live worker (ms).
    pub idle_timeout_ms: u32,
    /// No input at all for this long after start is an error (ms).
    pub start_timeout_ms: u32,
    /// Resync tolerance of the fragmenter (ms).
    pub resync_tolerance_ms: u32,
    /// Sequence number of the first fragment: a stream's numbering continues across the
    /// runs of its worker (restarts, an input that came back), so the STS, the fragment
    /// log and the artifacts never see a number twice.
    pub first_sequence: u64,
    /// AAC bitrate.
    pub aac_bitrate: i32,
    /// Where per-fragment artifacts go (`<dir>/<name>/`), if anywhere.
    pub segment_dir: Option<PathBuf>,
    /// WAV pairs kept per stream in `segment_dir` (SEGMENT_ARTIFACTS_KEEP).
    pub segment_keep: u32,
    /// How dubbed audio is combined with the original (MIX_MODE, DUCK_DB).
    pub mix: MixConfig,
    /// The boundary planner of the media-service's live streams (FRAGMENT_STAGGER), if on.
    pub stagger: Option<Arc<crate::stagger::Planner>>,
    /// The STS instance this stream's fragments go to (one of STS_SERVICE_URL's).
    pub sts_url: String,
}

/// How a fragment went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Dubbed audio was used.
    Processed,
    /// Original audio: no answer in time, or STS unavailable/paused.
    Fallback,
    /// Original audio: the STS failed the fragment, refused it, or answered malformed.
    Failed,
    /// Original audio: the STS found no speech (nothing to dub), so nothing replaces or
    /// ducks the original (music, ambience, a pause) — never silence.
    NoSpeech,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 4] = [
        Self::Processed,
        Self::Fallback,
        Self::Failed,
        Self::NoSpeech,
    ];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Fallback => "fallback",
            Self::Failed => "failed",
            Self::NoSpeech => "no_speech",
        }
    }
}

/// One line of the fragment log (SEGMENT_DIR JSONL and the file-mode report).
#[derive(Debug, Clone, Serialize)]
pub struct FragmentRecord {
    /// Stream name.
    pub stream: String,
    /// Sequence number.
    pub sequence: u64,
    /// Start on the stream timeline (ms from the first audio sample).
    pub pts_ms: u64,
    /// Duration (ms).
    pub duration_ms: u64,
    /// Outcome.
    pub status: Outcome,
    /// Why the original audio was used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// STS status, when it answered in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts_status: Option<String>,
    /// ASR text.
    pub transcript: String,
    /// Translation.
    pub translation: String,
    /// The translation as the TTS speaks it (digits as words), where that differs; set by
    /// `media-service dub` for its report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spoken: Option<String>,
    /// Send -> answer (ms), when answered in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roundtrip_ms: Option<u64>,
    /// STS-side processing (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_time_ms: Option<u64>,
    /// STS per-stage times.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage_ms: Option<sts_protocol::StageMs>,
    /// Time left before the deadline when the audio was pushed (ms; negative = late).
    pub slack_ms: i64,
}

/// How a worker ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Input ended (EOS or idle watchdog) and the output was finished.
    Finished,
    /// Stopped on request.
    Cancelled,
}

/// Errors that end a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The graph could not be built.
    #[error("stream '{stream}': {source}")]
    Pipeline {
        /// Stream.
        stream: String,
        /// Cause.
        source: PipelineError,
    },
    /// GStreamer reported an error while running.
    #[error("stream '{stream}': {element}: {message}")]
    Runtime {
        /// Stream.
        stream: String,
        /// Element path.
        element: String,
        /// Error and debug text.
        message: String,
    },
    /// The input delivers video but no audio (nothing to dub, and the output starts with
    /// the audio): a fresh read usually gets both tracks.
    #[error("stream '{stream}': video but no audio from {uri} within {timeout_ms} ms of the first media ({tracks}); reading it again")]
    NoAudio {
        /// Stream.
        stream: String,
        /// Input.
        uri: String,
        /// Timeout.
        timeout_ms: u64,
        /// What the input announced and delivered (boxed: it is rarely built and large).
        tracks: Box<crate::pipeline::TrackLog>,
    },
    /// The input announced video and audio but delivers only audio: the output would carry
    /// no picture (and the muxer would hold it back until the input ends); a fresh read
    /// usually gets both tracks.
    #[error("stream '{stream}': audio but no video from {uri} within {timeout_ms} ms of the first media ({tracks}); reading it again")]
    NoVideo {
        /// Stream.
        stream: String,
        /// Input.
        uri: String,
        /// Timeout.
        timeout_ms: u64,
        /// What the input announced and delivered (boxed: it is rarely built and large).
        tracks: Box<crate::pipeline::TrackLog>,
    },
    /// The input announced no audio track at all: there is nothing to dub.
    #[error("stream '{stream}': {uri} has no audio track ({tracks}): nothing to dub; an input needs H.264 video and one audio track")]
    NoAudioTrack {
        /// Stream.
        stream: String,
        /// Input.
        uri: String,
        /// What the input announced and delivered (boxed: it is rarely built and large).
        tracks: Box<crate::pipeline::TrackLog>,
    },
    /// Nothing arrived from the input.
    #[error("stream '{stream}': no media from {uri} within {timeout_ms} ms")]
    NoInput {
        /// Stream.
        stream: String,
        /// Input.
        uri: String,
        /// Timeout.
        timeout_ms: u32,
    },
}

/// Which of the two missing-audio errors applies: the input never announced audio, or it
/// did and none came.
fn no_audio_error(stream: &str, uri: &str, tracks: crate::pipeline::TrackLog) -> WorkerError {
    let (stream, uri) = (stream.to_string(), uri.to_string());
    if tracks.announced_audio() == Some(false) {
        WorkerError::NoAudioTrack {
            stream,
            uri,
            tracks: Box::new(tracks),
        }
    } else {
        WorkerError::NoAudio {
            stream,
            uri,
            timeout_ms: AUDIO_START_TIMEOUT_MS,
            tracks: Box::new(tracks),
        }
    }
}

/// Audio must follow the first input media within this time (a video-only lead-in of a
/// few seconds is normal); a read that has only video by then is started again, since
/// nothing can be dubbed or output without the audio track.
pub const AUDIO_START_TIMEOUT_MS: u64 = 8_000;

/// Video the input announced must follow its first media within this time; a read that
/// has only audio by then is started again. (Seen with the local test media server: a
/// reader that got the audio of an input but never its video. The output then had no
/// picture, and the muxer, waiting for it, sent nothing until the input ended.) Any video
/// buffer counts, key frame or not, and a live encoder sends one every frame, so 3 s of
/// audio without one is a lost track, not a slow one; each second waited here is a second
/// of output lost when it happens (it was 8 s: a 10 s publication then got no output at
/// all, and a 30 s one lost a third of its picture). An input that announces no video, or
/// a file, is not judged.
pub const VIDEO_START_TIMEOUT_MS: u64 = 3_000;

/// Whether a read that has seen no video `since_first_ns` after its first media has lost
/// the video its input announced.
fn video_missing(tracks: &crate::pipeline::TrackLog, saw_video: bool, since_first_ns: u64) -> bool {
    !saw_video
        && tracks.announced_video() == Some(true)
        && since_first_ns > VIDEO_START_TIMEOUT_MS * 1_000_000
}

/// A live input that has been quiet this long (no buffer on either branch, not silence) gets its
/// unfinished fragment sent to the STS at once, instead of when INPUT_IDLE_TIMEOUT_MS ends the
/// worker: a publisher that stopped mid-fragment still gets its last words dubbed (before,
/// that fragment reached the STS with about a second left and went out original). Capped at
/// half the idle timeout. The fragment grid does not move: audio that resumes completes the
/// same slot (fragmenter.rs). 400 ms: a live input's buffers come every 20-40 ms, and when
/// every publisher stops at once all the last fragments reach the STS together, so each
/// millisecond waited here is one the STS lacks (docs/capacity.md); a hiccup longer than this
/// costs one extra, shorter fragment, nothing else.
pub const QUIET_INPUT_FLUSH_MS: u64 = 400;

/// How often the worker looks at its input's liveness (quiet input, idle, missing tracks).
const WATCHDOG_TICK: Duration = Duration::from_millis(100);

/// When the unfinished fragment of a quiet input is sent on (ns), for an idle timeout.
fn quiet_flush_after_ns(idle_timeout_ms: u32) -> u64 {
    QUIET_INPUT_FLUSH_MS.min(idle_timeout_ms as u64 / 2) * 1_000_000
}

/// What a viewer of a stream's output gets now: the operator's one-word answer in
/// `/health` and `GET /v1/streams`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dubbing {
    /// No fragment placed yet (the worker is starting, or retrying after an error).
    #[default]
    Starting,
    /// The last fragment went out dubbed, or had no speech (its original is what belongs
    /// there).
    Dubbing,
    /// The last fragment went out with its original audio; `fallback_reason` says why.
    FallingBack,
    /// The input stopped; the stream waits INPUT_GRACE_MS for it to come back.
    WaitingForInput,
    /// The stream's worker ended (input gone, stopped, or failed for good).
    Ended,
}

/// Why a stream is falling back to its original audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// No STS session: the STS is unreachable, restarting or still loading its model.
    StsDown,
    /// The STS asked the stream to pause (backpressure).
    StsPaused,
    /// Answers come too late for the output delay (the STS is overloaded).
    Late,
    /// The STS failed or refused the fragment, or answered malformed.
    StsError,
}

/// Live state, shared with `/health` and the control API.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerStatus {
    /// starting | running | draining | finished | failed | retrying | waiting_for_input |
    /// stopped.
    pub state: String,
    /// waiting_for_input: how long the input may still take to come back (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_left_ms: Option<u64>,
    /// Input URI.
    pub input: String,
    /// Output location.
    pub output: String,
    /// Fragments cut so far.
    pub fragments: u64,
    /// Dubbed fragments.
    pub processed: u64,
    /// Original-audio fragments (late / STS down).
    pub fallback: u64,
    /// Failed fragments (original audio).
    pub failed: u64,
    /// Fragments without speech (original audio).
    pub no_speech: u64,
    /// What the output carries now.
    pub dubbing: Dubbing,
    /// falling_back: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<FallbackReason>,
    /// The STS instance the stream's fragments go to.
    pub sts: String,
    /// STS session ready.
    pub sts_ready: bool,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Pipeline restarts.
    pub restarts: u64,
}

/// Shared handle to a worker's status.
pub type StatusCell = Arc<Mutex<WorkerStatus>>;

/// Callback per finished fragment (file mode prints progress with it).
pub type FragmentHook = Arc<dyn Fn(&FragmentRecord) + Send + Sync>;

enum AudioMsg {
    Fragment(Fragment),
    Eos,
}

enum BusMsg {
    Eos,
    Error { element: String, message: String },
}

enum Internal {
    Submitted {
        seq: u64,
        result: Result<(), String>,
        sent_at: Instant,
    },
    NotSent {
        seq: u64,
        reason: String,
    },
    Decoded {
        seq: u64,
        result: Result<Vec<i16>, String>,
        processed: Box<FragmentProcessed>,
    },
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned status lock only means a panic elsewhere; the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs one worker until its input ends, it is cancelled, or it fails.
pub async fn run_worker(
    cfg: WorkerConfig,
    dubber: Arc<dyn Dubber>,
    mut events: mpsc::Receiver<DubEvent>,
    metrics: Arc<Metrics>,
    status: StatusCell,
    cancel: CancellationToken,
    hook: Option<FragmentHook>,
) -> Result<WorkerEnd, WorkerError> {
    let name = cfg.name.clone();
    let epoch = Instant::now();
    let spec = GraphSpec {
        uri: cfg.input_uri.clone(),
        output: cfg.output.clone(),
        delay: Duration::from_millis(cfg.delay_ms as u64),
        aac_bitrate: cfg.aac_bitrate,
        epoch,
    };
    let graph = pipeline::build(&spec).map_err(|source| WorkerError::Pipeline {
        stream: name.clone(),
        source,
    })?;
    {
        let mut st = lock(&status);
        st.state = "starting".into();
        st.dubbing = Dubbing::Starting;
        st.fallback_reason = None;
        st.input = redact::uri(&cfg.input_uri);
        st.output = cfg.output.describe();
    }
    metrics
        .output_delay_ms
        .with_label_values(&[&name])
        .set(cfg.delay_ms as i64);

    // Appsink -> fragmenter -> coordinator.
    let (audio_tx, mut audio_rx) = mpsc::channel::<AudioMsg>(64);
    let fragmenter = Arc::new(Mutex::new(
        Fragmenter::new(cfg.fragment_ms, cfg.resync_tolerance_ms)
            .with_boundaries(cfg.boundaries)
            .starting_at(cfg.first_sequence),
    ));
    // This run's place among the streams' fragment boundaries, freed when it returns.
    let seat = cfg.stagger.as_ref().map(|p| Arc::new(p.seat()));
    install_appsink(
        &graph,
        fragmenter.clone(),
        audio_tx.clone(),
        name.clone(),
        seat.as_ref().map(Arc::downgrade),
    );

    // Bus -> coordinator, on a plain thread (keeps GLib off the tokio workers).
    let (bus_tx, mut bus_rx) = mpsc::channel::<BusMsg>(16);
    let bus_stop = Arc::new(AtomicBool::new(false));
    let bus_thread = spawn_bus_thread(&graph, bus_tx, bus_stop.clone(), name.clone());
    // From here every exit, early returns included, tears the graph down.
    let teardown = GraphTeardown::new(&graph, bus_stop, bus_thread);

    graph
        .pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| WorkerError::Pipeline {
            stream: name.clone(),
            source: PipelineError::State(format!(
                "{e}: check that the input {} exists and the output {} is reachable",
                redact::uri(&cfg.input_uri),
                cfg.output.describe()
            )),
        })?;
    metrics.active_workers.inc();
    info!(stream = %name, input = %redact::uri(&cfg.input_uri), output = %cfg.output.describe(), delay_ms = cfg.delay_ms, fragment_ms = cfg.fragment_ms, "worker started");

    let mut co = Coordinator {
        cfg: cfg.clone(),
        graph: &graph,
        dubber,
        metrics: metrics.clone(),
        status: status.clone(),
        hook,
        ledger: Ledger::default(),
        paused: false,
        segment_dir: cfg
            .segment_dir
            .as_ref()
            .map(|d| d.join(sanitize(&cfg.name))),
        internal_tx: None,
        first_pts_ns: None,
        pts_shift_ns: None,
        stream_format: AudioFormat::pcm_s16le(STS_RATE, STS_CHANNELS),
    };
    if let Some(d) = &co.segment_dir {
        if let Err(e) = std::fs::create_dir_all(d) {
            warn!(stream = %name, dir = %d.display(), error = %e, "cannot create segment dir; artifacts disabled");
            co.segment_dir = None;
        }
    }
    let (internal_tx, mut internal_rx) = mpsc::channel::<Internal>(64);
    co.internal_tx = Some(internal_tx);

    let mut input_done = false;
    let mut eos_sent_at: Option<Instant> = None;
    let mut watchdog = tokio::time::interval(WATCHDOG_TICK);
    let mut started_state = false;
    // When the watchdog first saw input (monotonic ns), for the missing-audio check.
    let mut first_input_seen: Option<u64> = None;
    let mut last_stats = crate::fragmenter::ResyncStats::default();
    let result: Result<WorkerEnd, WorkerError> = loop {
        let next_deadline = co.ledger.next_deadline();
        tokio::select! {
            _ = cancel.cancelled() => break Ok(WorkerEnd::Cancelled),
            Some(msg) = audio_rx.recv() => match msg {
                AudioMsg::Fragment(f) => co.on_fragment(f),
                AudioMsg::Eos => {
                    if !input_done {
                        info!(stream = %name, "input ended (EOS)");
                        input_done = true;
                    }
                }
            },
            Some(ev) = events.recv() => co.on_event(ev),
            Some(m) = internal_rx.recv() => co.on_internal(m),
            Some(b) = bus_rx.recv() => match b {
                BusMsg::Eos => break Ok(WorkerEnd::Finished),
                BusMsg::Error { element, message } => {
                    if eos_sent_at.is_some() {
                        // Everything was already handed to the output; a server closing the
                        // publisher while it drains must not turn a finished stream into a retry.
                        warn!(stream = %name, %element, %message, "output error while draining; treating the stream as finished");
                        break Ok(WorkerEnd::Finished);
                    }
                    break Err(WorkerError::Runtime { stream: name.clone(), element, message });
                }
            },
            _ = sleep_until_opt(next_deadline) => co.on_deadlines(),
            _ = watchdog.tick() => {
                let last = graph.last_input.load(Ordering::Relaxed);
                let now = epoch.elapsed().as_nanos() as u64;
                if last == 0 {
                    if now > cfg.start_timeout_ms as u64 * 1_000_000 {
                        break Err(WorkerError::NoInput { stream: name.clone(), uri: redact::uri(&cfg.input_uri), timeout_ms: cfg.start_timeout_ms });
                    }
                } else {
                    if !started_state {
                        started_state = true;
                        lock(&status).state = "running".into();
                    }
                    let first = *first_input_seen.get_or_insert(now);
                    if !input_done
                        && graph.last_audio.load(Ordering::Relaxed) == 0
                        && now.saturating_sub(first) > AUDIO_START_TIMEOUT_MS * 1_000_000
                    {
                        // Seen with a media server that let a reader join before the
                        // publisher had set up its audio track: video only, for good.
                        break Err(no_audio_error(&name, &redact::uri(&cfg.input_uri), graph.tracks.snapshot()));
                    }
                    let saw_video = graph.last_video.load(Ordering::Relaxed) != 0;
                    // The track log is copied only while no video has come (every tick otherwise).
                    if !input_done && !saw_video && video_missing(&graph.tracks.snapshot(), saw_video, now.saturating_sub(first)) {
                        break Err(WorkerError::NoVideo {
                            stream: name.clone(),
                            uri: redact::uri(&cfg.input_uri),
                            timeout_ms: VIDEO_START_TIMEOUT_MS,
                            tracks: Box::new(graph.tracks.snapshot()),
                        });
                    }
                    // Both branches quiet (a publisher that stopped, not an audio hiccup).
                    if !input_done && now.saturating_sub(last) > quiet_flush_after_ns(cfg.idle_timeout_ms) {
                        // Nothing held: the fragmenter emits nothing until media comes back.
                        let partial = lock(&fragmenter).flush();
                        if let Some(f) = partial {
                            info!(stream = %name, seq = f.sequence, held_ms = f.duration_ns / 1_000_000, quiet_ms = now.saturating_sub(last) / 1_000_000, "input quiet: its unfinished fragment goes to the STS now");
                            co.on_fragment(f);
                        }
                    }
                    if !input_done && now.saturating_sub(last) > cfg.idle_timeout_ms as u64 * 1_000_000 {
                        info!(stream = %name, idle_ms = cfg.idle_timeout_ms, "input idle (publisher stopped?): flushing and ending the output");
                        input_done = true;
                        // rtspsrc sends no EOS when the publisher goes away: end both branches.
                        let partial = lock(&fragmenter).flush();
                        if let Some(f) = partial { co.on_fragment(f); }
                        // Both input branches: the pipeline posts EOS only once every sink,
                        // the fragmenter's appsink included, has it.
                        for head in [&graph.video_head, &graph.audio_head] {
                            if let Some(pad) = head.static_pad("sink") {
                                // send_event takes the pad's stream lock: never on a tokio thread.
                                tokio::task::spawn_blocking(move || pad.send_event(gst::event::Eos::new()));
                            }
                        }
                    }
                }
                {
                    let st = lock(&fragmenter).stats();
                    let [gap, overlap] = crate::metrics::RESYNC_KINDS;
                    metrics.resync_frames.with_label_values(&[&name, gap]).inc_by(st.gap_frames_filled - last_stats.gap_frames_filled);
                    metrics.resync_frames.with_label_values(&[&name, overlap]).inc_by(st.overlap_frames_dropped - last_stats.overlap_frames_dropped);
                    if st.timeline_jumps > last_stats.timeline_jumps {
                        warn!(stream = %name, jumps = st.timeline_jumps, max_gap_fill_s = crate::fragmenter::MAX_GAP_FILL_NS / 1_000_000_000, "input audio timestamps jumped ahead by more than the longest gap filled with silence; the fragment timeline restarts at the new timestamp");
                    }
                    last_stats = st;
                }
                if let Some(t) = eos_sent_at {
                    // The output should finish within the delay; give it generous slack.
                    if t.elapsed() > Duration::from_millis(cfg.delay_ms as u64 + 15_000) {
                        warn!(stream = %name, "output did not finish after EOS; stopping anyway");
                        break Ok(WorkerEnd::Finished);
                    }
                }
            }
        }
        co.flush_ready();
        if input_done && eos_sent_at.is_none() && co.ledger.is_empty() && audio_rx.is_empty() {
            lock(&status).state = "draining".into();
            debug!(stream = %name, "all fragments placed; sending EOS to the output audio");
            let _ = graph.appsrc.end_of_stream();
            eos_sent_at = Some(Instant::now());
        }
    };

    // A file cut short by a stop request is still finished properly (mp4 needs its index
    // written on EOS): end both branches and give the muxer a moment.
    if matches!(result, Ok(WorkerEnd::Cancelled)) && matches!(cfg.output, OutputTarget::File { .. })
    {
        co.flush_ready();
        let _ = graph.appsrc.end_of_stream();
        if let Some(pad) = graph.video_head.static_pad("sink") {
            tokio::task::spawn_blocking(move || pad.send_event(gst::event::Eos::new()));
        }
        let wait = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some(m) = bus_rx.recv().await {
                if matches!(m, BusMsg::Eos | BusMsg::Error { .. }) {
                    break;
                }
            }
        });
        if wait.await.is_err() {
            warn!(stream = %name, "output file not finished within 3 s of the stop request");
        }
    }

    teardown.run().await;
    // Everything the graph held is free now: give it back to the system, or each worker
    // appearance leaves its streaming threads' arenas behind (see crate::memory).
    drop(co);
    drop(graph);
    drop(audio_rx);
    drop(internal_rx);
    let _ = tokio::task::spawn_blocking(crate::memory::release_freed_heap).await;
    metrics.active_workers.dec();
    metrics.inflight.with_label_values(&[&name]).set(0);
    {
        let mut st = lock(&status);
        st.dubbing = Dubbing::Ended;
        st.fallback_reason = None;
        match &result {
            Ok(WorkerEnd::Finished) => st.state = "finished".into(),
            Ok(WorkerEnd::Cancelled) => st.state = "stopped".into(),
            Err(e) => {
                st.state = "failed".into();
                st.last_error = Some(redact::text(&e.to_string()));
            }
        }
    }
    match &result {
        Ok(end) => info!(stream = %name, ?end, "worker ended"),
        Err(e) => error!(stream = %name, error = %redact::text(&e.to_string()), "worker failed"),
    }
    result
}

/// Why a fragment placed with `outcome` went out original, judged from the session's
/// state when it is placed (what holds for the fragments that follow); `None` when the
/// output carries what it should (dubbed, or no speech to dub).
pub fn fallback_reason(outcome: Outcome, sts_ready: bool, paused: bool) -> Option<FallbackReason> {
    match outcome {
        Outcome::Processed | Outcome::NoSpeech => None,
        Outcome::Failed => Some(FallbackReason::StsError),
        Outcome::Fallback if !sts_ready => Some(FallbackReason::StsDown),
        Outcome::Fallback if paused => Some(FallbackReason::StsPaused),
        Outcome::Fallback => Some(FallbackReason::Late),
    }
}

/// Sleeps until `t`, or forever when there is nothing to wait for (a `select!` arm).
pub(crate) async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => futures::future::pending().await,
    }
}

/// Replaces characters that do not belong in a directory name.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn install_appsink(
    graph: &MediaPipeline,
    fragmenter: Arc<Mutex<Fragmenter>>,
    tx: mpsc::Sender<AudioMsg>,
    name: String,
    seat: Option<std::sync::Weak<crate::stagger::Seat>>,
) {
    let tx_eos = tx.clone();
    let frag_eos = fragmenter.clone();
    let name_eos = name.clone();
    graph.appsink.set_callbacks(
        gstreamer_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(segment)) = (sample.buffer(), sample.segment()) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Some(seg) = segment.downcast_ref::<gst::ClockTime>() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Some(rt) = buffer.pts().and_then(|p| seg.to_running_time(p)) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let Ok(map) = buffer.map_readable() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let samples: Vec<i16> = map
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                drop(map);
                let mut frag = lock(&fragmenter);
                if !frag.started() {
                    place_grid(&mut frag, seat.as_ref(), &name);
                }
                let done = frag.push(rt.nseconds(), &samples);
                drop(frag);
                for f in done {
                    // Never block a streaming thread: 64 fragments of backlog means the
                    // coordinator is gone, and dropping is the only sane thing left.
                    if tx.try_send(AudioMsg::Fragment(f)).is_err() {
                        warn!(stream = %name, "coordinator not keeping up; fragment dropped");
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .eos(move |_| {
                let last = lock(&frag_eos).flush();
                if let Some(f) = last {
                    let _ = tx_eos.try_send(AudioMsg::Fragment(f));
                }
                if tx_eos.try_send(AudioMsg::Eos).is_err() {
                    warn!(stream = %name_eos, "could not signal input EOS");
                }
            })
            .build(),
    );
}

/// Places the stream's fragment grid among the other streams' (FRAGMENT_STAGGER) as its
/// first sample arrives.
fn place_grid(
    frag: &mut Fragmenter,
    seat: Option<&std::sync::Weak<crate::stagger::Seat>>,
    name: &str,
) {
    let Some(seat) = seat.and_then(|w| w.upgrade()) else {
        return;
    };
    let shorter_ms = seat.place(std::time::Instant::now());
    if shorter_ms > 0 {
        info!(stream = %name, shorter_ms, "fragment boundaries staggered: the first fragment is shorter, so that this stream's fragments do not reach the STS together with another stream's");
    }
    frag.shorten_first(shorter_ms);
}

/// Owns a started graph's teardown: the NULL state (which frees the graph's sockets,
/// streaming threads and buffers) and the bus thread. [`GraphTeardown::run`] does it on the
/// normal path; dropping the guard does it on any other (an early `?`, a panic), off the
/// async threads.
struct GraphTeardown {
    pipeline: gst::Pipeline,
    bus_stop: Arc<AtomicBool>,
    bus_thread: Option<std::thread::JoinHandle<()>>,
}

impl GraphTeardown {
    fn new(
        graph: &MediaPipeline,
        bus_stop: Arc<AtomicBool>,
        bus_thread: std::thread::JoinHandle<()>,
    ) -> Self {
        Self {
            pipeline: graph.pipeline.clone(),
            bus_stop,
            bus_thread: Some(bus_thread),
        }
    }

    /// The blocking work, once (None when already taken).
    fn take_work(&mut self) -> Option<impl FnOnce() + Send + 'static> {
        let thread = self.bus_thread.take()?;
        let pipeline = self.pipeline.clone();
        let stop = self.bus_stop.clone();
        Some(move || {
            stop.store(true, Ordering::Relaxed);
            let _ = pipeline.set_state(gst::State::Null);
            let _ = thread.join();
        })
    }

    /// Tears down and waits until the graph is NULL and the bus thread has ended.
    async fn run(mut self) {
        if let Some(work) = self.take_work() {
            let _ = tokio::task::spawn_blocking(work).await;
        }
    }
}

impl Drop for GraphTeardown {
    fn drop(&mut self) {
        let Some(work) = self.take_work() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(work)),
            Err(_) => work(),
        }
    }
}

fn spawn_bus_thread(
    graph: &MediaPipeline,
    tx: mpsc::Sender<BusMsg>,
    stop: Arc<AtomicBool>,
    name: String,
) -> std::thread::JoinHandle<()> {
    let bus = graph.pipeline.bus().expect("a pipeline has a bus");
    let pipe = graph.pipeline.downgrade();
    std::thread::Builder::new()
        .name(format!("bus-{name}"))
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
                use gst::MessageView as V;
                match msg.view() {
                    V::Eos(_) => {
                        let _ = tx.blocking_send(BusMsg::Eos);
                    }
                    V::Error(e) => {
                        let element = e.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                        let message = match e.debug() {
                            Some(d) => format!("{} ({d})", e.error()),
                            None => e.error().to_string(),
                        };
                        let _ = tx.blocking_send(BusMsg::Error { element, message });
                    }
                    V::Warning(w) => warn!(stream = %name, element = ?w.src().map(|s| s.path_string()), "{}", w.error()),
                    V::Latency(_) => {
                        if let Some(p) = pipe.upgrade() {
                            let _ = p.recalculate_latency();
                        }
                    }
                    _ => {}
                }
            }
        })
        .expect("spawning a thread")
}

struct Coordinator<'a> {
    cfg: WorkerConfig,
    graph: &'a MediaPipeline,
    dubber: Arc<dyn Dubber>,
    metrics: Arc<Metrics>,
    status: StatusCell,
    hook: Option<FragmentHook>,
    /// Every fragment not yet pushed to the output, with its stage and deadline.
    ledger: Ledger,
    paused: bool,
    segment_dir: Option<PathBuf>,
    internal_tx: Option<mpsc::Sender<Internal>>,
    first_pts_ns: Option<u64>,
    /// Constant PTS shift compensating the AAC priming (decided at the first fragment).
    pts_shift_ns: Option<u64>,
    stream_format: AudioFormat,
}

impl Coordinator<'_> {
    fn running_time_now(&self) -> Option<u64> {
        let clock = self.graph.pipeline.clock()?;
        let base = self.graph.pipeline.base_time()?;
        Some(clock.time().nseconds().saturating_sub(base.nseconds()))
    }

    fn on_fragment(&mut self, frag: Fragment) {
        let name = self.cfg.name.clone();
        let first = *self.first_pts_ns.get_or_insert(frag.start_ns);
        // The encoder's priming puts audio content AAC_PRIMING_MS late; stamp every buffer
        // that much earlier (the same for the whole stream, so the timeline stays
        // continuous). Not possible when the stream starts at running time ~0.
        let shift_ns = *self
            .pts_shift_ns
            .get_or_insert((AAC_PRIMING_MS * 1e6) as u64);
        let shift_ns = shift_ns.min(first);
        self.pts_shift_ns = Some(shift_ns);
        lock(&self.status).fragments += 1;
        let drift_ms = frag.max_drift_ns as f64 / 1e6;
        self.metrics
            .av_sync_delta_ms
            .with_label_values(&[&name])
            .set(drift_ms + (AAC_PRIMING_MS - shift_ns as f64 / 1e6).abs());

        // Deadline on the pipeline clock, converted to a tokio instant.
        let render_rt = frag.start_ns + self.cfg.delay_ms as u64 * 1_000_000;
        let margin = self.cfg.deadline_margin_ms as u64 * 1_000_000;
        let now_rt = self
            .running_time_now()
            .unwrap_or(frag.start_ns + frag.duration_ns);
        let left_ns = (render_rt.saturating_sub(margin)) as i128 - now_rt as i128;
        let deadline = Instant::now() + Duration::from_nanos(left_ns.max(0) as u64);
        let seq = frag.sequence;
        debug!(stream = %name, seq, pts_ms = (frag.start_ns - first) / 1_000_000, budget_ms = left_ns / 1_000_000, "fragment cut");

        let pcm48 = frag.pcm.clone();
        let pts_ns = frag.start_ns - first;
        let ready = self.dubber.is_ready() && !self.paused && left_ns > 0;
        let why_not = if !self.dubber.is_ready() {
            "STS unavailable"
        } else if self.paused {
            "STS asked to pause"
        } else {
            "no time left before the deadline"
        };
        self.ledger.open(frag, deadline);

        let tx = self.internal_tx.clone().expect("set before the loop");
        let dubber = self.dubber.clone();
        let stream_id = self.cfg.name.clone();
        let seg_dir = self.segment_dir.clone();
        let keep = self.cfg.segment_keep;
        let format = self.stream_format.clone();
        let why_not = why_not.to_string();
        tokio::spawn(async move {
            let conv = tokio::task::spawn_blocking(move || {
                let s16 = pcm::internal_to_sts(&pcm48);
                if let Some(d) = &seg_dir {
                    artifacts::prune(d, seq, keep);
                    let p = d.join(format!("{seq:06}-original.wav"));
                    if let Err(e) = pcm::write_wav(&p, &s16, STS_RATE, STS_CHANNELS) {
                        warn!(path = %p.display(), error = %e, "cannot write original WAV");
                    }
                }
                s16
            })
            .await;
            let Ok(mut s16) = conv else { return };
            // The STS checks length == duration within one frame: send whole milliseconds.
            let per_ms = (STS_RATE / 1000) as usize;
            let duration_ms = (s16.len() / per_ms) as u32;
            s16.truncate(duration_ms as usize * per_ms);
            if !ready || duration_ms < 100 {
                let reason = if ready {
                    "fragment too short to dub".to_string()
                } else {
                    why_not
                };
                let _ = tx.send(Internal::NotSent { seq, reason }).await;
                return;
            }
            // The STS sheds the fragment instead of working on it once the answer could no
            // longer be placed (protocol 1.3; older servers ignore the field).
            let answer_within_ms = deadline
                .saturating_duration_since(Instant::now())
                .as_millis();
            if answer_within_ms == 0 {
                let reason = "no time left before the deadline".to_string();
                let _ = tx.send(Internal::NotSent { seq, reason }).await;
                return;
            }
            let fd = FragmentData {
                fragment_id: format!("{stream_id}-{seq}"),
                stream_id,
                sequence_number: seq,
                pts_ms: (pts_ns / 1_000_000) as i64,
                duration_ms,
                audio: AudioPayload::from_samples(&format, &s16),
                answer_within_ms: Some(u32::try_from(answer_within_ms).unwrap_or(u32::MAX)),
            };
            let sent_at = Instant::now();
            let result = dubber.submit(fd).await;
            let _ = tx
                .send(Internal::Submitted {
                    seq,
                    result,
                    sent_at,
                })
                .await;
        });
    }

    fn set_inflight(&self) {
        let n = self.ledger.in_flight();
        self.metrics
            .inflight
            .with_label_values(&[&self.cfg.name])
            .set(n as i64);
    }

    fn on_internal(&mut self, m: Internal) {
        let name = self.cfg.name.clone();
        match m {
            Internal::NotSent { seq, reason } => {
                self.ledger.resolve(seq, Instant::now(), |_| {
                    Resolution::original(Outcome::Fallback, reason)
                });
            }
            Internal::Submitted {
                seq,
                result,
                sent_at,
            } => {
                match result {
                    Ok(()) => self.ledger.sent(seq, sent_at),
                    Err(e) => {
                        warn!(stream = %name, seq, error = %e, "STS did not take the fragment; original audio");
                        self.ledger.resolve(seq, Instant::now(), |_| {
                            Resolution::original(Outcome::Failed, format!("not accepted: {e}"))
                        });
                    }
                }
                self.set_inflight();
            }
            Internal::Decoded {
                seq,
                result,
                processed,
            } => {
                let resolved = self.ledger.resolve(seq, Instant::now(), |roundtrip| match result {
                    Ok(pcm48) => Resolution::Dubbed {
                        pcm48,
                        processed,
                        roundtrip,
                    },
                    Err(e) => {
                        warn!(stream = %name, seq, error = %e, "malformed dubbed audio; original audio");
                        Resolution::Original {
                            outcome: Outcome::Failed,
                            reason: format!("malformed answer: {e}"),
                            processed: Some(processed),
                        }
                    }
                });
                match resolved {
                    Some(roundtrip) => {
                        self.metrics.sts_roundtrip.observe(roundtrip.as_secs_f64());
                        self.set_inflight();
                    }
                    // The deadline passed while decoding.
                    None => self.metrics.late_answers.with_label_values(&[&name]).inc(),
                }
            }
        }
    }

    fn on_event(&mut self, ev: DubEvent) {
        let name = self.cfg.name.clone();
        match ev {
            DubEvent::Ready { ready, reconnect } => {
                lock(&self.status).sts_ready = ready;
                if ready && reconnect {
                    self.metrics
                        .sts_reconnects
                        .with_label_values(&[&name])
                        .inc();
                    info!(stream = %name, "STS session re-established: dubbing resumes with the next fragment");
                } else if !ready {
                    warn!(stream = %name, "STS session lost: fragments go out with original audio until it returns");
                    self.paused = false;
                    let mut st = lock(&self.status);
                    if st.dubbing == Dubbing::Dubbing {
                        st.dubbing = Dubbing::FallingBack;
                        st.fallback_reason = Some(FallbackReason::StsDown);
                    }
                }
            }
            DubEvent::Backpressure(bp) => {
                debug!(stream = %name, inflight = bp.inflight, max = bp.max_inflight, action = ?bp.action, "STS backpressure");
                match bp.action {
                    BackpressureAction::Pause => self.paused = true,
                    BackpressureAction::Resume => self.paused = false,
                    BackpressureAction::SlowDown => {}
                }
            }
            DubEvent::Malformed { sequence, error } => {
                warn!(stream = %name, ?sequence, error = %error, "malformed STS answer");
                if let Some(seq) = sequence {
                    self.ledger.resolve(seq, Instant::now(), |_| {
                        Resolution::original(Outcome::Failed, format!("malformed answer: {error}"))
                    });
                }
            }
            DubEvent::Processed(processed) => {
                let seq = processed.sequence_number;
                match self.ledger.answer_fate(seq) {
                    AnswerFate::Awaited => {}
                    AnswerFate::Gone | AnswerFate::Late => {
                        self.metrics.late_answers.with_label_values(&[&name]).inc();
                        debug!(stream = %name, seq, "answer after the fragment was decided: dropped");
                        return;
                    }
                    AnswerFate::Duplicate => return,
                }
                let frames = self.ledger.get(seq).map_or(0, |e| e.frag.frames());
                let usable = matches!(
                    processed.status,
                    FragmentStatus::Success | FragmentStatus::Partial
                ) && processed.dubbed_audio.is_some();
                if !usable {
                    let (outcome, reason) = if processed.status == FragmentStatus::NoSpeech {
                        debug!(stream = %name, seq, "no speech: original audio");
                        (
                            Outcome::NoSpeech,
                            "no speech in the fragment: original audio".to_string(),
                        )
                    } else {
                        let reason = match &processed.error {
                            Some(e) => format!(
                                "STS {}: {} {}",
                                processed.status.as_str(),
                                e.code.as_str(),
                                e.message
                            ),
                            None => format!("STS {}", processed.status.as_str()),
                        };
                        (Outcome::Failed, reason)
                    };
                    let resolved =
                        self.ledger
                            .resolve(seq, Instant::now(), |_| Resolution::Original {
                                outcome,
                                reason,
                                processed: Some(processed),
                            });
                    if let Some(roundtrip) = resolved {
                        self.metrics.sts_roundtrip.observe(roundtrip.as_secs_f64());
                    }
                    self.set_inflight();
                    return;
                }
                let mix = self.cfg.mix;
                // Voice-over needs the original of the same span; replace does not.
                self.ledger.decoding(seq);
                let original = (mix.mode == MixMode::VoiceOver)
                    .then(|| self.ledger.get(seq).map(|e| e.frag.pcm.clone()))
                    .flatten();
                let tx = self.internal_tx.clone().expect("set before the loop");
                let format = self.stream_format.clone();
                let seg_dir = self.segment_dir.clone();
                tokio::spawn(async move {
                    let pr = processed.clone();
                    let res = tokio::task::spawn_blocking(move || {
                        let dubbed = decode_dubbed(&pr, &format, frames, seg_dir.as_deref())?;
                        Ok(match original {
                            Some(orig) => mix.mix(&orig, dubbed),
                            None => dubbed,
                        })
                    })
                    .await
                    .unwrap_or_else(|e| Err(format!("decoder task failed: {e}")));
                    let _ = tx
                        .send(Internal::Decoded {
                            seq,
                            result: res,
                            processed,
                        })
                        .await;
                });
            }
        }
    }

    /// Resolves every unanswered fragment whose deadline has passed with its original audio.
    fn on_deadlines(&mut self) {
        let name = &self.cfg.name;
        for (seq, sent) in self.ledger.expire(Instant::now()) {
            let reason = if sent {
                "no answer before the deadline"
            } else {
                "not sent before the deadline"
            };
            info!(stream = %name, seq, "{reason}: original audio");
        }
        self.set_inflight();
    }

    /// Pushes resolved fragments to the appsrc in sequence order.
    fn flush_ready(&mut self) {
        while let Some(e) = self.ledger.pop_ready() {
            self.push(e);
        }
    }

    fn push(&mut self, entry: Entry) {
        let name = self.cfg.name.clone();
        let (frag, deadline, resolution) = entry.into_resolved();
        let slack_ms = (deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i64)
            - (Instant::now()
                .saturating_duration_since(deadline)
                .as_millis() as i64);
        let first = self.first_pts_ns.unwrap_or(0);
        let mut rec = FragmentRecord {
            stream: name.clone(),
            sequence: frag.sequence,
            pts_ms: (frag.start_ns - first) / 1_000_000,
            duration_ms: frag.duration_ns / 1_000_000,
            status: Outcome::Fallback,
            reason: None,
            sts_status: None,
            transcript: String::new(),
            translation: String::new(),
            spoken: None,
            roundtrip_ms: None,
            processing_time_ms: None,
            stage_ms: None,
            slack_ms,
        };
        let fill = |rec: &mut FragmentRecord, pr: &FragmentProcessed| {
            rec.sts_status = Some(pr.status.as_str().into());
            rec.transcript = pr.transcript.clone();
            rec.translation = pr.translated_text.clone();
            rec.processing_time_ms = Some(pr.processing_time_ms);
            rec.stage_ms = Some(pr.stage_ms);
        };
        let pcm48 = match resolution {
            Resolution::Dubbed {
                pcm48,
                processed,
                roundtrip,
            } => {
                rec.status = Outcome::Processed;
                rec.roundtrip_ms = Some(roundtrip.as_millis() as u64);
                fill(&mut rec, &processed);
                pcm48
            }
            Resolution::Original {
                outcome,
                reason,
                processed,
            } => {
                rec.status = outcome;
                rec.reason = Some(reason);
                if let Some(pr) = &processed {
                    fill(&mut rec, pr);
                }
                frag.pcm
            }
        };
        let pts = frag.start_ns - self.pts_shift_ns.unwrap_or(0).min(frag.start_ns);
        let buf = pipeline::pcm_buffer(&pcm48, pts, frag.duration_ns);
        if let Err(e) = self.graph.appsrc.push_buffer(buf) {
            // Flushing/EOS: the pipeline is going down; nothing to do but say so.
            debug!(stream = %name, seq = rec.sequence, error = ?e, "appsrc refused the buffer");
        }
        self.metrics
            .fragments
            .with_label_values(&[&name, rec.status.as_str()])
            .inc();
        {
            let why = fallback_reason(rec.status, self.dubber.is_ready(), self.paused);
            let mut st = lock(&self.status);
            match rec.status {
                Outcome::Processed => st.processed += 1,
                Outcome::Fallback => st.fallback += 1,
                Outcome::Failed => st.failed += 1,
                Outcome::NoSpeech => st.no_speech += 1,
            }
            st.dubbing = if why.is_some() {
                Dubbing::FallingBack
            } else {
                Dubbing::Dubbing
            };
            st.fallback_reason = why;
        }
        let stats = self.ledger.len();
        info!(stream = %name, seq = rec.sequence, pts_ms = rec.pts_ms, status = rec.status.as_str(), slack_ms, queued = stats,
              transcript = %rec.transcript, translation = %rec.translation, "fragment placed");
        if let Some(h) = &self.hook {
            h(&rec);
        }
        if let Some(dir) = self.segment_dir.clone() {
            let line = serde_json::to_string(&rec).unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                let path = dir.join(artifacts::LOG_FILE);
                match OpenOptions::new().create(true).append(true).open(&path) {
                    Ok(mut f) => {
                        let _ = writeln!(f, "{line}");
                    }
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "cannot append fragment log")
                    }
                }
            });
        }
    }
}

/// Checks and converts an STS answer to internal-format audio of exactly `frames` frames.
fn decode_dubbed(
    pr: &FragmentProcessed,
    format: &AudioFormat,
    frames: usize,
    seg_dir: Option<&std::path::Path>,
) -> Result<Vec<i16>, String> {
    let audio = pr.dubbed_audio.as_ref().ok_or("no dubbed_audio")?;
    let got = audio.audio_format();
    if &got != format {
        return Err(format!(
            "dubbed audio is {} Hz x{} {}; expected the stream format {} Hz x{} {}",
            got.sample_rate_hz,
            got.channels,
            got.format,
            format.sample_rate_hz,
            format.channels,
            format.format
        ));
    }
    // Bound what we decode: twice the fragment is far beyond any honest answer.
    let max_bytes = frames.div_ceil(3) * 2 * 2 + 1024;
    let mut mono = audio.decode(max_bytes).map_err(|e| e.to_string())?;
    if let Some(d) = seg_dir {
        let p = d.join(format!("{:06}-dubbed.wav", pr.sequence_number));
        if let Err(e) = pcm::write_wav(&p, &mono, STS_RATE, STS_CHANNELS) {
            warn!(path = %p.display(), error = %e, "cannot write dubbed WAV");
        }
    }
    // The STS promises duration == duration_ms; tolerate a frame or two, pad/cut the rest.
    let want16 = frames.div_ceil(3);
    pcm::fit_len(&mut mono, want16);
    let mut out = pcm::sts_to_internal(&mono);
    pcm::fit_len(&mut out, frames * INTERNAL_CHANNELS as usize);
    Ok(out)
}

#[cfg(test)]
mod no_audio_tests {
    use super::*;
    use crate::pipeline::TrackLog;

    fn log(announced: &[&str], delivered: &[&str]) -> TrackLog {
        TrackLog {
            announced: announced.iter().map(|s| s.to_string()).collect(),
            delivered: delivered.iter().map(|s| s.to_string()).collect(),
            ..TrackLog::default()
        }
    }

    #[test]
    fn a_missing_track_names_the_transport_stage_where_it_stopped() {
        let mut t = log(&["video H264", "audio MPEG4-GENERIC"], &["audio/x-raw"]);
        t.arrived = vec!["stream 1".into(), "stream 0".into()];
        t.released = vec!["stream 1".into()];
        t.depayloaded = vec!["rtpmp4gdepay0: audio/mpeg".into()];
        assert_eq!(
            t.to_string(),
            "announced: video H264, audio MPEG4-GENERIC; arrived: stream 1, stream 0; \
             out of the jitter buffer: stream 1; depayloaded: rtpmp4gdepay0: audio/mpeg; \
             delivered: audio/x-raw"
        );
        let file = log(&[], &["audio/x-raw"]);
        assert_eq!(
            file.to_string(),
            "announced: nothing; delivered: audio/x-raw"
        );
    }

    #[test]
    fn announced_video_that_never_came_is_read_again() {
        let both = log(&["video H264", "audio MPEG4-GENERIC"], &["audio/x-raw"]);
        let after = (VIDEO_START_TIMEOUT_MS + 1) * 1_000_000;
        assert!(video_missing(&both, false, after));
        assert!(!video_missing(&both, true, after), "video came");
        assert!(!video_missing(&both, false, after / 2), "still in time");
        let audio_only = log(&["audio MPEG4-GENERIC"], &["audio/x-raw"]);
        assert!(
            !video_missing(&audio_only, false, after),
            "no video announced"
        );
        let file = log(&[], &["audio/x-raw"]);
        assert!(
            !video_missing(&file, false, after),
            "a file announces nothing"
        );
        let e = WorkerError::NoVideo {
            stream: "s1".into(),
            uri: "rtsp://h/live/s1/in".into(),
            timeout_ms: VIDEO_START_TIMEOUT_MS,
            tracks: Box::new(both),
        };
        let text = e.to_string();
        assert!(
            text.contains("audio but no video")
                && text.contains("delivered: audio/x-raw")
                && text.contains("reading it again"),
            "{text}"
        );
    }

    #[test]
    fn announced_audio_that_never_came_is_read_again() {
        let e = no_audio_error(
            "s1",
            "rtsp://h/live/s1/in",
            log(&["video H264", "audio MPEG4-GENERIC"], &["video/x-h264"]),
        );
        assert!(matches!(e, WorkerError::NoAudio { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("'s1'") && text.contains("reading it again"),
            "{text}"
        );
        assert!(
            text.contains("announced: video H264, audio MPEG4-GENERIC; delivered: video/x-h264"),
            "{text}"
        );
    }

    #[test]
    fn an_input_without_an_audio_track_says_so() {
        let e = no_audio_error(
            "s2",
            "rtsp://h/live/s2/in",
            log(&["video H264"], &["video/x-h264"]),
        );
        assert!(matches!(e, WorkerError::NoAudioTrack { .. }), "{e}");
        assert!(e.to_string().contains("has no audio track"), "{e}");
    }

    #[test]
    fn unknown_announcement_is_treated_as_a_missing_read() {
        // A file or RTMP input announces nothing up front.
        let e = no_audio_error("s3", "file:///x.mp4", log(&[], &["video/x-h264"]));
        assert!(matches!(e, WorkerError::NoAudio { .. }), "{e}");
        assert!(e.to_string().contains("announced: nothing"), "{e}");
    }
}

#[cfg(test)]
mod health_state_tests {
    use super::*;

    #[test]
    fn the_output_state_names_why_it_falls_back() {
        assert_eq!(fallback_reason(Outcome::Processed, true, false), None);
        // No speech: the original is what belongs there, not a fallback.
        assert_eq!(fallback_reason(Outcome::NoSpeech, true, false), None);
        assert_eq!(
            fallback_reason(Outcome::Fallback, false, false),
            Some(FallbackReason::StsDown)
        );
        assert_eq!(
            fallback_reason(Outcome::Fallback, true, true),
            Some(FallbackReason::StsPaused)
        );
        assert_eq!(
            fallback_reason(Outcome::Fallback, true, false),
            Some(FallbackReason::Late)
        );
        assert_eq!(
            fallback_reason(Outcome::Failed, true, false),
            Some(FallbackReason::StsError)
        );
    }

    #[test]
    fn a_stream_leaves_no_metric_series_behind() {
        let m = Metrics::new();
        for outcome in Outcome::ALL {
            m.fragments
                .with_label_values(&["a", outcome.as_str()])
                .inc();
            m.fragments
                .with_label_values(&["b", outcome.as_str()])
                .inc();
        }
        for kind in crate::metrics::RESYNC_KINDS {
            m.resync_frames.with_label_values(&["a", kind]).inc();
        }
        m.inflight.with_label_values(&["a"]).set(1);
        m.output_delay_ms.with_label_values(&["a"]).set(9000);
        assert!(m.render().contains("stream=\"a\""));
        m.forget_stream("a");
        let text = m.render();
        assert!(!text.contains("stream=\"a\""), "{text}");
        // Other streams keep theirs.
        assert!(text.contains("stream=\"b\""), "{text}");
    }
}
