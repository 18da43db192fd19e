//! The system under test: a *pair* is one media side (media server + media-service) and
//! one STS side, run either as local processes (`native`) or as the two docker-compose
//! projects (`compose`), with the env contract of ARCHITECTURE §3 in both cases.
//!
//! The suite starts one main pair (real STS) and one "slow" pair (echo STS slower than the
//! output deadline) per run; tests that restart services or need odd settings start their
//! own pair on free ports, so they never disturb the shared ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::compose::{self, ComposeTool, Project};
use crate::http;
use crate::media::MediaServerAddr;
use crate::process::{self, tail_file, ManagedProcess};

/// How the services are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Local processes: xiu-lite, sts-service, media-service.
    Native,
    /// `docker compose` with the two e2e composition files.
    Compose,
}

impl BackendKind {
    /// Reads `E2E_BACKEND` (`native` | `compose`); `native` when unset. The backend is
    /// always chosen explicitly: an engine that happens to answer does not change the run.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("E2E_BACKEND").ok().as_deref().map(str::trim) {
            Some("native") | Some("") | None => Ok(Self::Native),
            Some("compose") => Ok(Self::Compose),
            Some(other) => bail!(
                "E2E_BACKEND={other:?} is not a backend; accepted: native (the default), compose"
            ),
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Compose => "compose",
        }
    }
}

/// Whether a Docker engine answers `docker info`.
pub fn docker_engine_available() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The five ports of a pair (host side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// Media server RTSP.
    pub rtsp: u16,
    /// Media server RTMP.
    pub rtmp: u16,
    /// Media server API.
    pub api: u16,
    /// media-service HTTP.
    pub media: u16,
    /// sts-service Socket.IO/HTTP.
    pub sts: u16,
}

impl Ports {
    /// The contract's defaults (ARCHITECTURE §3).
    pub const CONTRACT: Ports = Ports {
        rtsp: 8554,
        rtmp: 1935,
        api: 9997,
        media: 8080,
        sts: 3000,
    };

    /// Contract defaults, each overridable by `E2E_RTSP_PORT`, `E2E_RTMP_PORT`,
    /// `E2E_API_PORT`, `E2E_MEDIA_PORT`, `E2E_STS_PORT`.
    pub fn from_env() -> anyhow::Result<Self> {
        fn port(var: &str, default: u16) -> anyhow::Result<u16> {
            match std::env::var(var) {
                Err(_) => Ok(default),
                Ok(v) => match v.trim().parse::<u16>() {
                    Ok(p) if p > 0 => Ok(p),
                    _ => bail!("{var}={v:?} is not a TCP port; accepted: 1..65535"),
                },
            }
        }
        let c = Self::CONTRACT;
        Ok(Ports {
            rtsp: port("E2E_RTSP_PORT", c.rtsp)?,
            rtmp: port("E2E_RTMP_PORT", c.rtmp)?,
            api: port("E2E_API_PORT", c.api)?,
            media: port("E2E_MEDIA_PORT", c.media)?,
            sts: port("E2E_STS_PORT", c.sts)?,
        })
    }

    /// Five distinct free ports from [`livedub_test_ports::E2E_STACKS`], below the
    /// kernel's ephemeral range: a port picked from that range (`bind(:0)`) can be taken
    /// between the pick and the service's own bind by any outgoing connection on the
    /// machine (a publisher, a client, docker-proxy), which made a service fail with
    /// "address in use". Ports handed out by this process are never handed out again.
    pub fn free() -> anyhow::Result<Self> {
        let p = livedub_test_ports::free_ports(livedub_test_ports::E2E_STACKS, 5)?;
        Ok(Ports {
            rtsp: p[0],
            rtmp: p[1],
            api: p[2],
            media: p[3],
            sts: p[4],
        })
    }

    fn named(&self) -> [(&'static str, u16); 5] {
        [
            ("E2E_RTSP_PORT (media server RTSP)", self.rtsp),
            ("E2E_RTMP_PORT (media server RTMP)", self.rtmp),
            ("E2E_API_PORT (media server API)", self.api),
            ("E2E_MEDIA_PORT (media-service)", self.media),
            ("E2E_STS_PORT (sts-service)", self.sts),
        ]
    }

    /// Whether a pair's `service` (its compose service name) answers its readiness
    /// endpoint on `host`: the services their `/health`, the media server its API.
    fn answers(&self, host: &str, service: &str) -> bool {
        let (port, path) = match service {
            "sts-service" => (self.sts, "/health"),
            "media-service" => (self.media, "/health"),
            MEDIA_SERVER_SERVICE => (self.api, MEDIA_SERVER_PROBE),
            _ => return false,
        };
        http::is_ok(host, port, path)
    }

    /// Fails with a message naming the variable when a port is already taken.
    pub fn ensure_free(&self, host: &str) -> anyhow::Result<()> {
        for (what, port) in self.named() {
            if http::port_open(host, port) {
                bail!("port {port} for {what} is already in use on {host}: stop whatever listens there (e.g. a running `make demo`) or choose another port with that variable");
            }
        }
        Ok(())
    }
}

/// One side of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// sts-service.
    Sts,
    /// media server + media-service.
    Media,
}

impl Side {
    /// Name used in logs and compose projects.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Sts => "sts",
            Side::Media => "media",
        }
    }

    /// The side's service: its binary, its `apps/` folder and its compose service.
    pub fn service(self) -> &'static str {
        match self {
            Side::Sts => "sts-service",
            Side::Media => "media-service",
        }
    }
}

/// Suite-wide settings (from `E2E_*` variables).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Backend.
    pub backend: BackendKind,
    /// Unique id of this run (log folder, compose project names, stream names).
    pub run_id: String,
    /// `target/e2e-logs/<run-id>`.
    pub log_dir: PathBuf,
    /// Repository root.
    pub repo_root: PathBuf,
    /// sts-service binary (native).
    pub sts_bin: PathBuf,
    /// media-service binary (native).
    pub media_bin: PathBuf,
    /// Local media server binary (native).
    pub media_server_bin: PathBuf,
    /// Host the tests reach the services on.
    pub host: String,
    /// LOG_LEVEL passed to the services.
    pub log_level: String,
    /// `KEY=VALUE` pairs added to every STS (from `E2E_STS_ENV`).
    pub extra_sts_env: Vec<(String, String)>,
    /// `KEY=VALUE` pairs added to every media-service (from `E2E_MEDIA_ENV`).
    pub extra_media_env: Vec<(String, String)>,
    /// The host's Compose (compose backend only), found once.
    pub compose: Option<ComposeTool>,
    /// Host folder of Whisper models, mounted into the STS containers (compose backend).
    pub model_cache: PathBuf,
}

/// Parses `K=V,K2=V2` (commas inside values are not supported; keep values simple).
pub fn parse_env_list(var: &str, text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("{var}: {item:?} is not KEY=VALUE; accepted: KEY=VALUE[,KEY=VALUE...]"),
        })
        .collect()
}

impl Settings {
    /// Reads the suite settings; `repo_root` is the workspace root.
    pub fn from_env(repo_root: &Path) -> anyhow::Result<Self> {
        let backend = BackendKind::from_env()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let run_id = format!(
            "{}-{}",
            now,
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let log_root = std::env::var_os("E2E_LOG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root.join("target").join("e2e-logs"));
        prune_old_runs(&log_root, 10);
        let log_dir = log_root.join(&run_id);
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating log folder {}", log_dir.display()))?;
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root.join("target"));
        // E2E_* first, then the Makefile's names for the same binaries.
        let bin = |var: &str, default: PathBuf| {
            let make_name = match var {
                "E2E_STS_BIN" => "STS_SERVICE_BIN",
                "E2E_MEDIA_BIN" => "MEDIA_SERVICE_BIN",
                _ => "XIU_LITE_BIN",
            };
            std::env::var_os(var)
                .or_else(|| std::env::var_os(make_name))
                .map(PathBuf::from)
                .unwrap_or(default)
        };
        let cache = std::env::var_os("LIVEDUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/livedub"));
        let compose = match backend {
            BackendKind::Compose => Some(ComposeTool::detect()?),
            BackendKind::Native => None,
        };
        let model_cache = std::env::var_os("MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.join("models"));
        Ok(Settings {
            backend,
            run_id,
            log_dir,
            repo_root: repo_root.to_path_buf(),
            sts_bin: bin("E2E_STS_BIN", target.join("debug").join("sts-service")),
            media_bin: bin("E2E_MEDIA_BIN", target.join("debug").join("media-service")),
            media_server_bin: bin("E2E_MEDIA_SERVER_BIN", cache.join("bin").join("xiu-lite")),
            host: std::env::var("E2E_HOST").unwrap_or_else(|_| "127.0.0.1".into()),
            log_level: std::env::var("E2E_LOG_LEVEL").unwrap_or_else(|_| "debug".into()),
            extra_sts_env: parse_env_list(
                "E2E_STS_ENV",
                &std::env::var("E2E_STS_ENV").unwrap_or_default(),
            )?,
            extra_media_env: parse_env_list(
                "E2E_MEDIA_ENV",
                &std::env::var("E2E_MEDIA_ENV").unwrap_or_default(),
            )?,
            compose,
            model_cache,
        })
    }

    /// Checks that what the backend needs is there, with an actionable message.
    pub fn check_prerequisites(&self) -> anyhow::Result<()> {
        match self.backend {
            BackendKind::Native => {
                for (what, path, fix) in [
                    (
                        "sts-service",
                        &self.sts_bin,
                        "cargo build -p sts-service (or set E2E_STS_BIN)",
                    ),
                    (
                        "media-service",
                        &self.media_bin,
                        "cargo build -p media-service (or set E2E_MEDIA_BIN)",
                    ),
                    (
                        "local media server",
                        &self.media_server_bin,
                        "scripts/install-media-server.sh (or set E2E_MEDIA_SERVER_BIN)",
                    ),
                ] {
                    if !path.is_file() {
                        bail!("{what} binary not found at {}: run {fix}", path.display());
                    }
                }
            }
            BackendKind::Compose => {
                if !docker_engine_available() {
                    bail!("E2E_BACKEND=compose needs a running Docker engine (`docker info` fails); run the native suite instead (make test)");
                }
                if !self.model_cache.join("whisper-tiny.en").is_dir() {
                    bail!(
                        "no Whisper models in {} (mounted into the STS containers): run scripts/install-models.sh (or set MODEL_DIR)",
                        self.model_cache.display()
                    );
                }
                for (var, default) in COMPOSE_IMAGES {
                    let image = std::env::var(var).unwrap_or_else(|_| default.to_string());
                    if !compose::image_present(&image) {
                        bail!("{var}={image}: no such image in the Docker engine; run `make images` (no registry needed: builds every image from Debian's archive and the host's builds, and writes their names to $LIVEDUB_CACHE/images.env, which `make test-compose` loads), or on a host with a registry build them with `docker compose -f apps/<service>/docker-compose.e2e.yml build`");
                    }
                }
            }
        }
        for tool in ["ffmpeg", "ffprobe"] {
            if Command::new(tool)
                .arg("-version")
                .stdout(Stdio::null())
                .status()
                .is_err()
            {
                bail!("{tool} not found: apt-get install ffmpeg");
            }
        }
        Ok(())
    }

    /// The compose project of one side of a pair (`livedub-e2e-<run>-<label>-<side>`).
    pub fn project(&self, label: &str, side: Side) -> anyhow::Result<Project> {
        let tool = self
            .compose
            .clone()
            .context("compose project asked for on the native backend")?;
        Ok(Project {
            tool,
            name: format!("{}-{label}-{}", self.project_prefix(), side.as_str()).to_lowercase(),
            file: self.compose_file(side),
        })
    }

    /// Every compose project of this run starts with this.
    pub fn project_prefix(&self) -> String {
        format!("livedub-e2e-{}", self.run_id).to_lowercase()
    }

    /// The compose file of a side.
    pub fn compose_file(&self, side: Side) -> PathBuf {
        self.repo_root
            .join("apps")
            .join(side.service())
            .join("docker-compose.e2e.yml")
    }
}

/// Keeps the newest `keep` run folders under `root` (`E2E_KEEP_RUNS` overrides): each run
/// leaves recordings and WAVs (~15 MB), which would otherwise pile up on a dev machine.
fn prune_old_runs(root: &Path, keep: usize) {
    let keep = std::env::var("E2E_KEEP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(keep);
    let mut runs: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    // Run ids start with the Unix time: lexical order is age order for years to come.
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    for old in &runs[..excess] {
        let _ = std::fs::remove_dir_all(old);
    }
}

/// What a pair is started with.
#[derive(Debug, Clone)]
pub struct PairSpec {
    /// Short label (`main`, `slow`, `lifecycle`...), used in log names and projects.
    pub label: String,
    /// Host ports.
    pub ports: Ports,
    /// Extra STS variables (e.g. `STS_MODE=echo`).
    pub sts_env: Vec<(String, String)>,
    /// Extra media-service variables.
    pub media_env: Vec<(String, String)>,
}

impl PairSpec {
    /// A pair on `ports` with no extra variables.
    pub fn new(label: &str, ports: Ports) -> Self {
        Self {
            label: label.to_string(),
            ports,
            sts_env: Vec::new(),
            media_env: Vec::new(),
        }
    }

    /// Adds an STS variable.
    pub fn sts(mut self, key: &str, value: impl ToString) -> Self {
        self.sts_env.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a media-service variable.
    pub fn media(mut self, key: &str, value: impl ToString) -> Self {
        self.media_env.push((key.to_string(), value.to_string()));
        self
    }
}

#[derive(Debug, Default)]
struct NativeProcs {
    media_server: Option<ManagedProcess>,
    media: Option<ManagedProcess>,
    sts: Option<ManagedProcess>,
}

/// A running pair. Dropping it tears it down.
#[derive(Debug)]
pub struct Pair {
    settings: Arc<Settings>,
    spec: PairSpec,
    native: NativeProcs,
    compose_hook: Option<u64>,
}

/// Result of running a service binary once (config checks).
#[derive(Debug, Clone)]
pub struct OneShot {
    /// Exit code, `None` when killed (e.g. it was still running at the timeout).
    pub code: Option<i32>,
    /// Whether it ended before the timeout.
    pub exited: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran, as this process saw it (compose: container creation included).
    pub elapsed: Duration,
    /// How long the service's own process ran: the container's start to finish times from
    /// the engine (compose), or `elapsed` (native).
    pub service_elapsed: Duration,
}

/// Image variables of the compose files and their defaults there.
const COMPOSE_IMAGES: [(&str, &str); 3] = [
    ("STS_IMAGE", "livedub/sts-service:e2e"),
    ("MEDIA_IMAGE", "livedub/media-service:e2e"),
    ("MEDIAMTX_IMAGE", "bluenviron/mediamtx:1.12.2-ffmpeg"),
];

const STS_HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
const MEDIA_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// The media server's readiness endpoint (MediaMTX's API; xiu-lite serves the same).
const MEDIA_SERVER_PROBE: &str = "/v3/paths/list";
/// The media server's service in the media-service compose file.
const MEDIA_SERVER_SERVICE: &str = "mediamtx";

impl Pair {
    /// Starts both sides (STS first, as the media-service connects to it).
    pub fn start(settings: Arc<Settings>, spec: PairSpec) -> anyhow::Result<Self> {
        let mut pair = Pair {
            settings,
            spec,
            native: NativeProcs::default(),
            compose_hook: None,
        };
        if pair.settings.backend == BackendKind::Compose {
            let projects = [
                pair.settings.project(&pair.spec.label, Side::Media)?,
                pair.settings.project(&pair.spec.label, Side::Sts)?,
            ];
            pair.compose_hook = Some(process::register_hook(move || {
                for p in &projects {
                    let _ = p.down();
                }
            }));
        }
        pair.start_side(Side::Sts)?;
        pair.start_side(Side::Media)?;
        Ok(pair)
    }

    /// The pair's label.
    pub fn label(&self) -> &str {
        &self.spec.label
    }

    /// Its spec.
    pub fn spec(&self) -> &PairSpec {
        &self.spec
    }

    /// Where tests reach the media server.
    pub fn media_server(&self) -> MediaServerAddr {
        MediaServerAddr {
            host: self.settings.host.clone(),
            rtsp_port: self.spec.ports.rtsp,
            rtmp_port: self.spec.ports.rtmp,
            api_port: self.spec.ports.api,
        }
    }

    /// `http://host:port` of the STS.
    pub fn sts_url(&self) -> String {
        format!("http://{}:{}", self.settings.host, self.spec.ports.sts)
    }

    /// Host the services are reached on.
    pub fn host(&self) -> &str {
        &self.settings.host
    }

    /// The media-service's HTTP port.
    pub fn media_port(&self) -> u16 {
        self.spec.ports.media
    }

    /// The STS's port.
    pub fn sts_port(&self) -> u16 {
        self.spec.ports.sts
    }

    /// Host folder where the media-service writes per-stream fragment artifacts.
    pub fn segment_dir(&self) -> PathBuf {
        self.settings
            .log_dir
            .join(format!("{}-segments", self.spec.label))
    }

    fn log_path(&self, what: &str) -> PathBuf {
        self.settings
            .log_dir
            .join(format!("{}-{what}.log", self.spec.label))
    }

    fn sts_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("STS_PORT".to_string(), self.spec.ports.sts.to_string()),
            ("LOG_LEVEL".to_string(), self.settings.log_level.clone()),
        ];
        if self.settings.backend == BackendKind::Native {
            // Native processes share the host: listen on loopback only.
            env.push(("HOST".into(), "127.0.0.1".into()));
        } else {
            // The host's model cache (what the native suite runs), not a per-run copy.
            env.push((
                "STS_MODEL_CACHE".into(),
                self.settings.model_cache.display().to_string(),
            ));
        }
        env.extend(self.settings.extra_sts_env.iter().cloned());
        env.extend(self.spec.sts_env.iter().cloned());
        env
    }

    fn media_env(&self) -> Vec<(String, String)> {
        let p = self.spec.ports;
        let native = self.settings.backend == BackendKind::Native;
        let mut env = vec![
            ("MEDIAMTX_RTSP_PORT".to_string(), p.rtsp.to_string()),
            ("MEDIAMTX_RTMP_PORT".to_string(), p.rtmp.to_string()),
            ("MEDIAMTX_API_PORT".to_string(), p.api.to_string()),
            ("MEDIA_SERVICE_PORT".to_string(), p.media.to_string()),
            (
                "LOG_LEVEL".to_string(),
                media_log_filter(&self.settings.log_level),
            ),
        ];
        if native {
            env.push(("MEDIAMTX_HOST".into(), "127.0.0.1".into()));
            env.push((
                "STS_SERVICE_URL".into(),
                format!("http://127.0.0.1:{}", p.sts),
            ));
            env.push((
                "SEGMENT_DIR".into(),
                self.segment_dir().display().to_string(),
            ));
        } else {
            env.push((
                "STS_SERVICE_URL".into(),
                format!("http://host.docker.internal:{}", p.sts),
            ));
            // Bind-mounted over the segments volume so the tests can read the artifacts,
            // written as the host user so they can be removed afterwards.
            env.push((
                "E2E_SEGMENTS_DIR".into(),
                self.segment_dir().display().to_string(),
            ));
            env.push(("MEDIA_SERVICE_USER".into(), compose::host_user()));
        }
        env.extend(self.settings.extra_media_env.iter().cloned());
        env.extend(self.spec.media_env.iter().cloned());
        env
    }

    /// Starts one side and waits until it is healthy.
    pub fn start_side(&mut self, side: Side) -> anyhow::Result<()> {
        let started = Instant::now();
        match self.settings.backend {
            BackendKind::Native => self.start_native(side)?,
            BackendKind::Compose => self.start_compose(side)?,
        }
        eprintln!(
            "[e2e] {} {} side healthy in {:.1}s",
            self.spec.label,
            side.as_str(),
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn marker(path: &Path, text: &str) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "===== [e2e] {text} =====");
        }
    }

    fn start_native(&mut self, side: Side) -> anyhow::Result<()> {
        let (host, p) = (self.settings.host.clone(), self.spec.ports);
        match side {
            Side::Sts => {
                let mut cmd = Command::new(&self.settings.sts_bin);
                cmd.envs(self.sts_env());
                self.native.sts = Some(self.spawn_healthy(
                    Side::Sts.service(),
                    cmd,
                    STS_HEALTH_TIMEOUT,
                    || p.answers(&host, Side::Sts.service()),
                )?);
            }
            Side::Media => {
                self.start_native_media_server()?;
                std::fs::create_dir_all(self.segment_dir())?;
                let mut cmd = Command::new(&self.settings.media_bin);
                cmd.envs(self.media_env());
                self.native.media = Some(self.spawn_healthy(
                    Side::Media.service(),
                    cmd,
                    MEDIA_HEALTH_TIMEOUT,
                    || p.answers(&host, Side::Media.service()),
                )?);
            }
        }
        Ok(())
    }

    /// Starts `cmd` as this pair's `what` (its log: `<label>-<what>.log`) and waits until
    /// `healthy`; the process is stopped again when it does not get there.
    fn spawn_healthy(
        &self,
        what: &str,
        cmd: Command,
        timeout: Duration,
        healthy: impl Fn() -> bool,
    ) -> anyhow::Result<ManagedProcess> {
        let log = self.log_path(what);
        Self::marker(&log, &format!("starting {what}"));
        let mut proc =
            ManagedProcess::spawn(&format!("{} {what}", self.spec.label), cmd, Some(&log))?;
        wait_healthy(what, &log, timeout, Some(&mut proc), healthy)?;
        Ok(proc)
    }

    fn start_native_media_server(&mut self) -> anyhow::Result<()> {
        let (host, p) = (self.settings.host.clone(), self.spec.ports);
        let mut cmd = Command::new(&self.settings.media_server_bin);
        cmd.args(["--rtsp-port", &p.rtsp.to_string()])
            .args(["--rtmp-port", &p.rtmp.to_string()])
            .args(["--api-port", &p.api.to_string()]);
        self.native.media_server = Some(self.spawn_healthy(
            "media-server",
            cmd,
            Duration::from_secs(20),
            || p.answers(&host, MEDIA_SERVER_SERVICE),
        )?);
        Ok(())
    }

    /// Restarts the media server alone (the media-service keeps running): every
    /// publisher and reader of the server loses its connection. Returns once the new one
    /// answers its API.
    pub fn restart_media_server(&mut self) -> anyhow::Result<()> {
        match self.settings.backend {
            BackendKind::Native => {
                if let Some(mut p) = self.native.media_server.take() {
                    p.stop();
                }
                self.start_native_media_server()
            }
            BackendKind::Compose => {
                self.project(Side::Media)?
                    .run(&[], &["restart", "-t", "5", MEDIA_SERVER_SERVICE])?;
                let (host, api) = (self.settings.host.clone(), self.spec.ports.api);
                if !http::ok_within(&host, api, MEDIA_SERVER_PROBE, Duration::from_secs(20)) {
                    bail!("media server API not answering 20 s after its restart");
                }
                Ok(())
            }
        }
    }

    /// Kills the STS at once (SIGKILL: no graceful shutdown), as a crash or an OOM kill
    /// would. [`start_side`](Self::start_side) brings it back.
    pub fn kill_sts(&mut self) -> anyhow::Result<()> {
        match self.settings.backend {
            BackendKind::Native => {
                if let Some(mut p) = self.native.sts.take() {
                    p.signal(libc::SIGKILL);
                    p.wait_timeout(Duration::from_secs(10))?;
                }
            }
            BackendKind::Compose => {
                self.project(Side::Sts)?
                    .run(&[], &["kill", "-s", "SIGKILL", Side::Sts.service()])?;
            }
        }
        Ok(())
    }

    /// The operating-system process id of a side's service (sts-service, media-service),
    /// native backend only: for reading its resources from `/proc`.
    pub fn service_pid(&self, side: Side) -> Option<u32> {
        match side {
            Side::Sts => self.native.sts.as_ref(),
            Side::Media => self.native.media.as_ref(),
        }
        .map(ManagedProcess::pid)
    }

    fn project(&self, side: Side) -> anyhow::Result<Project> {
        self.settings.project(&self.spec.label, side)
    }

    fn start_compose(&mut self, side: Side) -> anyhow::Result<()> {
        let env = match side {
            Side::Sts => self.sts_env(),
            Side::Media => {
                std::fs::create_dir_all(self.segment_dir())?;
                self.media_env()
            }
        };
        let project = self.project(side)?;
        check_forwarded(&project, side, &env)?;
        let timeout = match side {
            Side::Sts => STS_HEALTH_TIMEOUT,
            Side::Media => MEDIA_HEALTH_TIMEOUT,
        };
        let (host, ports) = (self.settings.host.clone(), self.spec.ports);
        // The suite's own probe of each container through its published port, the same
        // endpoints the native start waits on (the engine's healthchecks run every 10 s).
        let answers = move |service: &str| ports.answers(&host, service);
        if let Err(e) = project.up(&env, timeout, answers) {
            self.dump_logs();
            bail!(
                "starting {} {} ({}): {e:#}\n{}",
                self.spec.label,
                side.as_str(),
                project.name,
                self.log_tails(30)
            );
        }
        Ok(())
    }

    /// Stops one side (the other keeps running).
    pub fn stop_side(&mut self, side: Side) -> anyhow::Result<()> {
        match self.settings.backend {
            BackendKind::Native => match side {
                Side::Sts => {
                    if let Some(mut p) = self.native.sts.take() {
                        p.stop();
                    }
                }
                Side::Media => {
                    if let Some(mut p) = self.native.media.take() {
                        p.stop();
                    }
                    if let Some(mut p) = self.native.media_server.take() {
                        p.stop();
                    }
                }
            },
            BackendKind::Compose => {
                self.project(side)?.run(&[], &["stop", "-t", "10"])?;
            }
        }
        Ok(())
    }

    /// Whether every process of the side is alive: the native processes, or every
    /// container of the side's project running (read from the engine).
    pub fn side_running(&mut self, side: Side) -> anyhow::Result<bool> {
        match self.settings.backend {
            BackendKind::Native => {
                let procs = match side {
                    Side::Sts => vec![self.native.sts.as_mut()],
                    Side::Media => vec![
                        self.native.media_server.as_mut(),
                        self.native.media.as_mut(),
                    ],
                };
                Ok(procs
                    .into_iter()
                    .all(|p| p.is_some_and(|p| matches!(p.try_status(), Ok(None)))))
            }
            BackendKind::Compose => {
                let project = self.project(side)?;
                let services = project.services()?;
                let containers = project.containers()?;
                Ok(!services.is_empty()
                    && services.iter().all(|s| {
                        containers
                            .iter()
                            .any(|c| &c.service == s && c.status == "running")
                    }))
            }
        }
    }

    /// Identity of a side's running service process, for "was it restarted?" checks: the
    /// process id (native), or the container's id and start time read from the engine
    /// (compose). An error when the service is not running.
    pub fn service_identity(&mut self, side: Side) -> anyhow::Result<String> {
        match self.settings.backend {
            BackendKind::Native => {
                let proc = match side {
                    Side::Sts => self.native.sts.as_mut(),
                    Side::Media => self.native.media.as_mut(),
                }
                .with_context(|| format!("{} side was not started", side.as_str()))?;
                if let Some(status) = proc.try_status()? {
                    bail!("{} exited ({status})", proc.name());
                }
                Ok(format!("pid {}", proc.pid()))
            }
            BackendKind::Compose => Ok(self.project(side)?.running(side.service())?.identity()),
        }
    }

    /// Runs a side's service once with extra variables and arguments (e.g. a bad value,
    /// `--print-env-contract`), waiting up to `timeout`.
    pub fn run_once(
        settings: &Settings,
        side: Side,
        env: &[(String, String)],
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<OneShot> {
        let started = Instant::now();
        // The compose project of this one run: taken down afterwards, whatever happened
        // (`run --rm` removes the container, not the project's network).
        let mut oneshot: Option<Project> = None;
        let mut cmd = match settings.backend {
            BackendKind::Native => {
                let mut c = Command::new(match side {
                    Side::Sts => &settings.sts_bin,
                    Side::Media => &settings.media_bin,
                });
                c.envs(env.iter().cloned()).args(args);
                c
            }
            BackendKind::Compose => {
                let label = format!("oneshot{}", ONESHOTS.fetch_add(1, Ordering::Relaxed));
                let p = settings.project(&label, side)?;
                // The host's model cache, as for a pair (no per-run copy of the models).
                let mut c = p.command(&[(
                    "STS_MODEL_CACHE".to_string(),
                    settings.model_cache.display().to_string(),
                )]);
                // Named, not `--rm`: the engine's start and finish times of the container
                // are read afterwards; `down` removes it with the project.
                c.args(["run", "--no-deps", "-T", "--name"]).arg(&p.name);
                oneshot = Some(p);
                for (k, v) in env {
                    c.arg("-e").arg(format!("{k}={v}"));
                }
                c.arg(side.service());
                c.args(args);
                c
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().context("starting the service once")?;
        let pid = child.id() as i32;
        let out_pipe = child.stdout.take();
        let err_pipe = child.stderr.take();
        let read = |p: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut p) = p {
                    let _ = p.read_to_string(&mut s);
                }
                s
            })
        };
        let out_t = read(out_pipe.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
        let err_t = read(err_pipe.map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
        let mut exited = false;
        let mut code = None;
        while started.elapsed() < timeout {
            if let Some(status) = child.try_wait()? {
                exited = true;
                code = status.code();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !exited {
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        let elapsed = started.elapsed();
        let mut service_elapsed = elapsed;
        if let Some(p) = oneshot {
            // Removed whatever the run time's answer: an error must not leave it behind.
            let run_time = exited.then(|| compose::container_run_time(&p.name));
            let _ = compose::docker(&["rm", "-f", "-v", &p.name]);
            p.down()?;
            if let Some(t) = run_time {
                service_elapsed = t?;
            }
        }
        Ok(OneShot {
            code,
            exited,
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
            elapsed,
            service_elapsed,
        })
    }

    /// Log files of this pair (compose logs are fetched into files first).
    pub fn log_files(&self) -> Vec<PathBuf> {
        if self.settings.backend == BackendKind::Compose {
            self.dump_logs();
        }
        let prefix = format!("{}-", self.spec.label);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.settings.log_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "log")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        files.sort();
        files
    }

    fn dump_logs(&self) {
        if self.settings.backend != BackendKind::Compose {
            return;
        }
        for side in [Side::Sts, Side::Media] {
            let Ok(project) = self.project(side) else {
                continue;
            };
            if let Ok(out) = project
                .command(&[])
                .args(["logs", "--no-color", "--timestamps"])
                .output()
            {
                let _ = std::fs::write(
                    self.log_path(&format!("compose-{}", side.as_str())),
                    &out.stdout,
                );
            }
        }
    }

    /// The last `lines` lines of every log of this pair, headed by file name.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for f in self.log_files() {
            text.push_str(&format!("---- {} (last {lines} lines) ----\n", f.display()));
            for l in tail_file(&f, lines) {
                text.push_str(&l);
                text.push('\n');
            }
        }
        text
    }

    /// Stops everything of this pair (idempotent).
    pub fn teardown(&mut self) {
        match self.settings.backend {
            BackendKind::Native => {
                for p in [
                    self.native.media.take(),
                    self.native.media_server.take(),
                    self.native.sts.take(),
                ]
                .into_iter()
                .flatten()
                {
                    let mut p = p;
                    p.stop();
                }
            }
            BackendKind::Compose => {
                if self.compose_hook.is_some() {
                    self.dump_logs();
                    for side in [Side::Media, Side::Sts] {
                        if let Err(e) = self.project(side).and_then(|p| p.down()) {
                            eprintln!(
                                "[e2e] teardown of {} {}: {e:#}",
                                self.spec.label,
                                side.as_str()
                            );
                        }
                    }
                }
            }
        }
        if let Some(key) = self.compose_hook.take() {
            process::unregister_hook(key);
        }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The media-service takes a tracing filter: keep its HTTP client libraries at info, or
/// their per-poll connection lines drown the worker's own debug lines.
fn media_log_filter(level: &str) -> String {
    if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        format!("{level},hyper_util=info,reqwest=info,h2=info")
    }
}

/// Fails when a variable the suite sets for a side would not reach its service: every
/// variable must be named in the service's `environment:` or interpolated by the file.
fn check_forwarded(project: &Project, side: Side, env: &[(String, String)]) -> anyhow::Result<()> {
    let service = side.service();
    let named = crate::contract::compose_environment(&project.file, service)?;
    let interpolated = crate::contract::compose_interpolations(&project.file)?;
    let dropped: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !named.contains_key(*k) && !interpolated.iter().any(|i| i == k))
        .collect();
    if !dropped.is_empty() {
        bail!(
            "{} would not pass {} to {service}: name them in its `environment:` (the compose run would silently differ from the native one); it passes: {}",
            project.file.display(),
            dropped.join(", "),
            named.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Numbers one-shot compose projects apart (tests run them concurrently).
static ONESHOTS: AtomicU64 = AtomicU64::new(0);

use std::os::unix::process::CommandExt;

fn wait_healthy(
    what: &str,
    log: &Path,
    timeout: Duration,
    mut proc: Option<&mut ManagedProcess>,
    healthy: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if healthy() {
            return Ok(());
        }
        if let Some(p) = proc.as_deref_mut() {
            if let Ok(Some(status)) = p.try_status() {
                bail!(
                    "{what} exited during start-up ({status}); last lines of {}:\n{}",
                    log.display(),
                    tail_file(log, 25).join("\n")
                );
            }
        }
        if started.elapsed() > timeout {
            bail!(
                "{what} not healthy after {timeout:?}; last lines of {}:\n{}",
                log.display(),
                tail_file(log, 25).join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a command and returns its output, with the command in the error.
pub fn run_output(cmd: &mut Command) -> anyhow::Result<Output> {
    cmd.output().with_context(|| format!("running {:?}", cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lists_parse_and_reject_garbage() {
        assert_eq!(
            parse_env_list("X", "A=1, B=two ,,C=").unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two".into()),
                ("C".into(), "".into())
            ]
        );
        let err = parse_env_list("E2E_STS_ENV", "A=1,oops")
            .unwrap_err()
            .to_string();
        assert!(err.contains("E2E_STS_ENV") && err.contains("oops"), "{err}");
        assert!(parse_env_list("X", "=1").is_err());
    }

    #[test]
    fn a_variable_the_compose_file_drops_is_refused() {
        let dir = std::env::temp_dir().join(format!("e2e-fwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("compose.yml");
        std::fs::write(
            &file,
            "services:\n  sts-service:\n    image: ${STS_IMAGE:-x}\n    environment:\n      STS_MODE:\n",
        )
        .unwrap();
        let project = Project {
            tool: ComposeTool::Standalone {
                version: "test".into(),
            },
            name: "fwd".into(),
            file,
        };
        let env = |k: &str| vec![(k.to_string(), "1".to_string())];
        // Named in `environment:` or interpolated: passes.
        check_forwarded(&project, Side::Sts, &env("STS_MODE")).unwrap();
        check_forwarded(&project, Side::Sts, &env("STS_IMAGE")).unwrap();
        // Named nowhere: refused, naming it.
        let err = check_forwarded(&project, Side::Sts, &env("STS_BUDGET_MS"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STS_BUDGET_MS") && err.contains("sts-service"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn free_ports_are_distinct() {
        let p = Ports::free().unwrap();
        let mut all = vec![p.rtsp, p.rtmp, p.api, p.media, p.sts];
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 5);
        p.ensure_free("127.0.0.1").unwrap();
    }

    #[test]
    fn busy_port_is_reported_with_its_variable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = Ports::free().unwrap();
        p.sts = listener.local_addr().unwrap().port();
        let err = p.ensure_free("127.0.0.1").unwrap_err().to_string();
        assert!(err.contains("E2E_STS_PORT"), "{err}");
    }
}
