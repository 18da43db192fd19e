//! livedub sts-service: speech-to-speech over Socket.IO (Whisper ASR -> translation -> TTS
//! -> duration fit), as a library so tests and tools can start it in-process.
//!
//! See `docs/sts-service.md` for operation and `docs/protocol.md` for the wire contract.

pub mod admission;
pub mod config;
pub mod engines;
pub mod fit;
pub mod metrics;
pub mod pipeline;
pub mod redact;
pub mod server;

pub use config::Config;
pub use server::{start, RunningServer};

/// The log filter LOG_LEVEL gives: `level` for the service, warnings only from the
/// Socket.IO, WebSocket and HTTP libraries, whose debug and trace output quotes whole
/// messages (handshake tokens, audio) and would flood the log.
pub fn log_filter(level: &str) -> String {
    format!(
        "{level},socketioxide=warn,engineioxide=warn,tungstenite=warn,tokio_tungstenite=warn,hyper=warn,hyper_util=warn"
    )
}

/// Initialises `tracing` with LOG_LEVEL (overridable by RUST_LOG for fine-grained filters,
/// which may then include library output that quotes message payloads).
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(level)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
