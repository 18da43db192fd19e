//! Error codes of the wire contract and the validation error that maps to them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable machine-readable error codes (serialised as SCREAMING_SNAKE strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The payload is not JSON, or not a JSON object.
    MalformedJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type or an unknown enum value.
    WrongType,
    /// A field has the right type but an unacceptable value (id charset, duration range...).
    InvalidField,
    /// `audio.format` is not `pcm_s16le`.
    UnsupportedAudioFormat,
    /// Sample rate or channel count not accepted.
    UnsupportedAudioParams,
    /// Fragment audio format differs from the one declared in `stream:init`.
    AudioFormatMismatch,
    /// Decoded audio length does not match `duration_ms` within one sample frame.
    AudioLengthMismatch,
    /// `audio.data` is not valid base64 of 16-bit samples.
    InvalidBase64,
    /// The payload exceeds `max_fragment_bytes`.
    PayloadTooLarge,
    /// The stream id is not open on this server.
    UnknownStream,
    /// A fragment arrived on a connection that never sent `stream:init`.
    StreamNotInitialized,
    /// `stream:init` for a stream id that another live connection owns (since protocol 1.2;
    /// before, a new connection took the stream over). A client that reconnected takes its
    /// stream back with the `resume_token` of its last ready ack, or once the server has
    /// seen the old connection close.
    StreamAlreadyExists,
    /// The stream belongs to another connection (e.g. a monitor tried to send).
    NotStreamOwner,
    /// The stream is paused (by the client) or ended.
    StreamNotAccepting,
    /// The language pair is not supported by the configured providers.
    UnsupportedLanguage,
    /// The per-stream queue is full; wait for `backpressure` `resume`.
    Backpressure,
    /// The fragment was not processed within PROCESSING_TIMEOUT.
    ProcessingTimeout,
    /// Speech recognition failed.
    AsrFailed,
    /// Translation failed.
    TranslationFailed,
    /// Speech synthesis failed.
    TtsFailed,
    /// Dubbed speech was longer than the fragment even after speed-up and compression.
    SpeechTruncated,
    /// Handshake auth token missing or wrong.
    Unauthorized,
    /// The server is shutting down.
    ShuttingDown,
    /// Models are still loading (`/health` answers 503); retry shortly.
    ServiceNotReady,
    /// The server already holds MAX_SESSIONS connections (connection refused; since 1.2).
    TooManySessions,
    /// This connection already owns MAX_STREAMS_PER_SESSION open streams (since 1.2).
    TooManyStreams,
    /// The fragments this connection has queued or in processing already hold
    /// MAX_QUEUED_BYTES_PER_SESSION bytes; retry after one of them is answered (since 1.2).
    SessionQueueFull,
    /// `monitor:subscribe` is not allowed by the server's MONITOR setting (since 1.2).
    MonitorNotAllowed,
    /// Anything else (a server bug).
    Internal,
    /// A code this version does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire string, e.g. `AUDIO_LENGTH_MISMATCH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "MALFORMED_JSON",
            Self::MissingField => "MISSING_FIELD",
            Self::WrongType => "WRONG_TYPE",
            Self::InvalidField => "INVALID_FIELD",
            Self::UnsupportedAudioFormat => "UNSUPPORTED_AUDIO_FORMAT",
            Self::UnsupportedAudioParams => "UNSUPPORTED_AUDIO_PARAMS",
            Self::AudioFormatMismatch => "AUDIO_FORMAT_MISMATCH",
            Self::AudioLengthMismatch => "AUDIO_LENGTH_MISMATCH",
            Self::InvalidBase64 => "INVALID_BASE64",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnknownStream => "UNKNOWN_STREAM",
            Self::StreamNotInitialized => "STREAM_NOT_INITIALIZED",
            Self::StreamAlreadyExists => "STREAM_ALREADY_EXISTS",
            Self::NotStreamOwner => "NOT_STREAM_OWNER",
            Self::StreamNotAccepting => "STREAM_NOT_ACCEPTING",
            Self::UnsupportedLanguage => "UNSUPPORTED_LANGUAGE",
            Self::Backpressure => "BACKPRESSURE",
            Self::ProcessingTimeout => "PROCESSING_TIMEOUT",
            Self::AsrFailed => "ASR_FAILED",
            Self::TranslationFailed => "TRANSLATION_FAILED",
            Self::TtsFailed => "TTS_FAILED",
            Self::SpeechTruncated => "SPEECH_TRUNCATED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::ShuttingDown => "SHUTTING_DOWN",
            Self::ServiceNotReady => "SERVICE_NOT_READY",
            Self::TooManySessions => "TOO_MANY_SESSIONS",
            Self::TooManyStreams => "TOO_MANY_STREAMS",
            Self::SessionQueueFull => "SESSION_QUEUE_FULL",
            Self::MonitorNotAllowed => "MONITOR_NOT_ALLOWED",
            Self::Internal => "INTERNAL",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{code, message}` as carried in rejected acks and `fragment:processed.error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code.
    pub code: ErrorCode,
    /// Explanation naming what is wrong and what is accepted.
    pub message: String,
}

impl ErrorBody {
    /// Builds a body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A payload that breaks the contract. Each variant maps to one [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not JSON / not an object.
    #[error("malformed JSON payload: {0}")]
    MalformedJson(String),
    /// Required field absent.
    #[error("missing required field `{0}`")]
    MissingField(String),
    /// Wrong JSON type.
    #[error("wrong field type: {0}")]
    WrongType(String),
    /// Unacceptable value.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// Format other than pcm_s16le.
    #[error("unsupported audio format {0:?}; accepted: \"pcm_s16le\"")]
    UnsupportedFormat(String),
    /// Sample rate not accepted.
    #[error(
        "unsupported sample rate {0} Hz; accepted: 8000, 16000, 22050, 24000, 32000, 44100, 48000"
    )]
    UnsupportedSampleRate(u32),
    /// Channel count not accepted.
    #[error("unsupported channel count {0}; accepted: 1 or 2")]
    UnsupportedChannels(u16),
    /// Fragment format differs from the stream's.
    #[error("fragment audio is {got} but the stream declared {declared} in stream:init")]
    FormatMismatch {
        /// Fragment format.
        got: String,
        /// Declared format.
        declared: String,
    },
    /// Length does not match the duration.
    #[error("audio is {got_bytes} bytes but duration_ms={duration_ms} needs {expected_bytes} bytes (within one sample frame)")]
    LengthMismatch {
        /// Decoded bytes.
        got_bytes: usize,
        /// Expected bytes.
        expected_bytes: usize,
        /// Declared duration.
        duration_ms: u32,
    },
    /// Bad base64.
    #[error("audio.data is not valid base64 of 16-bit PCM: {0}")]
    InvalidBase64(String),
    /// Over the size limit.
    #[error("audio payload of {bytes} bytes exceeds max_fragment_bytes={max}")]
    TooLarge {
        /// Size found.
        bytes: usize,
        /// Limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The wire code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MalformedJson(_) => ErrorCode::MalformedJson,
            Self::MissingField(_) => ErrorCode::MissingField,
            Self::WrongType(_) => ErrorCode::WrongType,
            Self::InvalidField { .. } => ErrorCode::InvalidField,
            Self::UnsupportedFormat(_) => ErrorCode::UnsupportedAudioFormat,
            Self::UnsupportedSampleRate(_) | Self::UnsupportedChannels(_) => {
                ErrorCode::UnsupportedAudioParams
            }
            Self::FormatMismatch { .. } => ErrorCode::AudioFormatMismatch,
            Self::LengthMismatch { .. } => ErrorCode::AudioLengthMismatch,
            Self::InvalidBase64(_) => ErrorCode::InvalidBase64,
            Self::TooLarge { .. } => ErrorCode::PayloadTooLarge,
        }
    }

    /// `{code, message}` for an ack or event.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}
