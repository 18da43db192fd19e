//! Stream registry: one supervised worker per stream, started by discovery or the control
//! API, restarted with backoff after errors, removed when its input ends or on request.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sts_client::StsClientConfig;
use sts_protocol::{AudioFormat, StreamInit};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::appearances::Appearances;
use crate::config::Settings;
use crate::lifecycle::{self, EndReason, Phase, Policy, RunEnd};
use crate::metrics::Metrics;
use crate::pcm::{STS_CHANNELS, STS_RATE};
use crate::pipeline::OutputTarget;
use crate::sts::StsDubber;
use crate::worker::{self, StatusCell, WorkerConfig, WorkerEnd, WorkerStatus};

/// Who asked for a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Found on the media server.
    Discovery,
    /// `POST /v1/streams`.
    Api,
}

/// A request to run a stream, as `POST /v1/streams` receives it (unchecked: see
/// [`crate::policy`]).
#[derive(Debug, Clone, Deserialize)]
pub struct StreamRequest {
    /// Stream name: `live/<name>/in` -> `live/<name>/out`.
    pub name: String,
    /// Input URI; default `rtsp://HOST:RTSP_PORT/live/<name>/in`.
    #[serde(default)]
    pub input: Option<String>,
    /// Output; default `rtmp://HOST:RTMP_PORT/live/<name>/out` (app `live`, stream `<name>/out`).
    #[serde(default)]
    pub output: Option<String>,
}

/// A stream to run, its input and output already resolved and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name: `live/<name>/in` -> `live/<name>/out`.
    pub name: String,
    /// Input URI; default `rtsp://HOST:RTSP_PORT/live/<name>/in`.
    pub input: Option<String>,
    /// Output; default `rtmp://HOST:RTMP_PORT/live/<name>/out`.
    pub output: Option<OutputTarget>,
}

impl StreamSpec {
    /// The media server's input and output for `name` (what discovery runs).
    pub fn on_media_server(name: &str) -> Self {
        Self {
            name: name.to_string(),
            input: None,
            output: None,
        }
    }
}

/// Errors of the registry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManagerError {
    /// Name not usable.
    #[error("invalid stream name '{0}': use 1-64 characters from A-Z a-z 0-9 - _ . (it becomes live/<name>/in)")]
    BadName(String),
    /// Already running.
    #[error("stream '{0}' already exists")]
    Exists(String),
    /// Not known.
    #[error("stream '{0}' not found")]
    NotFound(String),
    /// MAX_STREAMS workers are running.
    #[error("MAX_STREAMS={max} workers are already running (control API and discovery together); stop one with DELETE /v1/streams/<name> or raise MAX_STREAMS")]
    AtCapacity {
        /// MAX_STREAMS.
        max: u32,
    },
    /// Shutting down.
    #[error("the service is shutting down")]
    ShuttingDown,
}

struct Entry {
    origin: Origin,
    status: StatusCell,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    /// The STS instance this stream's fragments go to (one of STS_SERVICE_URL's), for its
    /// whole life.
    sts_url: String,
}

/// What `GET /v1/streams` and `/health` show per stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamView {
    /// Name.
    pub name: String,
    /// Origin.
    pub origin: Origin,
    /// Status.
    #[serde(flatten)]
    pub status: WorkerStatus,
}

/// The registry.
pub struct Manager {
    settings: Settings,
    metrics: Arc<Metrics>,
    streams: Mutex<BTreeMap<String, Entry>>,
    /// What discovery has seen on the media server, and started.
    appearances: Mutex<Appearances>,
    shutdown: CancellationToken,
    /// Where the streams' fragment boundaries fall (FRAGMENT_STAGGER), if staggered.
    stagger: Option<Arc<crate::stagger::Planner>>,
}

/// Valid stream names.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !n.starts_with('.')
}

impl Manager {
    /// A registry using `settings` for every worker.
    pub fn new(
        settings: Settings,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let stagger = settings
            .fragment_stagger
            .then(|| crate::stagger::Planner::new(settings.fragment_ms()));
        Arc::new(Self {
            settings,
            metrics,
            streams: Mutex::new(BTreeMap::new()),
            appearances: Mutex::new(Appearances::default()),
            stagger,
            shutdown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// SIGTERM received: no stream starts any more.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Streams and their states.
    pub fn list(&self) -> Vec<StreamView> {
        self.lock()
            .iter()
            .map(|(n, e)| StreamView {
                name: n.clone(),
                origin: e.origin,
                status: e.status.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            })
            .collect()
    }

    /// Workers that hold a slot: running, starting or retrying (not finished).
    fn active(map: &BTreeMap<String, Entry>) -> usize {
        map.values().filter(|e| !e.task.is_finished()).count()
    }

    /// The STS instance for a new stream: the one with the fewest active streams, the first
    /// listed on a tie.
    fn least_loaded_sts(&self, map: &BTreeMap<String, Entry>) -> String {
        let urls = self.settings.sts_urls();
        let load = |u: &String| {
            map.values()
                .filter(|e| !e.task.is_finished() && &e.sts_url == u)
                .count()
        };
        pick_least_loaded(&urls, load)
    }

    /// Starts a supervised worker for `req`, unless MAX_STREAMS workers are running.
    pub fn start(
        self: &Arc<Self>,
        req: StreamSpec,
        origin: Origin,
    ) -> Result<StreamView, ManagerError> {
        if self.shutdown.is_cancelled() {
            return Err(ManagerError::ShuttingDown);
        }
        if !valid_name(&req.name) {
            return Err(ManagerError::BadName(req.name));
        }
        let s = &self.settings;
        let input = req.input.clone().unwrap_or_else(|| {
            format!(
                "rtsp://{}:{}/live/{}/in",
                s.mediamtx_host, s.mediamtx_rtsp_port, req.name
            )
        });
        let output = req.output.clone().unwrap_or_else(|| OutputTarget::Rtmp {
            host: s.mediamtx_host.clone(),
            port: s.mediamtx_rtmp_port,
            app: "live".into(),
            stream: format!("{}/out", req.name),
        });
        let mut map = self.lock();
        if let Some(e) = map.get(&req.name) {
            if !e.task.is_finished() {
                return Err(ManagerError::Exists(req.name));
            }
        }
        // Counted and inserted under one lock: concurrent starts cannot overshoot.
        if Self::active(&map) >= s.max_streams as usize {
            return Err(ManagerError::AtCapacity { max: s.max_streams });
        }
        let status: StatusCell = Arc::new(Mutex::new(WorkerStatus {
            state: "starting".into(),
            input: crate::redact::uri(&input),
            output: output.describe(),
            ..Default::default()
        }));
        let cancel = self.shutdown.child_token();
        let mut wcfg = worker_config(s, &req.name, input, output);
        wcfg.stagger = self.stagger.clone();
        wcfg.sts_url = self.least_loaded_sts(&map);
        lock(&status).sts = crate::redact::uri(&wcfg.sts_url);
        let sts_url = wcfg.sts_url.clone();
        let me = self.clone();
        let task = tokio::spawn(
            me.clone()
                .supervise(wcfg, origin, status.clone(), cancel.clone()),
        );
        map.insert(
            req.name.clone(),
            Entry {
                origin,
                status: status.clone(),
                cancel,
                task,
                sts_url: sts_url.clone(),
            },
        );
        info!(stream = %req.name, ?origin, sts = %crate::redact::uri(&sts_url), "stream added");
        let view = StreamView {
            name: req.name,
            origin,
            status: status.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        Ok(view)
    }

    /// Stops and removes a stream.
    pub async fn stop(&self, name: &str) -> Result<(), ManagerError> {
        let entry = self
            .lock()
            .remove(name)
            .ok_or_else(|| ManagerError::NotFound(name.into()))?;
        entry.cancel.cancel();
        let _ = entry.task.await;
        self.metrics.forget_stream(name);
        info!(stream = %name, "stream removed");
        Ok(())
    }

    /// Stops every stream (SIGTERM).
    pub async fn stop_all(&self) {
        let entries: Vec<(String, Entry)> = std::mem::take(&mut *self.lock()).into_iter().collect();
        for (_, e) in &entries {
            e.cancel.cancel();
        }
        for (n, e) in entries {
            if tokio::time::timeout(Duration::from_secs(10), e.task)
                .await
                .is_err()
            {
                warn!(stream = %n, "worker did not stop within 10 s");
            }
        }
    }

    fn forget_if_done(&self, name: &str) {
        let mut map = self.lock();
        if map.get(name).is_some_and(|e| e.task.is_finished()) {
            map.remove(name);
            self.metrics.forget_stream(name);
        }
    }

    /// Runs a worker, restarting it with backoff after errors and again when its input
    /// comes back within INPUT_GRACE_MS, until the input is gone or it is cancelled (the
    /// transitions: [`lifecycle`]).
    async fn supervise(
        self: Arc<Self>,
        cfg: WorkerConfig,
        origin: Origin,
        status: StatusCell,
        cancel: CancellationToken,
    ) {
        let s = &self.settings;
        let name = cfg.name.clone();
        let policy = Policy {
            live: lifecycle::is_live(&cfg.input_uri),
            grace: Duration::from_millis(s.input_grace_ms as u64),
        };
        let mut delay = Duration::from_millis(s.retry_min_ms as u64);
        let max = Duration::from_millis(s.retry_max_ms as u64);
        let mut restarts = 0u64;
        let mut phase = Phase::Running;
        // Fragment numbers continue after whatever the stream's artifact directory holds
        // (an earlier appearance or process), so no artifact is overwritten.
        let first_sequence = match &cfg.segment_dir {
            Some(d) => {
                let dir = d.join(crate::worker::sanitize(&name));
                tokio::task::spawn_blocking(move || crate::artifacts::next_sequence(&dir))
                    .await
                    .unwrap_or(0)
            }
            None => 0,
        };
        let reason = loop {
            let mut run_cfg = cfg.clone();
            match phase {
                Phase::Ended(reason) => break reason,
                Phase::Running => {}
                Phase::Backoff => {
                    tokio::select! {
                        _ = cancel.cancelled() => break EndReason::Stopped,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(max);
                    // A discovered stream whose path vanished is awaited like a stopped one.
                    if origin == Origin::Discovery
                        && !self.path_still_listed(&name).await.unwrap_or(true)
                    {
                        info!(stream = %name, "stream no longer on the media server");
                        phase = lifecycle::input_vanished(policy, Instant::now());
                        continue;
                    }
                }
                Phase::AwaitingInput { until } => {
                    match self
                        .await_input(&name, origin, until, &status, &cancel)
                        .await
                    {
                        Awaited::Back { until } => {
                            phase = Phase::AwaitingInput { until };
                            // An input we cannot list is simply tried for what is left of
                            // the grace; a listed one gets the usual start timeout.
                            if origin == Origin::Api {
                                let left = until.saturating_duration_since(Instant::now());
                                run_cfg.start_timeout_ms =
                                    (left.as_millis() as u32).max(MIN_START_TIMEOUT_MS);
                            }
                        }
                        Awaited::Over(reason) => break reason,
                    }
                }
            }
            // Numbering continues across runs: no fragment number is seen twice.
            run_cfg.first_sequence = first_sequence + lock(&status).fragments;
            let from = if matches!(phase, Phase::Backoff) {
                Phase::Running
            } else {
                phase
            };
            let cut_before = lock(&status).fragments;
            let result = self.run_once(run_cfg, &status, &cancel).await;
            let from = lifecycle::after_input_seen(from, lock(&status).fragments > cut_before);
            let end = match result {
                Ok(WorkerEnd::Finished) => RunEnd::InputStopped,
                Ok(WorkerEnd::Cancelled) => RunEnd::Cancelled,
                Err(e) => {
                    restarts += 1;
                    self.metrics.restarts.with_label_values(&[&name]).inc();
                    let mut st = lock(&status);
                    st.state = "retrying".into();
                    st.restarts = restarts;
                    st.last_error = Some(e.to_string());
                    if !matches!(from, Phase::AwaitingInput { .. }) {
                        warn!(stream = %name, error = %crate::redact::text(&e.to_string()), retry_in_ms = delay.as_millis() as u64, "worker failed; restarting");
                    } else {
                        debug!(stream = %name, error = %crate::redact::text(&e.to_string()), "input not back yet");
                    }
                    RunEnd::Failed
                }
            };
            phase = lifecycle::after_run(from, end, policy, Instant::now());
            if let Phase::AwaitingInput { until } = phase {
                if end == RunEnd::InputStopped {
                    info!(stream = %name, grace_ms = s.input_grace_ms, "input stopped; the output comes back if the input does within INPUT_GRACE_MS");
                    delay = Duration::from_millis(s.retry_min_ms as u64);
                }
                set_waiting(&status, until);
            }
        };
        match reason {
            EndReason::Stopped => {}
            EndReason::InputEnded => info!(stream = %name, "input ended; worker finished"),
            EndReason::InputGone => {
                info!(stream = %name, grace_ms = s.input_grace_ms, "input did not come back within INPUT_GRACE_MS; stream finished");
                let mut st = lock(&status);
                st.state = "finished".into();
                st.grace_left_ms = None;
            }
        }
        if reason != EndReason::Stopped && origin == Origin::Discovery {
            if reason == EndReason::InputGone {
                // Discovery may have missed the gap (the server was down while it polled):
                // let its next sighting count as a new appearance.
                lock(&self.appearances).ended(&name);
            }
            // Keep finished API streams visible for GET; drop discovered ones so they can
            // be rediscovered. The task handle is finished only after we return: remove on
            // the next poll.
            let me = self.clone();
            let n = name.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                me.forget_if_done(&n);
            });
        }
    }

    /// One worker run with its own STS session.
    async fn run_once(
        &self,
        cfg: WorkerConfig,
        status: &StatusCell,
        cancel: &CancellationToken,
    ) -> Result<WorkerEnd, worker::WorkerError> {
        let s = &self.settings;
        let (dubber, events) = StsDubber::start(
            sts_client_config(s, &cfg.sts_url),
            stream_init(s, &cfg.name),
        );
        lock(status).grace_left_ms = None;
        let r = worker::run_worker(
            cfg,
            dubber.clone(),
            events,
            self.metrics.clone(),
            status.clone(),
            cancel.clone(),
            None,
        )
        .await;
        dubber.shutdown().await;
        r
    }

    /// Waits, in `waiting_for_input`, for a stopped input to come back. A discovered input
    /// is back when its path is listed again (polled every [`GRACE_POLL`]; each sighting
    /// renews the grace, so a publisher that stays connected but silent keeps its stream);
    /// an input we cannot list is simply tried again after [`GRACE_POLL`].
    async fn await_input(
        &self,
        name: &str,
        origin: Origin,
        mut until: Instant,
        status: &StatusCell,
        cancel: &CancellationToken,
    ) -> Awaited {
        loop {
            set_waiting(status, until);
            tokio::select! {
                _ = cancel.cancelled() => return Awaited::Over(EndReason::Stopped),
                _ = tokio::time::sleep(GRACE_POLL) => {}
            }
            let now = Instant::now();
            let listed = match origin {
                Origin::Discovery => self.path_still_listed(name).await,
                Origin::Api => None,
            };
            match listed {
                Some(true) => {
                    until =
                        until.max(now + Duration::from_millis(self.settings.input_grace_ms as u64));
                    info!(stream = %name, "input is back; starting its worker");
                    return Awaited::Back { until };
                }
                _ if now >= until => return Awaited::Over(EndReason::InputGone),
                None if origin == Origin::Api => return Awaited::Back { until },
                _ => {}
            }
        }
    }

    async fn path_still_listed(&self, name: &str) -> Option<bool> {
        let list = fetch_paths(&self.settings).await.ok()?;
        Some(list.contains(name))
    }

    /// Polls the media server for `live/<name>/in` and starts workers for new names. A name
    /// is started once per appearance: it must vanish from the list (as seen by a poll, or
    /// by its worker giving up) before it is started again, so a finished worker is not
    /// restarted on a stale path.
    pub async fn discovery_loop(self: Arc<Self>) {
        let s = self.settings.clone();
        let mut warned = false;
        let mut tick = tokio::time::interval(Duration::from_millis(s.discovery_interval_ms as u64));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match fetch_paths(&s).await {
                Ok(names) => {
                    if warned {
                        info!("media server API reachable again");
                        warned = false;
                    }
                    let fresh = lock(&self.appearances).poll(&names);
                    for n in &fresh {
                        // `start` replaces an entry whose worker has ended (its removal
                        // comes a moment later), so a quick republication is not skipped.
                        match self.start(StreamSpec::on_media_server(n), Origin::Discovery) {
                            Ok(_) => {
                                if lock(&self.appearances).started(n) {
                                    info!(stream = %n, "discovered live/{n}/in; started now that a worker slot is free");
                                } else {
                                    info!(stream = %n, "discovered live/{n}/in");
                                }
                            }
                            // Still retrying: that worker picks the publication up itself.
                            Err(ManagerError::Exists(_)) => {
                                debug!(stream = %n, "worker still running; it retries by itself")
                            }
                            Err(e @ ManagerError::AtCapacity { .. }) => {
                                if lock(&self.appearances).at_capacity(n) {
                                    warn!(stream = %n, error = %e, "discovered live/{n}/in not started; it starts when a worker slot is free");
                                }
                            }
                            Err(e) => {
                                warn!(stream = %n, error = %e, "discovered stream not started")
                            }
                        }
                    }
                }
                Err(e) => {
                    if !warned {
                        warn!(error = %e, "media server API unreachable; discovery retries every {} ms", s.discovery_interval_ms);
                        warned = true;
                    } else {
                        debug!(error = %e, "discovery poll failed");
                    }
                }
            }
        }
    }
}

/// How often a stream awaiting its input looks for it (and the pause between attempts).
pub const GRACE_POLL: Duration = Duration::from_millis(250);

/// Shortest start timeout of a run that tries an input during its grace period (ms).
const MIN_START_TIMEOUT_MS: u32 = 1_000;

/// What waiting for an input came to.
enum Awaited {
    /// The input is (likely) back: run a worker; the grace now ends at `until`.
    Back {
        /// End of the grace period.
        until: Instant,
    },
    /// The supervisor ends.
    Over(EndReason),
}

/// Shows `waiting_for_input` and the grace left.
fn set_waiting(status: &StatusCell, until: Instant) {
    let mut st = lock(status);
    st.state = "waiting_for_input".into();
    st.dubbing = worker::Dubbing::WaitingForInput;
    st.fallback_reason = None;
    st.grace_left_ms = Some(until.saturating_duration_since(Instant::now()).as_millis() as u64);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Deserialize)]
struct PathList {
    #[serde(default)]
    items: Vec<PathItem>,
}

#[derive(Deserialize)]
struct PathItem {
    name: String,
    /// MediaMTX: false while a path is configured but nobody publishes.
    #[serde(default = "yes")]
    ready: bool,
}

fn yes() -> bool {
    true
}

/// Names `<n>` of ready `live/<n>/in` paths from the MediaMTX-style API.
pub async fn fetch_paths(s: &Settings) -> Result<HashSet<String>, String> {
    let url = format!(
        "http://{}:{}/v3/paths/list",
        s.mediamtx_host, s.mediamtx_api_port
    );
    // One client for the process: building one loads the TLS root store, which at a
    // 250 ms poll cost an idle media-service a third of a core.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = match CLIENT.get() {
        Some(c) => c,
        None => {
            let c = reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .map_err(|e| format!("cannot build the HTTP client for {url}: {e}"))?;
            CLIENT.get_or_init(|| c)
        }
    };
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let list: PathList = resp
        .json()
        .await
        .map_err(|e| format!("GET {url}: unexpected body: {e}"))?;
    Ok(parse_names(
        list.items.into_iter().filter(|i| i.ready).map(|i| i.name),
    ))
}

fn parse_names(paths: impl Iterator<Item = String>) -> HashSet<String> {
    paths
        .filter_map(|p| {
            let n = p.strip_prefix("live/")?.strip_suffix("/in")?;
            valid_name(n).then(|| n.to_string())
        })
        .collect()
}

/// Worker settings for a stream.
pub fn worker_config(
    s: &Settings,
    name: &str,
    input: String,
    output: OutputTarget,
) -> WorkerConfig {
    WorkerConfig {
        name: name.to_string(),
        input_uri: input,
        output,
        fragment_ms: s.fragment_ms(),
        boundaries: s.boundaries(),
        delay_ms: s.output_delay_ms(),
        deadline_margin_ms: s.deadline_margin_ms,
        idle_timeout_ms: s.input_idle_timeout_ms,
        start_timeout_ms: s.input_start_timeout_ms,
        resync_tolerance_ms: s.resync_tolerance_ms,
        aac_bitrate: s.aac_bitrate,
        segment_dir: s.segment_artifacts.then(|| s.segment_dir.clone()),
        segment_keep: s.segment_artifacts_keep,
        mix: s.mix(),
        first_sequence: 0,
        stagger: None,
        sts_url: s.sts_urls().swap_remove(0),
    }
}

/// The first of `urls` with the smallest `load`.
fn pick_least_loaded(urls: &[String], load: impl Fn(&String) -> usize) -> String {
    urls.iter()
        .min_by_key(|u| load(u))
        .cloned()
        .unwrap_or_default()
}

/// STS client settings for the instance at `url`.
pub fn sts_client_config(s: &Settings, url: &str) -> StsClientConfig {
    let mut c = StsClientConfig::new(url.to_string());
    c.auth_token = s.sts_auth_token.clone();
    c.reconnect_min = Duration::from_millis(s.retry_min_ms as u64);
    c.reconnect_max = Duration::from_millis(s.retry_max_ms as u64);
    c
}

/// `stream:init` for a stream.
pub fn stream_init(s: &Settings, name: &str) -> StreamInit {
    StreamInit {
        stream_id: name.to_string(),
        source_language: s.source_language.clone(),
        target_language: s.target_language.clone(),
        voice: s.voice.clone(),
        fragment_duration_ms: s.fragment_ms(),
        audio: AudioFormat::pcm_s16le(STS_RATE, STS_CHANNELS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_streams_go_to_the_least_loaded_sts() {
        let urls: Vec<String> = ["http://a:3000", "http://b:3000", "http://c:3000"]
            .iter()
            .map(|u| u.to_string())
            .collect();
        let pick = |loads: [usize; 3]| {
            pick_least_loaded(&urls, |u| loads[urls.iter().position(|x| x == u).unwrap()])
        };
        assert_eq!(
            pick([0, 0, 0]),
            "http://a:3000",
            "the first listed on a tie"
        );
        assert_eq!(pick([1, 0, 0]), "http://b:3000");
        assert_eq!(pick([1, 1, 0]), "http://c:3000");
        assert_eq!(pick([2, 1, 1]), "http://b:3000");
    }

    #[test]
    fn only_live_in_paths_are_streams() {
        let names = parse_names(
            [
                "live/a/in",
                "live/a/out",
                "live/b-2/in",
                "other/c/in",
                "live/x/y/in",
                "live/../in",
            ]
            .into_iter()
            .map(String::from),
        );
        let mut v: Vec<_> = names.into_iter().collect();
        v.sort();
        assert_eq!(v, ["a", "b-2"]);
    }

    #[test]
    fn names() {
        assert!(valid_name("demo_1.x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
    }
}
