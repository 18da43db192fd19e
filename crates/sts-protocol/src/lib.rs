//! The livedub STS wire contract (Socket.IO v4, namespace `/`, path `/socket.io`).
//!
//! Both the media-service (client) and the sts-service (server) use these types, so the
//! JSON shape of every event of ARCHITECTURE §4 is defined exactly once. `docs/protocol.md`
//! shows one example per event.
//!
//! Wire decisions fixed here:
//! - audio travels as base64 of interleaved `pcm_s16le`;
//! - the dubbed audio of `fragment:processed` comes back in the same format (rate and
//!   channels) that the stream declared in `stream:init`, and lasts exactly the fragment's
//!   `duration_ms` (to the sample at that rate);
//! - every rejection carries an [`ErrorCode`] with a stable SCREAMING_SNAKE string.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod error;
pub use error::{ErrorBody, ErrorCode, ProtocolError};

/// Version of this wire contract, reported in the `stream:init` ready ack.
pub const PROTOCOL_VERSION: &str = "1.3";

/// The only sample format accepted on the wire.
pub const PCM_S16LE: &str = "pcm_s16le";

/// Sample rates (Hz) accepted for stream and fragment audio.
pub const ACCEPTED_SAMPLE_RATES: &[u32] = &[8000, 16000, 22050, 24000, 32000, 44100, 48000];

/// Channel counts accepted for stream and fragment audio.
pub const ACCEPTED_CHANNELS: &[u16] = &[1, 2];

/// Longest accepted id (`stream_id`, `fragment_id`), in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Shortest and longest accepted fragment duration in milliseconds.
pub const MIN_FRAGMENT_MS: u32 = 1;
/// See [`MIN_FRAGMENT_MS`].
pub const MAX_FRAGMENT_MS: u32 = 30_000;

/// Default limit of decoded PCM bytes per fragment: 30 s of 48 kHz stereo s16 is 5.76 MB,
/// so 6 MiB lets every accepted format through at the longest duration.
pub const DEFAULT_MAX_FRAGMENT_BYTES: usize = 6 * 1024 * 1024;

/// Event names, fixed by ARCHITECTURE §4.
pub mod events {
    /// c -> s: open a stream (ack: [`crate::StreamInitAck`]).
    pub const STREAM_INIT: &str = "stream:init";
    /// c -> s: one audio fragment (ack: [`crate::FragmentAck`]).
    pub const FRAGMENT_DATA: &str = "fragment:data";
    /// s -> c: the dubbed result of one accepted fragment.
    pub const FRAGMENT_PROCESSED: &str = "fragment:processed";
    /// s -> c: flow-control advice.
    pub const BACKPRESSURE: &str = "backpressure";
    /// c -> s: stop accepting new fragments for a while.
    pub const STREAM_PAUSE: &str = "stream:pause";
    /// c -> s: accept fragments again.
    pub const STREAM_RESUME: &str = "stream:resume";
    /// c -> s: no more fragments; the server answers `stream:complete` once all are done.
    pub const STREAM_END: &str = "stream:end";
    /// s -> c: totals after `stream:end`, once every accepted fragment was answered.
    pub const STREAM_COMPLETE: &str = "stream:complete";
    /// s -> c: malformed input; the connection stays usable.
    pub const ERROR: &str = "error";
    /// c -> s: observe a stream (receive copies of its processed/complete events).
    pub const MONITOR_SUBSCRIBE: &str = "monitor:subscribe";
}

/// Format of the audio of a stream (`stream:init.audio`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioFormat {
    /// Always `pcm_s16le`.
    pub format: String,
    /// One of [`ACCEPTED_SAMPLE_RATES`].
    pub sample_rate_hz: u32,
    /// One of [`ACCEPTED_CHANNELS`].
    pub channels: u16,
}

impl AudioFormat {
    /// `pcm_s16le` at the given rate and channel count.
    pub fn pcm_s16le(sample_rate_hz: u32, channels: u16) -> Self {
        Self {
            format: PCM_S16LE.to_string(),
            sample_rate_hz,
            channels,
        }
    }

    /// Checks format, rate and channels against what the protocol accepts.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.format != PCM_S16LE {
            return Err(ProtocolError::UnsupportedFormat(clip(&self.format)));
        }
        if !ACCEPTED_SAMPLE_RATES.contains(&self.sample_rate_hz) {
            return Err(ProtocolError::UnsupportedSampleRate(self.sample_rate_hz));
        }
        if !ACCEPTED_CHANNELS.contains(&self.channels) {
            return Err(ProtocolError::UnsupportedChannels(self.channels));
        }
        Ok(())
    }

    /// Bytes of one sample frame (all channels).
    pub fn frame_bytes(&self) -> usize {
        usize::from(self.channels) * 2
    }

    /// Number of sample frames (per channel) in `duration_ms` at this rate, rounded to nearest.
    pub fn frames_for_ms(&self, duration_ms: u32) -> usize {
        ((u64::from(duration_ms) * u64::from(self.sample_rate_hz) + 500) / 1000) as usize
    }

    /// Number of interleaved samples in `duration_ms` at this rate and channel count.
    pub fn samples_for_ms(&self, duration_ms: u32) -> usize {
        self.frames_for_ms(duration_ms) * usize::from(self.channels)
    }
}

/// An audio object with data: format plus base64 of interleaved `pcm_s16le`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioPayload {
    /// Always `pcm_s16le`.
    pub format: String,
    /// Sample rate in Hz.
    pub sample_rate_hz: u32,
    /// Interleaved channel count.
    pub channels: u16,
    /// Standard base64 (with padding) of little-endian signed 16-bit samples.
    pub data: String,
}

impl AudioPayload {
    /// Encodes interleaved samples in the given format.
    pub fn from_samples(format: &AudioFormat, samples: &[i16]) -> Self {
        Self {
            format: format.format.clone(),
            sample_rate_hz: format.sample_rate_hz,
            channels: format.channels,
            data: encode_pcm_base64(samples),
        }
    }

    /// The format part of this payload.
    pub fn audio_format(&self) -> AudioFormat {
        AudioFormat {
            format: self.format.clone(),
            sample_rate_hz: self.sample_rate_hz,
            channels: self.channels,
        }
    }

    /// Decodes the samples after checking the format and the decoded size limit
    /// (checked on the base64 length first, so an oversize payload is never decoded).
    pub fn decode(&self, max_bytes: usize) -> Result<Vec<i16>, ProtocolError> {
        self.audio_format().validate()?;
        // base64 expands 3 bytes to 4 characters.
        let decoded_upper_bound = self.data.len() / 4 * 3;
        if decoded_upper_bound > max_bytes + 3 {
            return Err(ProtocolError::TooLarge {
                bytes: decoded_upper_bound,
                max: max_bytes,
            });
        }
        let samples = decode_pcm_base64(&self.data)?;
        if samples.len() * 2 > max_bytes {
            return Err(ProtocolError::TooLarge {
                bytes: samples.len() * 2,
                max: max_bytes,
            });
        }
        Ok(samples)
    }
}

/// `stream:init` (c -> s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInit {
    /// Client-chosen stream id, unique per server while the stream is open.
    pub stream_id: String,
    /// Language of the speech, e.g. `en`.
    pub source_language: String,
    /// Language to dub into, e.g. `es`.
    pub target_language: String,
    /// Optional provider-specific voice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    /// Nominal fragment duration (ms); the last fragment of a stream may be shorter.
    pub fragment_duration_ms: u32,
    /// Format of every fragment of this stream, and of the dubbed audio sent back.
    pub audio: AudioFormat,
}

impl StreamInit {
    /// Checks ids, languages, duration and audio format.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_id("stream_id", &self.stream_id)?;
        validate_language("source_language", &self.source_language)?;
        validate_language("target_language", &self.target_language)?;
        validate_duration("fragment_duration_ms", self.fragment_duration_ms)?;
        if let Some(voice) = &self.voice {
            if voice.len() > 256 {
                return Err(ProtocolError::InvalidField {
                    field: "voice",
                    reason: "longer than 256 bytes".into(),
                });
            }
        }
        self.audio.validate()
    }
}

/// Name of the optional `stream:init` field that carries the `resume_token` of an earlier
/// ready ack for the same stream id (since 1.2). It proves that the sender is the client
/// that opened the stream, so it may take the stream over from a connection the server
/// still sees as alive (a reconnect the server has not noticed yet). It is a separate
/// field, not a member of [`StreamInit`], so that struct stays constructible as before;
/// clients send it with [`StreamInitRequest`].
pub const RESUME_TOKEN_FIELD: &str = "resume_token";

/// Longest accepted `resume_token`, in bytes (longer ones are ignored, never compared).
pub const MAX_RESUME_TOKEN_LEN: usize = 128;

/// `stream:init` as a client sends it: the [`StreamInit`] fields plus the optional
/// [`RESUME_TOKEN_FIELD`] (serialisation only; the server reads the two apart).
#[derive(Debug, Clone, Serialize)]
pub struct StreamInitRequest<'a> {
    /// The stream's parameters.
    #[serde(flatten)]
    pub init: &'a StreamInit,
    /// `resume_token` of the last ready ack for this stream id, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<&'a str>,
}

/// The [`RESUME_TOKEN_FIELD`] of a `stream:init` payload (object or pre-serialised string),
/// when it is a string of at most [`MAX_RESUME_TOKEN_LEN`] bytes.
pub fn resume_token_of(payload: &serde_json::Value) -> Option<String> {
    let field = |v: &serde_json::Value| {
        v.get(RESUME_TOKEN_FIELD)
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= MAX_RESUME_TOKEN_LEN)
            .map(str::to_string)
    };
    match payload {
        serde_json::Value::String(s) => field(&serde_json::from_str(s).ok()?),
        v => field(v),
    }
}

/// Ack of `stream:init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StreamInitAck {
    /// The stream is open.
    Ready {
        /// Server-side id of this session (for logs; not a secret).
        session_id: String,
        /// Secret of this stream's owner (since 1.2; absent from older servers): sent back
        /// as [`RESUME_TOKEN_FIELD`] in a later `stream:init` for the same stream id, it
        /// lets a reconnected client take the stream back even while the server still sees
        /// the old connection as alive. Keep it out of logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_token: Option<String>,
        /// Fragments processed at once for this stream.
        max_inflight: u32,
        /// Largest accepted decoded PCM size of one fragment.
        max_fragment_bytes: usize,
        /// [`PROTOCOL_VERSION`] of the server.
        protocol_version: String,
    },
    /// The stream was not opened.
    Rejected {
        /// Why.
        error: ErrorBody,
    },
}

/// `fragment:data` (c -> s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentData {
    /// Client-chosen fragment id (unique within the stream).
    pub fragment_id: String,
    /// Stream this fragment belongs to (must have been opened by `stream:init`).
    pub stream_id: String,
    /// Position of the fragment in the stream, from 0.
    pub sequence_number: u64,
    /// Presentation time of the first sample, in ms on the stream's timeline.
    pub pts_ms: i64,
    /// Duration of the audio in ms; the data must match it within one sample frame.
    pub duration_ms: u32,
    /// The audio, in the stream's declared format.
    pub audio: AudioPayload,
    /// How long after the server receives this fragment its answer is still of use to the
    /// client (ms; since 1.3). Past it the server answers `timeout` without running the
    /// stages it has not started (it sheds the work). Absent: only the server's
    /// PROCESSING_TIMEOUT applies. Relative, so the two clocks need not agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_within_ms: Option<u32>,
}

impl FragmentData {
    /// The cheap checks of [`Self::validate_and_decode`], without decoding: ids, duration,
    /// the audio format against `stream_format`, and the size limit on the base64 length.
    /// Returns the most bytes the data can decode to (what a server reserves before it
    /// decodes).
    pub fn check_header(
        &self,
        stream_format: &AudioFormat,
        max_bytes: usize,
    ) -> Result<usize, ProtocolError> {
        validate_id("fragment_id", &self.fragment_id)?;
        validate_id("stream_id", &self.stream_id)?;
        validate_duration("duration_ms", self.duration_ms)?;
        let format = self.audio.audio_format();
        format.validate()?;
        if &format != stream_format {
            return Err(ProtocolError::FormatMismatch {
                got: format_label(&format),
                declared: format_label(stream_format),
            });
        }
        let decoded_upper_bound = self.audio.data.len() / 4 * 3;
        if decoded_upper_bound > max_bytes + 3 {
            return Err(ProtocolError::TooLarge {
                bytes: decoded_upper_bound,
                max: max_bytes,
            });
        }
        Ok(decoded_upper_bound.min(max_bytes))
    }

    /// Validates ids and duration, checks that the audio is in `stream_format`, decodes it
    /// (respecting `max_bytes`) and checks that its length matches `duration_ms` within one
    /// sample frame. Returns the interleaved samples.
    pub fn validate_and_decode(
        &self,
        stream_format: &AudioFormat,
        max_bytes: usize,
    ) -> Result<Vec<i16>, ProtocolError> {
        self.check_header(stream_format, max_bytes)?;
        let format = self.audio.audio_format();
        let samples = self.audio.decode(max_bytes)?;
        let channels = usize::from(format.channels);
        if samples.len() % channels != 0 {
            return Err(ProtocolError::LengthMismatch {
                got_bytes: samples.len() * 2,
                expected_bytes: format.frames_for_ms(self.duration_ms) * format.frame_bytes(),
                duration_ms: self.duration_ms,
            });
        }
        let frames = samples.len() / channels;
        let exact = u64::from(self.duration_ms) * u64::from(format.sample_rate_hz);
        // |frames - duration*rate/1000| <= 1 frame, in integer arithmetic.
        if (frames as u64 * 1000).abs_diff(exact) > 1000 {
            return Err(ProtocolError::LengthMismatch {
                got_bytes: samples.len() * 2,
                expected_bytes: format.frames_for_ms(self.duration_ms) * format.frame_bytes(),
                duration_ms: self.duration_ms,
            });
        }
        Ok(samples)
    }
}

/// Ack of `fragment:data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FragmentAck {
    /// Queued for processing; exactly one `fragment:processed` follows.
    Accepted,
    /// Not queued; no `fragment:processed` follows.
    Rejected {
        /// Why.
        error: ErrorBody,
    },
}

/// Outcome of one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FragmentStatus {
    /// Dubbed audio fits the fragment.
    Success,
    /// Dubbed audio had to be cut to fit.
    Partial,
    /// Processing failed; `error` says why.
    Failed,
    /// Not done within the processing timeout.
    Timeout,
    /// No speech found (empty transcript or nothing to say): there is nothing to dub and no
    /// `dubbed_audio`; the client keeps its original audio. Since protocol 1.1: a 1.0
    /// client that rejects the unknown status treats the answer as failed, which also
    /// keeps the original audio.
    NoSpeech,
}

impl FragmentStatus {
    /// The lowercase wire name (also used as the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::NoSpeech => "no_speech",
        }
    }
}

/// Per-stage processing time in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageMs {
    /// Speech recognition.
    pub asr: u64,
    /// Machine translation.
    pub translation: u64,
    /// Speech synthesis.
    pub tts: u64,
    /// Duration fit (resample, time-compress, pad/cut).
    pub fit: u64,
}

/// `fragment:processed` (s -> c), once per accepted fragment, in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentProcessed {
    /// Id from `fragment:data`.
    pub fragment_id: String,
    /// Stream id.
    pub stream_id: String,
    /// Sequence number from `fragment:data` (clients reorder by it).
    pub sequence_number: u64,
    /// Outcome.
    pub status: FragmentStatus,
    /// Dubbed audio in the stream's format, exactly `duration_ms` long; absent when
    /// `status` is `failed`, `timeout` or `no_speech`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dubbed_audio: Option<AudioPayload>,
    /// ASR output (empty for silence).
    pub transcript: String,
    /// Translation of the transcript.
    pub translated_text: String,
    /// Wall time from acceptance to answer.
    pub processing_time_ms: u64,
    /// Per-stage times.
    pub stage_ms: StageMs,
    /// Present when `status` is `failed` or `timeout` (and for `partial`, why it was cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// What a `backpressure` event asks the client to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackpressureAction {
    /// All processing slots are busy: send no faster than answers arrive.
    SlowDown,
    /// The per-stream queue is full: new fragments are rejected until `resume`.
    Pause,
    /// The queue drained: sending may go on.
    Resume,
}

/// `backpressure` (s -> c).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backpressure {
    /// Stream concerned.
    pub stream_id: String,
    /// Fragments of this stream accepted and not yet answered.
    pub inflight: u32,
    /// Processing slots of this stream.
    pub max_inflight: u32,
    /// Advice.
    pub action: BackpressureAction,
}

/// `stream:pause`, `stream:resume`, `stream:end` (c -> s) and `monitor:subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamControl {
    /// Stream concerned.
    pub stream_id: String,
}

impl StreamControl {
    /// Checks the id.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        validate_id("stream_id", &self.stream_id)
    }
}

/// Ack of `stream:pause` / `stream:resume` / `stream:end` / `monitor:subscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ControlAck {
    /// Done.
    Ok,
    /// Refused.
    Rejected {
        /// Why.
        error: ErrorBody,
    },
}

/// Counts of fragment outcomes for one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// `success` answers.
    pub success: u64,
    /// `partial` answers.
    pub partial: u64,
    /// `failed` answers.
    pub failed: u64,
    /// `timeout` answers.
    pub timeout: u64,
    /// `no_speech` answers (absent from 1.0 servers: 0).
    #[serde(default)]
    pub no_speech: u64,
}

impl Totals {
    /// Adds one outcome.
    pub fn add(&mut self, status: FragmentStatus) {
        match status {
            FragmentStatus::Success => self.success += 1,
            FragmentStatus::Partial => self.partial += 1,
            FragmentStatus::Failed => self.failed += 1,
            FragmentStatus::Timeout => self.timeout += 1,
            FragmentStatus::NoSpeech => self.no_speech += 1,
        }
    }

    /// Sum of all outcomes.
    pub fn total(&self) -> u64 {
        self.success + self.partial + self.failed + self.timeout + self.no_speech
    }
}

/// `stream:complete` (s -> c).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamComplete {
    /// Stream concerned.
    pub stream_id: String,
    /// Outcome counts.
    pub totals: Totals,
}

/// `error` (s -> c): malformed input; the connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable explanation naming what is wrong and what is accepted.
    pub message: String,
    /// Fragment concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_id: Option<String>,
    /// Stream concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
}

/// Parses an event payload into `T`.
///
/// Accepts the JSON object itself or, because some clients emit pre-serialised JSON, a
/// string holding it. Errors are classified as [`ProtocolError::MalformedJson`],
/// [`ProtocolError::MissingField`] or [`ProtocolError::WrongType`].
pub fn parse_payload<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ProtocolError> {
    let value = match value {
        serde_json::Value::String(s) => serde_json::from_str::<serde_json::Value>(&s)
            .map_err(|e| ProtocolError::MalformedJson(clip_message(&e.to_string())))?,
        other => other,
    };
    if !value.is_object() {
        return Err(ProtocolError::MalformedJson(format!(
            "expected a JSON object, got {}",
            json_kind(&value)
        )));
    }
    serde_json::from_value(value).map_err(classify_serde_error)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn classify_serde_error(e: serde_json::Error) -> ProtocolError {
    // serde quotes the offending value ("invalid type: string \"…\""); keep it short.
    let msg = clip_message(&e.to_string());
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or_default().to_string();
        ProtocolError::MissingField(field)
    } else if msg.starts_with("invalid type")
        || msg.starts_with("invalid value")
        || msg.starts_with("unknown variant")
    {
        ProtocolError::WrongType(msg)
    } else {
        ProtocolError::MalformedJson(msg)
    }
}

/// A library error message that may quote peer input, kept to four times [`MAX_ECHO_CHARS`].
fn clip_message(msg: &str) -> String {
    match msg.char_indices().nth(4 * MAX_ECHO_CHARS) {
        None => msg.to_string(),
        Some((cut, _)) => format!(
            "{}… (message cut at {} characters)",
            &msg[..cut],
            4 * MAX_ECHO_CHARS
        ),
    }
}

/// Checks an id: 1..=[`MAX_ID_LEN`] bytes of `[A-Za-z0-9._:/-]`.
pub fn validate_id(field: &'static str, id: &str) -> Result<(), ProtocolError> {
    if id.is_empty() {
        return Err(ProtocolError::InvalidField {
            field,
            reason: "empty; expected 1 to 128 characters of [A-Za-z0-9._:/-]".into(),
        });
    }
    if id.len() > MAX_ID_LEN {
        return Err(ProtocolError::InvalidField {
            field,
            reason: format!(
                "{} bytes long; expected 1 to {MAX_ID_LEN} characters of [A-Za-z0-9._:/-]",
                id.len()
            ),
        });
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-')))
    {
        return Err(ProtocolError::InvalidField {
            field,
            reason: format!("contains {c:?}; expected only characters of [A-Za-z0-9._:/-]"),
        });
    }
    Ok(())
}

fn validate_language(field: &'static str, lang: &str) -> Result<(), ProtocolError> {
    let ok = (2..=16).contains(&lang.len())
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::InvalidField {
            field,
            reason: format!(
                "{:?} is not a language code; expected e.g. \"en\" or \"es\"",
                clip(lang)
            ),
        })
    }
}

fn validate_duration(field: &'static str, ms: u32) -> Result<(), ProtocolError> {
    if (MIN_FRAGMENT_MS..=MAX_FRAGMENT_MS).contains(&ms) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidField {
            field,
            reason: format!("{ms} ms; expected {MIN_FRAGMENT_MS} to {MAX_FRAGMENT_MS} ms"),
        })
    }
}

fn format_label(f: &AudioFormat) -> String {
    format!(
        "{} {} Hz {} ch",
        clip(&f.format),
        f.sample_rate_hz,
        f.channels
    )
}

/// Most characters of a peer's own value repeated in an error message.
pub const MAX_ECHO_CHARS: usize = 64;

/// A peer-supplied value as quoted in an error: at most [`MAX_ECHO_CHARS`] characters, then
/// how long it really was. Errors reach logs and other clients' monitors; a hostile value
/// must not grow them without bound.
pub fn clip(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO_CHARS) {
        None => value.to_string(),
        Some((cut, _)) => format!("{}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// Encodes interleaved s16 samples as base64 of little-endian bytes.
pub fn encode_pcm_base64(samples: &[i16]) -> String {
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes base64 of little-endian s16 bytes; an odd byte count is an error.
pub fn decode_pcm_base64(data: &str) -> Result<Vec<i16>, ProtocolError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.as_bytes())
        .map_err(|e| ProtocolError::InvalidBase64(e.to_string()))?;
    if bytes.len() % 2 != 0 {
        return Err(ProtocolError::InvalidBase64(format!(
            "decoded to {} bytes, not a whole number of 16-bit samples",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect())
}

#[cfg(test)]
mod tests;
