//! ffmpeg-driven stream publisher and output recorder.
//!
//! The publisher sends a file in real time over RTSP/TCP to `live/<name>/in`; the
//! recorder copies `live/<name>/out` from the media server's RTMP port into an FLV file.
//! Both run as [`ManagedProcess`]es, so they are killed when dropped, whatever happened.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::flv::Tag;
use crate::process::{ManagedProcess, ProcessError};

/// Where a media server listens (as seen from the test process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaServerAddr {
    /// Host name or IP.
    pub host: String,
    /// RTSP port.
    pub rtsp_port: u16,
    /// RTMP port.
    pub rtmp_port: u16,
    /// HTTP API port (`/v3/paths/list`).
    pub api_port: u16,
}

impl MediaServerAddr {
    /// `rtsp://host:port/live/<name>/in`, where the publisher sends a stream.
    pub fn input_url(&self, name: &str) -> String {
        format!("rtsp://{}:{}/live/{name}/in", self.host, self.rtsp_port)
    }

    /// The MediaMTX-style paths listing URL.
    pub fn paths_url(&self) -> String {
        format!("http://{}:{}/v3/paths/list", self.host, self.api_port)
    }

    /// Whether the media server lists `live/<name>/out` (someone publishes it).
    pub fn lists_output(&self, name: &str) -> bool {
        self.lists(&format!("live/{name}/out"))
    }

    /// Whether the media server lists `live/<name>/in` (a publisher sends it).
    pub fn lists_input(&self, name: &str) -> bool {
        self.lists(&format!("live/{name}/in"))
    }

    fn lists(&self, path: &str) -> bool {
        crate::http::get(
            &self.host,
            self.api_port,
            "/v3/paths/list",
            Duration::from_secs(2),
        )
        .is_ok_and(|r| r.status == 200 && r.body.contains(&format!("\"{path}\"")))
    }

    /// Polls until the media server lists `live/<name>/in`; when it did, or `None` after
    /// `within`. A publisher's clock (`-re`) starts between its spawn and this moment.
    pub fn wait_input_listed(&self, name: &str, within: Duration) -> Option<Instant> {
        let t = Instant::now();
        while t.elapsed() < within {
            if self.lists_input(name) {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// An ffmpeg process publishing a file in real time (`-re`) to `live/<name>/in`.
#[derive(Debug)]
pub struct Publisher {
    process: ManagedProcess,
    started: Instant,
}

impl Publisher {
    /// Starts publishing `file` as stream `name`; ffmpeg's output goes to `log`.
    pub fn start(
        server: &MediaServerAddr,
        name: &str,
        file: &Path,
        log: &Path,
    ) -> Result<Self, ProcessError> {
        Self::start_at(server, name, file, log, Duration::ZERO)
    }

    /// [`start`](Self::start) from `offset` into the file (from the key frame at or
    /// before it): an encoder that reconnects goes on with the live content, not from the
    /// beginning.
    pub fn start_at(
        server: &MediaServerAddr,
        name: &str,
        file: &Path,
        log: &Path,
        offset: Duration,
    ) -> Result<Self, ProcessError> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"]);
        if !offset.is_zero() {
            cmd.arg("-ss").arg(format!("{:.3}", offset.as_secs_f64()));
        }
        cmd.arg("-i")
            .arg(file)
            .args(["-map", "0:v:0", "-map", "0:a:0", "-c", "copy"])
            // ffmpeg's RTP packetizer gathers AAC frames for up to -muxdelay (0.7 s by
            // default) per packet and never sends the last, unfinished packet: quiet audio
            // (small frames) at the end of a publication was lost, up to 0.6 s (every output
            // ended 0.45-0.55 s of audio short of its video). 0: one frame per packet.
            .args(["-muxdelay", "0"])
            .args(["-rtsp_transport", "tcp", "-f", "rtsp"])
            .arg(server.input_url(name));
        let process = ManagedProcess::spawn(&format!("publisher {name}"), cmd, Some(log))?;
        Ok(Self {
            process,
            started: Instant::now(),
        })
    }

    /// When publishing started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits until the file has been sent (ffmpeg exits); `Ok(true)` when it exited 0.
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, ProcessError> {
        Ok(matches!(self.process.wait_timeout(timeout)?, Some(s) if s.success()))
    }

    /// True while ffmpeg is still sending.
    pub fn running(&mut self) -> bool {
        matches!(self.process.try_status(), Ok(None))
    }

    /// Stops publishing now (the publisher "goes away").
    pub fn stop(&mut self) {
        self.process.stop_with(true, Duration::from_secs(2));
    }

    /// Freezes the publisher (SIGSTOP): its connection stays open and nothing is sent, as
    /// with a stalled uplink. [`resume`](Self::resume) lets it go on.
    pub fn pause(&self) {
        self.process.signal(libc::SIGSTOP);
    }

    /// Lets a paused publisher go on (SIGCONT); with `-re` it then sends what it owes.
    pub fn resume(&self) {
        self.process.signal(libc::SIGCONT);
    }
}

/// `ffmpeg` reading `live/<name>/out` from the media server's RTMP port, up to (not
/// including) its output options.
fn play_command(server: &MediaServerAddr, name: &str) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-y"])
        .args(["-rw_timeout", "15000000"])
        .args(["-rtmp_app", "live", "-rtmp_playpath"])
        .arg(format!("{name}/out"))
        // The output may start with video only (the audio of a stream joins a little
        // later): probe long enough to see both streams.
        .args(["-analyzeduration", "15000000", "-probesize", "20000000"])
        .args(["-rtmp_live", "live", "-i"])
        .arg(format!("rtmp://{}:{}", server.host, server.rtmp_port))
        .args(["-map", "0:v", "-map", "0:a", "-c", "copy"]);
    cmd
}

/// Shared state between the recorder thread and its owner.
#[derive(Debug, Default)]
struct RecorderState {
    attempts: u32,
    connected_at: Option<Instant>,
    last_error: Option<String>,
}

/// Records `live/<name>/out` over RTMP into an FLV file.
///
/// Media servers refuse to play a path that nobody publishes yet, so the recorder is
/// started *before* the publisher, waits until the server lists the output (polled every
/// 100 ms) and then plays it, retrying a play that ends at once; the media server's GOP
/// cache hands it the stream from its last key frame, which at the start of the output is
/// its first one. It stops at the end of the output stream (the media-service ends its
/// publication when the input ends).
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<ManagedProcess>>>,
    state: Arc<Mutex<RecorderState>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts trying to record `name`'s output into `path` until `give_up` from now.
    pub fn start(
        server: &MediaServerAddr,
        name: &str,
        path: &Path,
        log: &Path,
        give_up: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let current: Arc<Mutex<Option<ManagedProcess>>> = Arc::new(Mutex::new(None));
        let state = Arc::new(Mutex::new(RecorderState::default()));
        let (server, name, path_buf, log) = (
            server.clone(),
            name.to_string(),
            path.to_path_buf(),
            log.to_path_buf(),
        );
        let thread = {
            let (stop, current, state) = (stop.clone(), current.clone(), state.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + give_up;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    // Play only a name the server lists: a flood of plays of a name nobody
                    // publishes yet was followed (xiu-lite, compose, twice) by the
                    // media-service's publication of it being held back until its input
                    // ended; see LiveRecorder.
                    if !server.lists_output(&name) {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let mut cmd = play_command(&server, &name);
                    cmd.args(["-f", "flv"]).arg(&path_buf);
                    let attempt_start = Instant::now();
                    let proc =
                        match ManagedProcess::spawn(&format!("recorder {name}"), cmd, Some(&log)) {
                            Ok(p) => p,
                            Err(e) => {
                                lock(&state).last_error = Some(e.to_string());
                                return;
                            }
                        };
                    lock(&state).attempts += 1;
                    *lock(&current) = Some(proc);
                    // Wait for this attempt to end.
                    loop {
                        let done = match lock(&current).as_mut() {
                            Some(p) => !matches!(p.try_status(), Ok(None)),
                            None => true,
                        };
                        if done || stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let size = std::fs::metadata(&path_buf).map(|m| m.len()).unwrap_or(0);
                        if size > 0 {
                            let mut st = lock(&state);
                            if st.connected_at.is_none() {
                                st.connected_at = Some(attempt_start);
                            }
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    let size = std::fs::metadata(&path_buf).map(|m| m.len()).unwrap_or(0);
                    // Anything beyond an FLV header means the stream was found: done.
                    if size > 1024 || stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(150));
                }
                lock(&state).last_error = Some(format!(
                    "no output stream live/{name}/out within {give_up:?}"
                ));
            })
        };
        Self {
            path: path.to_path_buf(),
            stop,
            current,
            state,
            thread: Some(thread),
        }
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the recorder first received data (roughly when the output appeared).
    pub fn connected_at(&self) -> Option<Instant> {
        lock(&self.state).connected_at
    }

    /// Waits for the output stream to end by itself (up to `timeout`), then stops
    /// recording either way and returns the file's path. An error says why nothing usable
    /// was recorded.
    pub fn finish(mut self, timeout: Duration) -> Result<PathBuf, String> {
        let deadline = Instant::now() + timeout;
        if let Some(thread) = &self.thread {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.shutdown();
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if size <= 1024 {
            let st = lock(&self.state);
            return Err(format!(
                "recording {} is empty after {} attempt(s): {}",
                self.path.display(),
                st.attempts,
                st.last_error
                    .clone()
                    .unwrap_or_else(|| "the output ended immediately".into())
            ));
        }
        Ok(self.path.clone())
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut p) = lock(&self.current).take() {
            // SIGINT lets ffmpeg write a complete FLV trailer.
            p.stop_with(true, Duration::from_secs(5));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One connection of a [`LiveRecorder`]: its file and when each of its tags arrived.
#[derive(Debug, Clone)]
pub struct RecordedSegment {
    /// The FLV file of this connection.
    pub path: PathBuf,
    /// When the connection was made (seconds since the recorder's epoch).
    pub connected_s: f64,
    /// Every audio/video tag with its arrival time (seconds since the recorder's epoch).
    pub tags: Vec<(f64, Tag)>,
}

impl RecordedSegment {
    /// Tags that carry media (codec configuration left out).
    pub fn media_tags(&self) -> impl Iterator<Item = &(f64, Tag)> {
        self.tags.iter().filter(|(_, t)| !t.config)
    }
}

/// Records `live/<name>/out` for as long as it runs, across the output's ends and
/// returns: each time the output (re)appears a new connection writes a new file
/// (`<stem>-000.flv`, `-001`, ...), and every tag's arrival time is kept, so that gaps in
/// the output can be measured against the wall clock. Connections that received no media
/// (the output was not there yet) leave no segment.
#[derive(Debug)]
pub struct LiveRecorder {
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<ManagedProcess>>>,
    segments: Arc<Mutex<Vec<RecordedSegment>>>,
    thread: Option<JoinHandle<()>>,
}

impl LiveRecorder {
    /// Starts recording `name`'s output into `<stem>-NNN.flv`; arrival times count from
    /// `epoch`. ffmpeg's messages go to `log`.
    pub fn start(
        server: &MediaServerAddr,
        name: &str,
        stem: &Path,
        log: &Path,
        epoch: Instant,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let current: Arc<Mutex<Option<ManagedProcess>>> = Arc::new(Mutex::new(None));
        let segments: Arc<Mutex<Vec<RecordedSegment>>> = Arc::new(Mutex::new(Vec::new()));
        let (server, name, stem, log) = (
            server.clone(),
            name.to_string(),
            stem.to_path_buf(),
            log.to_path_buf(),
        );
        let thread = {
            let (stop, current, segments) = (stop.clone(), current.clone(), segments.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    // Play only what the server lists, as a viewer picking a stream does:
                    // with xiu-lite, players subscribing to a name nobody publishes yet
                    // (a flood of them, one every half second) were followed once by the
                    // media-service's publication of that name hanging for 25 s.
                    if !server.lists_output(&name) {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let n = lock(&segments).len();
                    let path = PathBuf::from(format!("{}-{n:03}.flv", stem.display()));
                    let mut cmd = play_command(&server, &name);
                    cmd.args(["-flush_packets", "1", "-f", "flv", "pipe:1"]);
                    let Ok((proc, pipe)) =
                        ManagedProcess::spawn_piped(&format!("recorder {name}"), cmd, Some(&log))
                    else {
                        return;
                    };
                    *lock(&current) = Some(proc);
                    lock(&segments).push(RecordedSegment {
                        path: path.clone(),
                        connected_s: epoch.elapsed().as_secs_f64(),
                        tags: Vec::new(),
                    });
                    if let Ok(file) = std::fs::File::create(&path) {
                        let _ = crate::flv::copy_tags(pipe, std::io::BufWriter::new(file), |tag| {
                            let at = epoch.elapsed().as_secs_f64();
                            if let Some(seg) = lock(&segments).last_mut() {
                                seg.tags.push((at, tag));
                            }
                        });
                    }
                    let finished = lock(&current).take();
                    if let Some(mut p) = finished {
                        p.stop_with(true, Duration::from_secs(5));
                    }
                    let mut segs = lock(&segments);
                    if segs.last().is_some_and(|s| s.media_tags().next().is_none()) {
                        segs.pop();
                        let _ = std::fs::remove_file(&path);
                    }
                    drop(segs);
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        Self {
            stop,
            current,
            segments,
            thread: Some(thread),
        }
    }

    /// The segments so far (the last one may still grow).
    pub fn segments(&self) -> Vec<RecordedSegment> {
        lock(&self.segments).clone()
    }

    /// Waits (up to `timeout`) for the output to end by itself (no packet for 3 s after at
    /// least one arrived; `epoch` is the recorder's), then stops and returns every segment.
    pub fn finish_when_ended(self, epoch: Instant, timeout: Duration) -> Vec<RecordedSegment> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let last = self
                .segments()
                .iter()
                .flat_map(|s| s.tags.last().map(|(at, _)| *at))
                .fold(f64::NEG_INFINITY, f64::max);
            if last.is_finite() && epoch.elapsed().as_secs_f64() - last > 3.0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.finish()
    }

    /// Stops recording and returns every segment.
    pub fn finish(mut self) -> Vec<RecordedSegment> {
        self.shutdown();
        self.segments()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(p) = lock(&self.current).as_mut() {
            // SIGINT: ffmpeg ends the stream properly; the copy then sees its end.
            p.signal(libc::SIGINT);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LiveRecorder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
