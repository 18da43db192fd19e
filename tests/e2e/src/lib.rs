//! Helpers of the livedub end-to-end suite (`tests/e2e.rs` is the suite itself).
//!
//! - [`stack`]: the system under test as native processes or docker-compose projects;
//! - [`process`]: child processes in their own process groups, killed on drop and Ctrl-C;
//! - [`media`]: ffmpeg publisher (RTSP/TCP) and output recorders (RTMP -> FLV);
//! - [`analyzer`]: ffprobe codecs/durations/per-packet PTS and A/V sync measures;
//! - [`monitor`]: Socket.IO observer of the STS (`monitor:subscribe`);
//! - [`prom`]: Prometheus text-format parser;
//! - [`fingerprint`]: spectral audio fingerprints (dubbed vs original audio);
//! - [`placement`]: where each fragment's dub (or original) sits in the output, to the sample;
//! - [`http`]: tiny blocking HTTP GET for health checks and scrapes;
//! - [`contract`]: env contracts, compose files and `.env.e2e.example` files;
//! - [`flv`]: FLV tags as they arrive (the live recorder's arrival times);
//! - [`delay`]: the glass-to-glass delay from those arrival times, against OUTPUT_DELAY_MS;
//! - [`soak`]: the soak (faults on a schedule, output gaps, resources, A/V offset);
//! - [`bench`]: `make bench-live`, N live streams at once (dubbed share, STS time, delay, CPU).

pub mod analyzer;
pub mod bench;
pub mod compose;
pub mod contract;
pub mod delay;
pub mod fingerprint;
pub mod flv;
pub mod http;
pub mod media;
pub mod monitor;
pub mod placement;
pub mod process;
pub mod prom;
pub mod soak;
pub mod stack;

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
///
/// cargo runs test binaries in their package's directory, so the checkout is found from
/// there first: the path compiled in can belong to another checkout when several share
/// one target dir (cargo reuses the unchanged library built from the other one).
pub fn repo_root() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(root) = cwd
            .ancestors()
            .find(|d| d.join("tests/e2e/Cargo.toml").is_file())
        {
            return root.to_path_buf();
        }
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or(here)
}

/// A name beside `out` to write it under before renaming it into place: unique per
/// process and per call, so two tests making the same cached file at once (the marked
/// fixture on a cold cache) never write, check or rename each other's copy. `ext` ends it.
pub fn temp_beside(out: &Path, ext: &str) -> PathBuf {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    out.with_extension(format!("{}-{n}.partial.{ext}", std::process::id()))
}

/// The committed counting fixture (ARCHITECTURE §6).
pub fn fixture_path() -> PathBuf {
    repo_root().join("tests/e2e/fixtures/test_streams/30s-counting-english.mp4")
}
