//! Failure paths of a worker leave nothing behind: workers that cannot start (an output
//! that cannot be opened, so the graph never reaches PLAYING) and workers whose input
//! refuses the connection are started many times over, and the process's threads and file
//! descriptors come back to where they were.
//!
//! Its own test binary: the counts are the whole process's, so no other test may run
//! beside it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use gstreamer as gst;
use media_service::metrics::Metrics;
use media_service::worker::{run_worker, Dubber, WorkerConfig, WorkerError};
use sts_protocol::FragmentData;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// An STS that is never ready (these workers fail before they would send anything).
struct NoSts;

impl Dubber for NoSts {
    fn submit(&self, _f: FragmentData) -> BoxFuture<'static, Result<(), String>> {
        async { Err("no STS in this test".to_string()) }.boxed()
    }

    fn is_ready(&self) -> bool {
        false
    }
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// (threads, open file descriptors) of this process.
fn threads_and_fds() -> (usize, usize) {
    (count("/proc/self/task"), count("/proc/self/fd"))
}

/// A worker reading `input_uri` into `output`, giving up on an input without media soon.
fn config(name: &str, input_uri: String, output: &Path) -> WorkerConfig {
    // `worker_config` passes URIs (anything with "://") through as they are.
    WorkerConfig {
        idle_timeout_ms: 2000,
        start_timeout_ms: 3000,
        ..common::worker_config(name, Path::new(&input_uri), output)
    }
}

/// Runs one worker to its end, which must be an error.
async fn failing_worker(cfg: WorkerConfig) -> WorkerError {
    let (_tx, rx) = mpsc::channel(4);
    let name = cfg.name.clone();
    let end = tokio::time::timeout(
        Duration::from_secs(20),
        run_worker(
            cfg,
            Arc::new(NoSts),
            rx,
            Arc::new(Metrics::new()),
            Arc::default(),
            CancellationToken::new(),
            None,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("{name}: the failing worker did not end within 20 s"));
    match end {
        Err(e) => e,
        Ok(end) => panic!("{name}: expected a failure, the worker ended {end:?}"),
    }
}

/// One round: a graph that cannot reach PLAYING, and an input that refuses connections.
async fn fail_once(input: &str, round: usize) {
    let dir = tempfile::tempdir().unwrap();
    // A file output under a directory that does not exist: the sink cannot open it.
    let unwritable = dir.path().join("missing/dir/out.mp4");
    let e = failing_worker(config(
        &format!("no-output-{round}"),
        input.to_string(),
        &unwritable,
    ))
    .await;
    assert!(
        matches!(e, WorkerError::Pipeline { .. }),
        "an unopenable output fails the start: {e}"
    );
    // An RTSP input on a port nobody listens on: the graph starts, then errors.
    let refused = format!("rtsp://127.0.0.1:{}/live/none/in", common::free_port());
    let out = dir.path().join("out.mp4");
    failing_worker(config(&format!("refused-{round}"), refused, &out)).await;
}

#[test]
fn failing_workers_leave_no_thread_or_fd_behind() {
    gst::init().unwrap();
    // Idle runtime threads go away quickly, so they cannot hide or fake a leak.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(Duration::from_millis(100))
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let clip = dir.path().join("in.mp4");
        common::make_clip(&clip, 4, 440);
        let input = media_service::pipeline::input_uri(clip.to_str().unwrap()).unwrap();
        // Warm-up: GStreamer's registry, plugin loading and GLib's thread pools.
        fail_once(&input, 0).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (threads0, fds0) = threads_and_fds();
        const ROUNDS: usize = 8;
        for round in 1..=ROUNDS {
            fail_once(&input, round).await;
        }
        // GLib keeps a few idle pool threads for a while; a leak (a bus thread or a
        // graph not set to NULL per failed start) is at least one per round and stays.
        const SLACK: usize = 3;
        let mut now = threads_and_fds();
        for _ in 0..100 {
            if now.0 <= threads0 + SLACK && now.1 <= fds0 + SLACK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            now = threads_and_fds();
        }
        eprintln!(
            "after {ROUNDS} rounds of failing workers: threads {threads0} -> {}, fds {fds0} -> {}",
            now.0, now.1
        );
        assert!(
            now.0 <= threads0 + SLACK,
            "threads grew from {threads0} to {} over {ROUNDS} rounds",
            now.0
        );
        assert!(
            now.1 <= fds0 + SLACK,
            "file descriptors grew from {fds0} to {} over {ROUNDS} rounds",
            now.1
        );
    });
}
