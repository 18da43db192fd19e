//! The GStreamer graph of one worker: input -> (H.264 passthrough, PCM appsink) and
//! (appsrc with replacement PCM -> AAC) -> muxer -> RTMP or file, running a fixed delay
//! behind the input.
//!
//! ```text
//!                  +-> [clocksync] h264parse avc/au -> queue (>= 2*delay) ------------+
//! uridecodebin ----|                                                                   +-> mux -> sink (sync)
//!  (any URI)       +-> [clocksync] audioconvert/resample S16 48k 2ch -> appsink         |
//!                                       ... fragments, STS, deadline ...                |
//!                      appsrc (live, min-latency = delay, original PTS) -> AAC --------+
//! ```
//! `clocksync` is only inserted for non-live inputs (files), so they play in real time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::pcm::{INTERNAL_CHANNELS, INTERNAL_RATE};

/// Where a worker writes its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// Publish FLV over RTMP with an explicit app and stream name (see PLATFORM-NOTES: some
    /// servers keep only the part of the app before the first `/`).
    Rtmp {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// RTMP application, e.g. `live`.
        app: String,
        /// Stream key, e.g. `<name>/out`.
        stream: String,
    },
    /// Write a file; the container follows the extension.
    File {
        /// Destination path.
        path: PathBuf,
        /// Container.
        container: Container,
    },
}

/// File containers the worker can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// `.mp4` (mp4mux; finished on EOS).
    Mp4,
    /// `.mkv` (matroskamux).
    Mkv,
    /// `.flv` (flvmux).
    Flv,
}

/// Errors in understanding an input or output location.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Unknown output form.
    #[error("output '{0}' is not understood: expected rtmp://HOST[:PORT]/APP/STREAM or a file ending in .mp4, .mkv or .flv")]
    Unsupported(String),
    /// An RTMP URL without app or stream.
    #[error("RTMP output '{0}' needs an application and a stream name: rtmp://HOST[:PORT]/APP/STREAM (e.g. rtmp://127.0.0.1:1935/live/demo/out)")]
    RtmpPath(String),
    /// Input path that does not exist.
    #[error("input '{0}' is neither a URI (scheme://...) nor an existing file")]
    MissingInput(String),
}

impl OutputTarget {
    /// Parses `rtmp://host[:port]/app/stream...` or a file path with a known extension.
    pub fn parse(s: &str) -> Result<Self, TargetError> {
        if let Some(rest) = s.strip_prefix("rtmp://") {
            let (authority, path) = rest
                .split_once('/')
                .ok_or_else(|| TargetError::RtmpPath(s.into()))?;
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse::<u16>()
                        .map_err(|_| TargetError::RtmpPath(s.into()))?,
                ),
                None => (authority.to_string(), 1935),
            };
            let (app, stream) = path
                .split_once('/')
                .ok_or_else(|| TargetError::RtmpPath(s.into()))?;
            if host.is_empty() || app.is_empty() || stream.is_empty() {
                return Err(TargetError::RtmpPath(s.into()));
            }
            return Ok(Self::Rtmp {
                host,
                port,
                app: app.into(),
                stream: stream.into(),
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        let lower = path.to_ascii_lowercase();
        let container = if lower.ends_with(".mp4") || lower.ends_with(".m4v") {
            Container::Mp4
        } else if lower.ends_with(".mkv") {
            Container::Mkv
        } else if lower.ends_with(".flv") {
            Container::Flv
        } else {
            return Err(TargetError::Unsupported(s.into()));
        };
        Ok(Self::File {
            path: PathBuf::from(path),
            container,
        })
    }

    /// Human-readable location for logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Rtmp {
                host,
                port,
                app,
                stream,
            } => format!("rtmp://{host}:{port}/{app}/{stream}"),
            Self::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Turns a user-given input (URI or file path) into a URI GStreamer can open.
pub fn input_uri(s: &str) -> Result<String, TargetError> {
    if s.contains("://") {
        return Ok(s.to_string());
    }
    let p = std::path::Path::new(s);
    let abs = std::fs::canonicalize(p).map_err(|_| TargetError::MissingInput(s.into()))?;
    gst::glib::filename_to_uri(&abs, None)
        .map(|u| u.to_string())
        .map_err(|_| TargetError::MissingInput(s.into()))
}

/// RTSP inputs get their own source (see [`rtsp_input`]).
fn is_rtsp_uri(uri: &str) -> bool {
    RTSP_SCHEMES.contains(&uri_scheme(uri).as_str())
}

/// The URI schemes rtspsrc reads.
const RTSP_SCHEMES: [&str; 3] = ["rtsp", "rtsps", "rtspt"];
/// Live sources beyond those the control API takes (`policy::LIVE_INPUT_SCHEMES`): raw
/// RTP/UDP, which the command line may read.
const OTHER_LIVE_SCHEMES: [&str; 2] = ["udp", "rtp"];

/// A URI's scheme, lower-cased; empty when it has none (a plain path).
fn uri_scheme(uri: &str) -> String {
    uri.split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Live inputs are paced by their source; everything else is paced by `clocksync`.
pub fn is_live_uri(uri: &str) -> bool {
    let scheme = uri_scheme(uri);
    crate::policy::LIVE_INPUT_SCHEMES
        .iter()
        .chain(&OTHER_LIVE_SCHEMES)
        .any(|live| *live == scheme)
}

/// Errors building or linking the graph.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A GStreamer element is not installed.
    #[error("GStreamer element '{0}' is missing (install gstreamer1.0-plugins-good/bad/ugly and gstreamer1.0-libav)")]
    MissingElement(&'static str),
    /// Linking failed.
    #[error("could not link {0}")]
    Link(String),
    /// A state change failed.
    #[error("pipeline refused to start: {0}")]
    State(String),
}

/// The input's tracks as the pipeline learns them, for diagnosing a missing one.
#[derive(Debug, Clone, Default)]
pub struct InputTracks(Arc<std::sync::Mutex<TrackLog>>);

/// See [`InputTracks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackLog {
    /// Streams the source announced before sending media (RTSP SDP: `audio MPEG4-GENERIC`).
    pub announced: Vec<String>,
    /// RTSP streams whose first RTP or RTCP packet reached the receiver (`stream 0`, by SDP
    /// order): what came over the wire, before any jitter buffer.
    pub arrived: Vec<String>,
    /// RTSP streams that came out of the jitter buffer as RTP pads (`stream 0`).
    pub released: Vec<String>,
    /// Depayloaders the decoder plugged, each with what its first output buffer carried
    /// (`rtph264depay0: video/x-h264`), or `rtph264depay0: nothing yet`.
    pub depayloaded: Vec<String>,
    /// Decoded pads the input exposed (`video/x-h264`, `audio/x-raw`).
    pub delivered: Vec<String>,
}

impl InputTracks {
    fn update(&self, f: impl FnOnce(&mut TrackLog)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of what is known so far.
    pub fn snapshot(&self) -> TrackLog {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl TrackLog {
    /// True when the source announced an audio stream (unknown: `None`, e.g. a file).
    pub fn announced_audio(&self) -> Option<bool> {
        self.announced_kind("audio")
    }

    /// True when the source announced a video stream (unknown: `None`, e.g. a file).
    pub fn announced_video(&self) -> Option<bool> {
        self.announced_kind("video")
    }

    fn announced_kind(&self, kind: &str) -> Option<bool> {
        (!self.announced.is_empty()).then(|| self.announced.iter().any(|t| t.starts_with(kind)))
    }
}

impl std::fmt::Display for TrackLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "nothing".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(f, "announced: {}", list(&self.announced))?;
        // Transport stages only exist for RTSP; a file input has neither.
        if !self.arrived.is_empty() || !self.released.is_empty() {
            write!(
                f,
                "; arrived: {}; out of the jitter buffer: {}; depayloaded: {}",
                list(&self.arrived),
                list(&self.released),
                list(&self.depayloaded)
            )?;
        }
        write!(f, "; delivered: {}", list(&self.delivered))
    }
}

/// Everything the worker touches in a running graph.
pub struct MediaPipeline {
    /// The pipeline.
    pub pipeline: gst::Pipeline,
    /// Where replacement audio is pushed.
    pub appsrc: gst_app::AppSrc,
    /// Decoded input audio comes out here.
    pub appsink: gst_app::AppSink,
    /// Head of the video branch (EOS is sent here by the idle watchdog).
    pub video_head: gst::Element,
    /// Head of the audio branch.
    pub audio_head: gst::Element,
    /// Monotonic ns (see [`crate::worker`]) of the last input buffer on any branch; 0 = none yet.
    pub last_input: Arc<AtomicU64>,
    /// Monotonic ns of the last input buffer on the audio branch; 0 = none yet.
    pub last_audio: Arc<AtomicU64>,
    /// Monotonic ns of the last input buffer on the video branch; 0 = none yet.
    pub last_video: Arc<AtomicU64>,
    /// What the input announced (RTSP: its SDP's streams) and which decoded tracks it
    /// delivered; named in the error when a track never comes.
    pub tracks: InputTracks,
    /// Whether clocksync paces a non-live input.
    pub paced: bool,
}

fn make(factory: &'static str) -> Result<gst::Element, PipelineError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| PipelineError::MissingElement(factory))
}

fn link(chain: &[&gst::Element]) -> Result<(), PipelineError> {
    gst::Element::link_many(chain.iter().copied()).map_err(|e| {
        PipelineError::Link(format!(
            "{}: {e}",
            chain
                .iter()
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>()
                .join(" ! ")
        ))
    })
}

/// The internal raw audio caps.
pub fn internal_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("layout", "interleaved")
        .field("rate", INTERNAL_RATE as i32)
        .field("channels", INTERNAL_CHANNELS as i32)
        .build()
}

/// Parameters of the graph.
#[derive(Debug, Clone)]
pub struct GraphSpec {
    /// Input URI.
    pub uri: String,
    /// Output.
    pub output: OutputTarget,
    /// Fixed output delay.
    pub delay: Duration,
    /// AAC bitrate (bit/s).
    pub aac_bitrate: i32,
    /// Monotonic clock origin for `last_input` stamps.
    pub epoch: std::time::Instant,
}

/// Builds the graph (not started). Dynamic input pads are linked as they appear.
pub fn build(spec: &GraphSpec) -> Result<MediaPipeline, PipelineError> {
    let pipeline = gst::Pipeline::with_name("worker");
    let paced = !is_live_uri(&spec.uri);
    let delay_ns = spec.delay.as_nanos() as u64;

    let tracks = InputTracks::default();
    let input = if is_rtsp_uri(&spec.uri) {
        rtsp_input(&spec.uri, &tracks)?
    } else {
        let src = make("uridecodebin")?;
        src.set_property("uri", &spec.uri);
        src.set_property("caps", decoded_caps());
        watch_depayloaders(&src, &tracks);
        Input::Decoded(src)
    };
    let src = input.element().clone();

    // Video branch.
    let vsync = if paced {
        Some(make("clocksync")?)
    } else {
        None
    };
    let vparse = make("h264parse")?;
    vparse.set_property("config-interval", -1i32);
    let vcaps = make("capsfilter")?;
    vcaps.set_property(
        "caps",
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build(),
    );
    let vqueue = make("queue")?;
    // Holds video for the whole delay (plus slack): never leaky, no byte/buffer limits.
    vqueue.set_property("max-size-time", 2 * delay_ns + 2_000_000_000);
    vqueue.set_property("max-size-bytes", 0u32);
    vqueue.set_property("max-size-buffers", 0u32);

    // Audio branch to the fragmenter.
    let async_ = make("queue")?;
    let aconv = make("audioconvert")?;
    let ares = make("audioresample")?;
    let async_clock = if paced {
        Some(make("clocksync")?)
    } else {
        None
    };
    let appsink = gst_app::AppSink::builder()
        .caps(&internal_caps())
        .sync(false)
        .max_buffers(0)
        .build();
    appsink.set_property("emit-signals", false);
    // No preroll anywhere: the output cannot produce a buffer before the appsink has
    // delivered a whole fragment, so waiting for sinks to preroll would deadlock.
    appsink.set_property("async", false);

    // Replacement audio branch.
    let appsrc = gst_app::AppSrc::builder()
        .caps(&internal_caps())
        .format(gst::Format::Time)
        .is_live(true)
        .do_timestamp(false)
        .min_latency(delay_ns as i64)
        .max_latency(delay_ns as i64)
        .max_bytes(256 * 1024 * 1024)
        .block(false)
        .stream_type(gst_app::AppStreamType::Stream)
        .build();
    let oconv = make("audioconvert")?;
    let ores = make("audioresample")?;
    let enc = make("avenc_aac")?;
    enc.set_property("bitrate", spec.aac_bitrate);
    let aparse = make("aacparse")?;
    let oqueue = make("queue")?;

    let (mux, sink): (gst::Element, gst::Element) = match &spec.output {
        OutputTarget::Rtmp {
            host,
            port,
            app,
            stream,
        } => {
            let mux = make("flvmux")?;
            mux.set_property("streamable", true);
            let sink = make("rtmp2sink")?;
            sink.set_property("host", host);
            sink.set_property("port", *port as i32);
            sink.set_property("application", app);
            sink.set_property("stream", stream);
            // Connect on the first buffer: the output is silent for the whole delay and some
            // servers drop an idle publisher after ~2 s.
            sink.set_property("async-connect", false);
            sink.set_property("sync", true);
            sink.set_property("async", false);
            (mux, sink)
        }
        OutputTarget::File { path, container } => {
            let mux = match container {
                Container::Mp4 => make("mp4mux")?,
                Container::Mkv => make("matroskamux")?,
                Container::Flv => make("flvmux")?,
            };
            let sink = make("filesink")?;
            sink.set_property("location", path.display().to_string());
            sink.set_property("sync", false);
            sink.set_property("async", false);
            (mux, sink)
        }
    };
    if mux.find_property("latency").is_some() {
        mux.set_property("latency", 0u64);
    }

    let mut all: Vec<&gst::Element> = vec![&src, &vparse, &vcaps, &vqueue, &async_, &aconv, &ares];
    if let Some(v) = &vsync {
        all.push(v);
    }
    if let Some(a) = &async_clock {
        all.push(a);
    }
    let appsink_el = appsink.upcast_ref::<gst::Element>();
    let appsrc_el = appsrc.upcast_ref::<gst::Element>();
    all.extend([
        appsink_el, appsrc_el, &oconv, &ores, &enc, &aparse, &oqueue, &mux, &sink,
    ]);
    pipeline
        .add_many(all.iter().copied())
        .map_err(|e| PipelineError::Link(e.to_string()))?;

    let video_head = match &vsync {
        Some(v) => {
            link(&[v, &vparse, &vcaps, &vqueue])?;
            v.clone()
        }
        None => {
            link(&[&vparse, &vcaps, &vqueue])?;
            vparse.clone()
        }
    };
    let audio_head = match &async_clock {
        Some(a) => {
            link(&[a, &async_, &aconv, &ares, appsink_el])?;
            a.clone()
        }
        None => {
            link(&[&async_, &aconv, &ares, appsink_el])?;
            async_.clone()
        }
    };
    link(&[appsrc_el, &oconv, &ores, &enc, &aparse, &oqueue])?;
    let (vtmpl, atmpl) = if mux.pad_template("video").is_some() {
        ("video", "audio")
    } else {
        ("video_%u", "audio_%u")
    };
    let mux_v = mux
        .request_pad_simple(vtmpl)
        .ok_or_else(|| PipelineError::Link(format!("{} has no {vtmpl} pad", mux.name())))?;
    let mux_a = mux
        .request_pad_simple(atmpl)
        .ok_or_else(|| PipelineError::Link(format!("{} has no {atmpl} pad", mux.name())))?;
    vqueue
        .static_pad("src")
        .expect("queue has src")
        .link(&mux_v)
        .map_err(|e| PipelineError::Link(format!("video queue -> mux: {e:?}")))?;
    oqueue
        .static_pad("src")
        .expect("queue has src")
        .link(&mux_a)
        .map_err(|e| PipelineError::Link(format!("audio queue -> mux: {e:?}")))?;
    link(&[&mux, &sink])?;

    // Input activity stamps, for the idle watchdog (any branch) and the missing-audio check.
    let last_input = Arc::new(AtomicU64::new(0));
    let last_audio = Arc::new(AtomicU64::new(0));
    let last_video = Arc::new(AtomicU64::new(0));
    for (head, branch) in [
        (&video_head, last_video.clone()),
        (&audio_head, last_audio.clone()),
    ] {
        let li = last_input.clone();
        let epoch = spec.epoch;
        head.static_pad("sink").expect("sink pad").add_probe(
            gst::PadProbeType::BUFFER,
            move |_, _| {
                let now = epoch.elapsed().as_nanos().max(1) as u64;
                li.store(now, Ordering::Relaxed);
                branch.store(now, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            },
        );
    }

    // Repeated input video timestamps get spread out before h264parse sees them.
    let spreader = std::sync::Mutex::new(RepeatedPtsSpreader::default());
    video_head.static_pad("sink").expect("sink pad").add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() {
                if let Some(pts) = buffer.pts() {
                    let out = spreader.lock().unwrap_or_else(|p| p.into_inner()).next(pts);
                    if out != pts {
                        let b = buffer.make_mut();
                        if b.dts() == Some(pts) {
                            b.set_dts(out);
                        }
                        b.set_pts(out);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        },
    );

    // Link input pads as they appear.
    let vhead = video_head.clone();
    let ahead = audio_head.clone();
    let pipe_weak = pipeline.downgrade();
    let delivered = tracks.clone();
    let on_decoded_pad = move |pad: &gst::Pad| {
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(s) = caps.structure(0) else { return };
        let name = s.name().to_string();
        delivered.update(|t| t.delivered.push(name.clone()));
        let target = if name == "video/x-h264" {
            Some(&vhead)
        } else if name == "audio/x-raw" {
            Some(&ahead)
        } else {
            None
        };
        match target {
            Some(head) => {
                let sinkpad = head.static_pad("sink").expect("sink pad");
                if sinkpad.is_linked() {
                    tracing::warn!(caps = %name, "input has a second {name} track: ignoring it");
                    attach_fakesink(&pipe_weak, pad);
                } else if let Err(e) = pad.link(&sinkpad) {
                    tracing::error!(caps = %name, error = ?e, "could not link input pad");
                }
            }
            None if name.starts_with("video/") => {
                if let Some(p) = pipe_weak.upgrade() {
                    let msg = format!(
                        "input video is {name}: only H.264 can be passed through (no re-encode)"
                    );
                    let _ = p.post_message(
                        gst::message::Error::builder(gst::CoreError::Negotiation, &msg).build(),
                    );
                }
            }
            None => {
                tracing::info!(caps = %name, "ignoring input track");
                attach_fakesink(&pipe_weak, pad);
            }
        }
    };
    match input {
        Input::Decoded(src) => {
            src.connect_pad_added(move |_, pad| on_decoded_pad(pad));
        }
        Input::Rtsp(rtspsrc) => {
            decode_each_rtsp_stream(&rtspsrc, &pipeline, &tracks, on_decoded_pad);
        }
    }

    Ok(MediaPipeline {
        pipeline,
        appsrc,
        appsink,
        video_head,
        audio_head,
        last_input,
        last_audio,
        last_video,
        tracks,
        paced,
    })
}

/// The input end of the graph.
enum Input {
    /// A `uridecodebin` (files, other live schemes): its pads are decoded tracks.
    Decoded(gst::Element),
    /// An `rtspsrc`: its pads are RTP streams, each decoded by a `decodebin` of its own.
    Rtsp(gst::Element),
}

impl Input {
    fn element(&self) -> &gst::Element {
        match self {
            Input::Decoded(e) | Input::Rtsp(e) => e,
        }
    }
}

/// Where decoding stops: H.264 (passed through, never re-encoded) and raw audio.
fn decoded_caps() -> gst::Caps {
    gst::Caps::builder_full()
        .structure(gst::Structure::new_empty("video/x-h264"))
        .structure(gst::Structure::new_empty("audio/x-raw"))
        .build()
}

/// An `rtspsrc` for `uri`: interleaved over TCP, its SDP's streams and their transport
/// recorded in `tracks`.
///
/// Not `uridecodebin`: it stops listening for new source pads when rtspsrc says
/// `no-more-pads`, and rtspsrc can say so before it has added the last stream's pad (two
/// streams' first packets leave their jitter buffers together; the thread that marks the
/// last stream added emits `no-more-pads` while the other is still adding its pad). That
/// pad then never got a decoder: a read with audio but no video, about once in 50 reads of
/// a publication whose tracks start together (2026-12-07, docs/media-service.md).
fn rtsp_input(uri: &str, tracks: &InputTracks) -> Result<Input, PipelineError> {
    let rtspsrc = gst::ElementFactory::make("rtspsrc")
        .name("source")
        .property("location", uri)
        .build()
        .map_err(|_| PipelineError::MissingElement("rtspsrc"))?;
    // RTSP over TCP: interleaved RTP, no UDP port ranges, works through NAT/compose.
    rtspsrc.set_property_from_str("protocols", "tcp");
    watch_rtsp_transport(&rtspsrc, tracks);
    // The SDP's streams, in order: what the server says it will send.
    let announced = tracks.clone();
    rtspsrc.connect("select-stream", false, move |args| {
        if let Some(Ok(caps)) = args.get(2).map(|v| v.get::<gst::Caps>()) {
            if let Some(s) = caps.structure(0) {
                let media = s.get::<String>("media").unwrap_or_default();
                let enc = s.get::<String>("encoding-name").unwrap_or_default();
                announced.update(|t| t.announced.push(format!("{media} {enc}")));
            }
        }
        Some(true.to_value())
    });
    Ok(Input::Rtsp(rtspsrc))
}

/// Gives every RTP stream rtspsrc adds, whenever it adds it, a `decodebin` whose decoded pad
/// goes to `on_decoded_pad`.
fn decode_each_rtsp_stream(
    rtspsrc: &gst::Element,
    pipeline: &gst::Pipeline,
    tracks: &InputTracks,
    on_decoded_pad: impl Fn(&gst::Pad) + Send + Sync + 'static,
) {
    let on_decoded_pad = Arc::new(on_decoded_pad);
    let pipe_weak = pipeline.downgrade();
    let tracks = tracks.clone();
    rtspsrc.connect_pad_added(move |_, pad| {
        let Some(pipe) = pipe_weak.upgrade() else {
            return;
        };
        let fail = |what: String| {
            let msg = format!("RTSP stream {}: {what}", pad.name());
            let _ = pipe.post_message(
                gst::message::Error::builder(gst::CoreError::Negotiation, &msg).build(),
            );
        };
        let decoder = match gst::ElementFactory::make("decodebin")
            .property("caps", decoded_caps())
            .build()
        {
            Ok(d) => d,
            Err(_) => return fail("no decodebin element".into()),
        };
        watch_depayloaders(&decoder, &tracks);
        let on_decoded_pad = on_decoded_pad.clone();
        decoder.connect_pad_added(move |_, p| on_decoded_pad(p));
        if pipe.add(&decoder).is_err() {
            return fail("could not add its decoder".into());
        }
        let sink = decoder
            .static_pad("sink")
            .expect("decodebin has a sink pad");
        if let Err(e) = pad.link(&sink) {
            return fail(format!("could not link it to its decoder: {e:?}"));
        }
        if decoder.sync_state_with_parent().is_err() {
            fail("its decoder refused to start".into());
        }
    });
}

/// Records, per RTSP stream, when its first packet arrives (rtpbin's `on-new-ssrc`) and when
/// it leaves the jitter buffer (rtspsrc's pad): a track that never reaches the decoder is then
/// named with the stage where it stopped.
fn watch_rtsp_transport(rtspsrc: &gst::Element, tracks: &InputTracks) {
    let arrived = tracks.clone();
    rtspsrc.connect("new-manager", false, move |args| {
        if let Some(Ok(manager)) = args.get(1).map(|v| v.get::<gst::Element>()) {
            if manager.type_().name() == "GstRtpBin" {
                let arrived = arrived.clone();
                manager.connect("on-new-ssrc", false, move |args| {
                    if let Some(Ok(session)) = args.get(1).map(|v| v.get::<u32>()) {
                        let label = format!("stream {session}");
                        arrived.update(|t| {
                            if !t.arrived.contains(&label) {
                                t.arrived.push(label)
                            }
                        });
                    }
                    None
                });
            }
        }
        None
    });
    let released = tracks.clone();
    rtspsrc.connect_pad_added(move |_, pad| {
        // rtspsrc names its pads recv_rtp_src_<stream>_<ssrc>_<pt>.
        let name = pad.name();
        let stream = name
            .strip_prefix("recv_rtp_src_")
            .and_then(|rest| rest.split('_').next())
            .unwrap_or(name.as_str());
        let label = format!("stream {stream}");
        released.update(|t| {
            if !t.released.contains(&label) {
                t.released.push(label)
            }
        });
    });
}

/// Records each depayloader the decoder plugs, and the caps of its first output buffer: with
/// [`watch_rtsp_transport`], a track that never reaches the decoder's output is named with
/// the last stage it passed.
fn watch_depayloaders(uridecodebin: &gst::Element, tracks: &InputTracks) {
    let tracks = tracks.clone();
    uridecodebin.connect("deep-element-added", false, move |args| {
        let Some(Ok(element)) = args.get(2).map(|v| v.get::<gst::Element>()) else {
            return None;
        };
        let is_depay = element
            .factory()
            .is_some_and(|f| f.klass().contains("Depayloader"));
        let srcpad = element.static_pad("src").filter(|_| is_depay)?;
        let name = element.name().to_string();
        let pending = format!("{name}: nothing yet");
        tracks.update(|t| t.depayloaded.push(pending.clone()));
        let tracks = tracks.clone();
        srcpad.add_probe(gst::PadProbeType::BUFFER, move |pad, _| {
            let caps = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
                .unwrap_or_else(|| "no caps".into());
            let done = format!("{name}: {caps}");
            tracks.update(|t| {
                if let Some(entry) = t.depayloaded.iter_mut().find(|e| **e == pending) {
                    *entry = done;
                }
            });
            gst::PadProbeReturn::Remove
        });
        None
    });
}

fn attach_fakesink(pipe: &gst::glib::WeakRef<gst::Pipeline>, pad: &gst::Pad) {
    let Some(p) = pipe.upgrade() else { return };
    if let Ok(fs) = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
    {
        if p.add(&fs).is_ok() {
            let _ = fs.sync_state_with_parent();
            if let Some(sp) = fs.static_pad("sink") {
                let _ = pad.link(&sp);
            }
        }
    }
}

/// Gives repeated video timestamps their own times again, 1 ms apart.
///
/// rtspsrc's jitter buffer (`buffer-mode=slave`) answers a burst of old frames (a server
/// replaying its key-frame cache to a new reader) by holding timestamps back while it
/// corrects its skew estimate: it repeats the previous timestamp, for seconds. h264parse
/// takes a repeated timestamp as "none", flvmux stamps such frames with its last (audio)
/// time and clamps every later frame to that, so the whole output video froze on one
/// timestamp (measured with xiu: 569 of 600 frames). Spreading the repeats keeps the
/// jitter buffer's correction (A/V stays aligned) and a strictly increasing video timeline.
/// Frames whose timestamps go back (B-frames in transmission order) are left alone; a
/// repeat, or a step forward shorter than 1 ms (the jitter buffer's catch-up ends in
/// sub-millisecond steps, which FLV's millisecond timestamps would make repeats: seen as
/// two frames at 390 ms), starts a ramp, and the ramp continues until the input passes it.
#[derive(Debug, Default)]
pub struct RepeatedPtsSpreader {
    last_in: Option<gst::ClockTime>,
    last_out: Option<gst::ClockTime>,
    /// Frames spread in the current ramp (0: not ramping).
    spread: u64,
}

impl RepeatedPtsSpreader {
    /// Step between spread timestamps.
    pub const STEP: gst::ClockTime = gst::ClockTime::from_mseconds(1);

    /// The timestamp to use for a frame that arrived with `pts`.
    pub fn next(&mut self, pts: gst::ClockTime) -> gst::ClockTime {
        let out = match (self.last_in, self.last_out) {
            (Some(last_in), Some(last_out))
                if pts == last_in
                    || (self.spread > 0 && pts <= last_out)
                    || (pts > last_in && pts < last_out + Self::STEP) =>
            {
                if self.spread == 0 {
                    tracing::debug!(pts = %pts, "input video timestamps repeat: spreading them 1 ms apart");
                }
                self.spread += 1;
                last_out + Self::STEP
            }
            _ => {
                if self.spread > 0 {
                    tracing::info!(
                        frames = self.spread,
                        resumed_at = %pts,
                        "input video timestamps repeated (jitter buffer catching up after a burst); spread them 1 ms apart"
                    );
                    self.spread = 0;
                }
                pts
            }
        };
        self.last_in = Some(pts);
        self.last_out = Some(out);
        out
    }
}

/// Wraps interleaved S16 samples in a timestamped buffer for the appsrc.
pub fn pcm_buffer(samples: &[i16], pts_ns: u64, duration_ns: u64) -> gst::Buffer {
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let mut buf = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buf.get_mut().expect("fresh buffer is writable");
        b.set_pts(gst::ClockTime::from_nseconds(pts_ns));
        b.set_duration(gst::ClockTime::from_nseconds(duration_ns));
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer::ClockTime;

    fn run(ms: &[u64]) -> Vec<u64> {
        let mut s = RepeatedPtsSpreader::default();
        ms.iter()
            .map(|&m| s.next(ClockTime::from_mseconds(m)).mseconds())
            .collect()
    }

    #[test]
    fn regular_timestamps_pass_unchanged() {
        assert_eq!(run(&[0, 33, 67, 100]), vec![0, 33, 67, 100]);
    }

    #[test]
    fn b_frame_order_is_left_alone() {
        // Transmission order I P B B: timestamps go back, none repeats.
        assert_eq!(
            run(&[0, 100, 33, 67, 200, 133]),
            vec![0, 100, 33, 67, 200, 133]
        );
    }

    #[test]
    fn sub_millisecond_steps_are_spread_too() {
        let mut s = RepeatedPtsSpreader::default();
        let out: Vec<u64> = [
            385_000_000u64,
            390_200_000,
            390_900_000,
            391_300_000,
            425_000_000,
        ]
        .iter()
        .map(|&ns| s.next(ClockTime::from_nseconds(ns)).nseconds())
        .collect();
        assert_eq!(
            out,
            vec![
                385_000_000,
                390_200_000,
                391_200_000,
                392_200_000,
                425_000_000
            ]
        );
        // Whole milliseconds apart, as FLV stores them: all distinct.
        let ms: std::collections::BTreeSet<u64> = out.iter().map(|ns| ns / 1_000_000).collect();
        assert_eq!(ms.len(), out.len());
    }

    #[test]
    fn repeats_are_spread_until_the_input_passes_them() {
        // Stuck at 2000 for four frames, then the input resumes at 2002 (still inside the
        // ramp) and 2033 (past it).
        assert_eq!(
            run(&[1967, 2000, 2000, 2000, 2000, 2002, 2033, 2067]),
            vec![1967, 2000, 2001, 2002, 2003, 2004, 2033, 2067]
        );
    }

    #[test]
    fn rtmp_targets_keep_app_and_stream_apart() {
        assert_eq!(
            OutputTarget::parse("rtmp://10.0.0.1:1936/live/abc/out").unwrap(),
            OutputTarget::Rtmp {
                host: "10.0.0.1".into(),
                port: 1936,
                app: "live".into(),
                stream: "abc/out".into()
            }
        );
        assert_eq!(
            OutputTarget::parse("rtmp://h/live/x").unwrap(),
            OutputTarget::Rtmp {
                host: "h".into(),
                port: 1935,
                app: "live".into(),
                stream: "x".into()
            }
        );
        assert!(matches!(
            OutputTarget::parse("rtmp://h/live"),
            Err(TargetError::RtmpPath(_))
        ));
    }

    #[test]
    fn file_targets_follow_the_extension() {
        assert!(matches!(
            OutputTarget::parse("/tmp/a.MP4"),
            Ok(OutputTarget::File {
                container: Container::Mp4,
                ..
            })
        ));
        assert!(matches!(
            OutputTarget::parse("b.mkv"),
            Ok(OutputTarget::File {
                container: Container::Mkv,
                ..
            })
        ));
        assert!(matches!(
            OutputTarget::parse("c.flv"),
            Ok(OutputTarget::File {
                container: Container::Flv,
                ..
            })
        ));
        let e = OutputTarget::parse("d.avi").unwrap_err();
        assert!(e.to_string().contains(".mp4, .mkv or .flv"), "{e}");
    }

    #[test]
    fn live_schemes() {
        assert!(is_live_uri("rtsp://h:8554/live/a/in"));
        assert!(is_live_uri("RTMP://h/live/a"));
        assert!(!is_live_uri("file:///tmp/a.mp4"));
        assert!(!is_live_uri("https://example.org/a.mp4"));
        assert!(!is_live_uri("/tmp/rtsp.mp4"), "a path has no scheme");
    }

    #[test]
    fn rtsp_inputs_are_told_apart_by_scheme() {
        assert!(is_rtsp_uri("rtsp://h:8554/live/a/in"));
        assert!(is_rtsp_uri("RTSPS://h/live/a/in"));
        assert!(is_rtsp_uri("rtspt://h/live/a/in"));
        assert!(!is_rtsp_uri("rtmp://h/live/a"));
        assert!(!is_rtsp_uri("file:///tmp/rtsp://a.mp4"));
        assert_eq!(uri_scheme("/tmp/a.mp4"), "");
    }

    #[test]
    fn missing_input_file_is_named() {
        let e = input_uri("/nonexistent/x.mp4").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.mp4"));
    }
}
