//! livedub sts-service: speech-to-speech over Socket.IO (Whisper ASR -> translation -> TTS
//! -> duration fit), as a library so tests and tools can start it in-process.
//!
//! See `docs/sts-service.md` for operation and `docs/protocol.md` for the wire contract.

pub mod config;
pub mod engines;
pub mod fit;
pub mod metrics;
pub mod pipeline;
pub mod server;

pub use config::Config;
pub use server::{start, RunningServer};

/// Initialises `tracing` with LOG_LEVEL (overridable by RUST_LOG for fine-grained filters).
pub fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{level},socketioxide=warn,engineioxide=warn,hyper=warn"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
