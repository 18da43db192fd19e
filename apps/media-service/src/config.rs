//! Typed configuration (clap derive + env), validated once at start.
//!
//! Every setting has a `DEFAULT_*` constant, an env variable and a help line; the env
//! contract JSON (`--print-env-contract`) is generated from this parser, so the documented
//! contract and the real parser cannot drift apart.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};
use serde::Serialize;

use crate::access::{BearerToken, ControlApiMode};
use crate::fragmenter::Boundaries;
use crate::mix::{MixConfig, MixMode, MIN_DUCK_DB};
use crate::policy::HostList;

/// Default fragment length on the grid (ms): with the budget and margin below, the output
/// runs 7.0 s behind live (docs/capacity.md: six aligned streams every fragment dubbed).
pub const DEFAULT_FRAGMENT_MS: u32 = 4000;
/// Default STS budget on the grid (ms): time from a fragment's end to its answer. The STS's
/// p99 with six aligned live streams on 2 cores plus a margin (docs/capacity.md).
pub const DEFAULT_STS_BUDGET_MS: u32 = 2500;
/// Default longest fragment with speech boundaries (ms): the output runs 4.6 s behind.
pub const DEFAULT_SPEECH_FRAGMENT_MS: u32 = 3000;
/// Default STS budget with speech boundaries (ms): the STS's p99 with two live streams of
/// short fragments plus a margin (docs/capacity.md).
pub const DEFAULT_SPEECH_STS_BUDGET_MS: u32 = 1100;
/// Default quiet stretch that ends a fragment early with speech boundaries (ms).
pub const DEFAULT_PAUSE_MS: u32 = 200;
/// Default margin before render time at which a fragment falls back (ms).
pub const DEFAULT_DEADLINE_MARGIN_MS: u32 = 500;
/// Smallest accepted margin: the AAC encoder needs the next samples ~300 ms ahead.
pub const MIN_DEADLINE_MARGIN_MS: u32 = 300;
/// Default cap on running workers (control API and discovery together).
pub const DEFAULT_MAX_STREAMS: u32 = 8;
/// Largest accepted MAX_STREAMS.
pub const MAX_MAX_STREAMS: u32 = 256;
/// Largest accepted INPUT_GRACE_MS (an hour).
pub const MAX_INPUT_GRACE_MS: u32 = 3_600_000;

fn ranged_u32(s: &str, lo: u32, hi: u32, unit: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("expected an integer from {lo} to {hi} ({unit})")),
    }
}

fn port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err("expected a TCP port from 1 to 65535".into()),
    }
}

fn fragment_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, 1000, 30_000, "milliseconds")
}
fn pause_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, 50, 2000, "milliseconds")
}
fn min_fragment_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, 500, 30_000, "milliseconds")
}
fn boundaries(s: &str) -> Result<BoundaryMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "grid" | "fixed" => Ok(BoundaryMode::Grid),
        "speech" | "pauses" => Ok(BoundaryMode::Speech),
        _ => Err("expected grid (every FRAGMENT_DURATION_MS) or speech (in the pauses of speech, FRAGMENT_DURATION_MS at most)".into()),
    }
}
fn delay_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, 1500, 120_000, "milliseconds")
}
fn budget_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, 100, 60_000, "milliseconds")
}
fn margin_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, MIN_DEADLINE_MARGIN_MS, 5000, "milliseconds")
}
fn timeout_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, 200, 600_000, "milliseconds")
}
fn keep_count(s: &str) -> Result<u32, String> {
    ranged_u32(s, 1, 1_000_000, "fragments")
}
fn grace_ms(s: &str) -> Result<u32, String> {
    ranged_u32(
        s,
        0,
        MAX_INPUT_GRACE_MS,
        "milliseconds; 0 ends an output as soon as its input stops",
    )
}
fn tolerance_ms(s: &str) -> Result<u32, String> {
    ranged_u32(s, 5, 100, "milliseconds; keeps A/V sync under 120 ms")
}
fn max_streams(s: &str) -> Result<u32, String> {
    ranged_u32(s, 1, MAX_MAX_STREAMS, "workers")
}
fn bitrate(s: &str) -> Result<i32, String> {
    ranged_u32(s, 32_000, 512_000, "bit/s").map(|v| v as i32)
}

fn mix_mode(s: &str) -> Result<MixMode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "voice-over" | "voiceover" | "voice_over" => Ok(MixMode::VoiceOver),
        "replace" => Ok(MixMode::Replace),
        _ => Err("expected voice-over (original ducked under the dubbed voice) or replace (dubbed audio only)".into()),
    }
}

fn duck_db(s: &str) -> Result<f32, String> {
    match s.trim().trim_end_matches("dB").trim().parse::<f32>() {
        Ok(v) if v.is_finite() && (MIN_DUCK_DB..=0.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a gain in dB from {MIN_DUCK_DB} to 0, such as -15 (0 = no ducking)"
        )),
    }
}

fn language(s: &str) -> Result<String, String> {
    let t = s.trim();
    let ok = (2..=3).contains(&t.len()) && t.chars().all(|c| c.is_ascii_lowercase())
        || t.len() == 5
            && t.as_bytes()[2] == b'-'
            && t[..2].chars().all(|c| c.is_ascii_lowercase());
    if ok {
        Ok(t.to_string())
    } else {
        Err("expected an ISO 639 language code such as en, es, fr (or xx-YY)".into())
    }
}

fn host(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.contains('/') || t.contains(' ') {
        Err("expected a host name or IP address (no scheme, no path)".into())
    } else {
        Ok(t.to_string())
    }
}

fn http_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(' ') => Ok(t.to_string()),
        _ => Err("expected an http:// or https:// URL such as http://127.0.0.1:3000".into()),
    }
}

/// One STS URL, or several separated by commas (streams are spread over them).
fn http_urls(s: &str) -> Result<String, String> {
    let urls: Vec<String> = s
        .split(',')
        .map(|u| {
            http_url(u).map_err(|_| {
                format!("'{}' is not a URL: expected one http:// or https:// URL such as http://127.0.0.1:3000, or several separated by commas", u.trim())
            })
        })
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = urls.iter().find(|u| !seen.insert(u.as_str())) {
        return Err(format!(
            "{twice} is listed twice: expected distinct STS URLs"
        ));
    }
    Ok(urls.join(","))
}

fn log_level(s: &str) -> Result<String, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let simple = ["trace", "debug", "info", "warn", "warning", "error"];
    if simple.contains(&lower.as_str()) {
        return Ok(if lower == "warning" {
            "warn".into()
        } else {
            lower
        });
    }
    // Anything else must look like a filter directive (`target=level`), so that a typo such
    // as `LOUD` is not silently taken as a target name.
    tracing_subscriber::EnvFilter::try_new(t)
        .ok()
        .filter(|_| t.contains('='))
        .map(|_| t.to_string())
        .ok_or(())
        .map_err(|_| "expected TRACE, DEBUG, INFO, WARN, ERROR (any case) or a tracing filter such as media_service=debug,info".into())
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (also 1/0, yes/no, on/off)".into()),
    }
}

/// Where fragments end (FRAGMENT_BOUNDARIES).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundaryMode {
    /// A fixed grid of FRAGMENT_DURATION_MS from the stream's first sample.
    Grid,
    /// In the pauses of speech, FRAGMENT_DURATION_MS at most.
    Speech,
}

/// Settings shared by every mode (the env contract of ARCHITECTURE §3 and more).
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Media server host (RTSP input, RTMP output, API).
    #[arg(long, env = "MEDIAMTX_HOST", default_value = "127.0.0.1", value_parser = host, global = true)]
    pub mediamtx_host: String,
    /// RTSP port of the media server: inputs are rtsp://HOST:PORT/live/<name>/in.
    #[arg(long, env = "MEDIAMTX_RTSP_PORT", default_value = "8554", value_parser = port, global = true)]
    pub mediamtx_rtsp_port: u16,
    /// RTMP port of the media server: outputs go to app `live`, stream `<name>/out`.
    #[arg(long, env = "MEDIAMTX_RTMP_PORT", default_value = "1935", value_parser = port, global = true)]
    pub mediamtx_rtmp_port: u16,
    /// Control API port of the media server (GET /v3/paths/list for discovery).
    #[arg(long, env = "MEDIAMTX_API_PORT", default_value = "9997", value_parser = port, global = true)]
    pub mediamtx_api_port: u16,
    /// Port of this service's /health, /metrics and /v1/streams.
    #[arg(long, env = "MEDIA_SERVICE_PORT", default_value = "8080", value_parser = port, global = true)]
    pub media_service_port: u16,
    /// Bind address of this service's HTTP server.
    #[arg(long, env = "MEDIA_SERVICE_HOST", default_value = "0.0.0.0", value_parser = host, global = true)]
    pub media_service_host: String,
    /// Bearer token the control API's POST and DELETE require (Authorization: Bearer <token>, 16+ visible ASCII characters). Unset: see CONTROL_API.
    #[arg(long, env = "MEDIA_SERVICE_TOKEN", value_parser = BearerToken::parse, hide_env_values = true, global = true)]
    pub media_service_token: Option<BearerToken>,
    /// Who may POST/DELETE streams: auto (MEDIA_SERVICE_TOKEN when set, else no token on a loopback MEDIA_SERVICE_HOST, else nobody), open (no token: trusted networks only) or closed (nobody). GET is always open.
    #[arg(long, env = "CONTROL_API", default_value = "auto", value_parser = ControlApiMode::parse, global = true)]
    pub control_api: ControlApiMode,
    /// Hosts (HOST or HOST:PORT, comma-separated) the control API accepts http(s):// inputs from; none by default (rtsp, rtsps, rtspt, rtmp, rtmps and srt inputs are accepted from any host).
    #[arg(long, env = "ALLOWED_INPUT_HOSTS", value_parser = HostList::parse, global = true)]
    pub allowed_input_hosts: Option<HostList>,
    /// Existing folder the control API may read input files from (paths relative to it, or absolute inside it). Unset: file inputs are refused.
    #[arg(long, env = "INPUT_DIR", global = true)]
    pub input_dir: Option<PathBuf>,
    /// RTMP hosts (HOST or HOST:PORT, comma-separated) the control API may publish to besides the media server (MEDIAMTX_HOST:MEDIAMTX_RTMP_PORT); none by default.
    #[arg(long, env = "ALLOWED_OUTPUT_HOSTS", value_parser = HostList::parse, global = true)]
    pub allowed_output_hosts: Option<HostList>,
    /// Existing folder the control API may write output files to (paths relative to it, or absolute inside it). Unset: file outputs are refused.
    #[arg(long, env = "OUTPUT_DIR", global = true)]
    pub output_dir: Option<PathBuf>,
    /// Most workers running at once, control API and discovery together; a POST beyond it answers 429 and discovery waits for a free slot.
    #[arg(long, env = "MAX_STREAMS", default_value_t = DEFAULT_MAX_STREAMS, value_parser = max_streams, global = true)]
    pub max_streams: u32,
    /// Socket.IO URL of the sts-service, or several separated by commas: each new stream goes to the one with the fewest streams (then the first listed) and stays with it.
    #[arg(long, env = "STS_SERVICE_URL", default_value = "http://host.docker.internal:3000", value_parser = http_urls, global = true)]
    pub sts_service_url: String,
    /// Token sent in the Socket.IO handshake auth ({token}) when set.
    #[arg(long, env = "STS_AUTH_TOKEN", global = true, hide_env_values = true)]
    pub sts_auth_token: Option<String>,
    /// Log level: TRACE, DEBUG, INFO, WARN, ERROR, or a tracing filter.
    #[arg(long, env = "LOG_LEVEL", default_value = "INFO", value_parser = log_level, global = true)]
    pub log_level: String,
    /// Per-stream fragment artifacts: original/dubbed WAV and fragments.jsonl under <dir>/<stream>/.
    #[arg(
        long,
        env = "SEGMENT_DIR",
        default_value = "/tmp/segments",
        global = true
    )]
    pub segment_dir: PathBuf,
    /// Write per-fragment artifacts to SEGMENT_DIR.
    #[arg(long, env = "SEGMENT_ARTIFACTS", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set, global = true)]
    pub segment_artifacts: bool,
    /// Per-fragment WAV pairs kept per stream when SEGMENT_ARTIFACTS is on; older ones are deleted as new ones are written (1..1000000; 600 = an hour of 6 s fragments, about 230 MB).
    #[arg(long, env = "SEGMENT_ARTIFACTS_KEEP", default_value = "600", value_parser = keep_count, global = true)]
    pub segment_artifacts_keep: u32,
    /// Where fragments end: grid (every FRAGMENT_DURATION_MS) or speech (in the pauses of speech, where it has any; FRAGMENT_DURATION_MS is then the longest fragment).
    #[arg(long, env = "FRAGMENT_BOUNDARIES", default_value = "grid", value_parser = boundaries, global = true)]
    pub fragment_boundaries: BoundaryMode,
    /// Length of the audio fragments sent to the STS, the longest with speech boundaries (ms). Default: 4000 (grid), 3000 (speech).
    #[arg(long, env = "FRAGMENT_DURATION_MS", value_parser = fragment_ms, global = true)]
    pub fragment_duration_ms: Option<u32>,
    /// Speech boundaries: no fragment ends before it holds this much audio (ms). Default: half of FRAGMENT_DURATION_MS.
    #[arg(long, env = "FRAGMENT_MIN_MS", value_parser = min_fragment_ms, global = true)]
    pub fragment_min_ms: Option<u32>,
    /// Speech boundaries: a quiet stretch this long, once FRAGMENT_MIN_MS is reached, ends the fragment in its middle (ms).
    #[arg(long, env = "FRAGMENT_PAUSE_MS", default_value_t = DEFAULT_PAUSE_MS, value_parser = pause_ms, global = true)]
    pub fragment_pause_ms: u32,
    /// Spread the fragment boundaries of streams that start together over the fragment length: a new live stream whose fragments would end together with a running stream's gets a shorter first fragment, so their fragments reach the STS at different moments.
    #[arg(long, env = "FRAGMENT_STAGGER", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set, global = true)]
    pub fragment_stagger: bool,
    /// Time the STS gets per fragment, from the fragment's end to its answer (ms); used for the default OUTPUT_DELAY_MS. Default: 2500 (grid), 1100 (speech).
    #[arg(long, env = "STS_BUDGET_MS", value_parser = budget_ms, global = true)]
    pub sts_budget_ms: Option<u32>,
    /// A fragment without an answer this long before its render time goes out with the original audio (ms, >= 300).
    #[arg(long, env = "DEADLINE_MARGIN_MS", default_value = "500", value_parser = margin_ms, global = true)]
    pub deadline_margin_ms: u32,
    /// Fixed delay of the output behind the input (ms). Default: FRAGMENT_DURATION_MS + STS_BUDGET_MS + DEADLINE_MARGIN_MS (7000 with the defaults, 4600 with FRAGMENT_BOUNDARIES=speech).
    #[arg(long, env = "OUTPUT_DELAY_MS", value_parser = delay_ms, global = true)]
    pub output_delay_ms: Option<u32>,
    /// Language spoken in the input.
    #[arg(long, env = "SOURCE_LANGUAGE", default_value = "en", value_parser = language, global = true)]
    pub source_language: String,
    /// Language to dub into.
    #[arg(long, env = "TARGET_LANGUAGE", default_value = "es", value_parser = language, global = true)]
    pub target_language: String,
    /// Voice for the STS (provider-specific), optional.
    #[arg(long, env = "VOICE", global = true)]
    pub voice: Option<String>,
    /// Poll the media server API for live/<name>/in paths and start a worker for each.
    #[arg(long, env = "DISCOVERY", default_value = "true", value_parser = boolean, action = clap::ArgAction::Set, global = true)]
    pub discovery: bool,
    /// Discovery poll interval (ms): a newly published input is read within about this long of becoming ready. One poll is one small HTTP request to the media server's API.
    #[arg(long, env = "DISCOVERY_INTERVAL_MS", default_value = "250", value_parser = timeout_ms, global = true)]
    pub discovery_interval_ms: u32,
    /// No media from a live input for this long ends its worker (the publisher stopped) (ms). Its unfinished fragment goes to the STS after min(400, this / 2) ms without media already.
    #[arg(long, env = "INPUT_IDLE_TIMEOUT_MS", default_value = "2000", value_parser = timeout_ms, global = true)]
    pub input_idle_timeout_ms: u32,
    /// How long a live input that stopped (publisher gone or stalled) may take to come back before its output ends for good; 0 ends it at once (ms, 0..3600000). While waiting the stream shows state waiting_for_input.
    #[arg(long, env = "INPUT_GRACE_MS", default_value = "30000", value_parser = grace_ms, global = true)]
    pub input_grace_ms: u32,
    /// No media at all this long after a worker starts is an error, retried with backoff (ms).
    #[arg(long, env = "INPUT_START_TIMEOUT_MS", default_value = "15000", value_parser = timeout_ms, global = true)]
    pub input_start_timeout_ms: u32,
    /// Largest audio timestamp drift absorbed before resyncing (ms).
    #[arg(long, env = "RESYNC_TOLERANCE_MS", default_value = "40", value_parser = tolerance_ms, global = true)]
    pub resync_tolerance_ms: u32,
    /// AAC bitrate of the output audio (bit/s).
    #[arg(long, env = "AAC_BITRATE", default_value = "128000", value_parser = bitrate, global = true)]
    pub aac_bitrate: i32,
    /// How dubbed audio is mixed: voice-over (the original stays, ducked by DUCK_DB while the dubbed voice speaks) or replace (dubbed audio only).
    #[arg(long, env = "MIX_MODE", default_value = "voice-over", value_parser = mix_mode, global = true)]
    pub mix_mode: MixMode,
    /// Voice-over: gain of the original audio while the dubbed voice speaks (dB, -60..0), reached with a 50 ms attack and left with a 200 ms release.
    #[arg(long, env = "DUCK_DB", default_value = "-15", value_parser = duck_db, allow_hyphen_values = true, global = true)]
    pub duck_db: f32,
    /// First retry delay after a worker or STS connection failure (ms).
    #[arg(long, env = "RETRY_MIN_MS", default_value = "500", value_parser = timeout_ms, global = true)]
    pub retry_min_ms: u32,
    /// Largest retry delay (ms).
    #[arg(long, env = "RETRY_MAX_MS", default_value = "10000", value_parser = timeout_ms, global = true)]
    pub retry_max_ms: u32,
}

impl Settings {
    /// The STS instances (STS_SERVICE_URL), in the order listed; never empty.
    pub fn sts_urls(&self) -> Vec<String> {
        self.sts_service_url
            .split(',')
            .map(str::to_string)
            .collect()
    }

    /// FRAGMENT_DURATION_MS, or its default for the boundaries.
    pub fn fragment_ms(&self) -> u32 {
        self.fragment_duration_ms
            .unwrap_or(match self.fragment_boundaries {
                BoundaryMode::Grid => DEFAULT_FRAGMENT_MS,
                BoundaryMode::Speech => DEFAULT_SPEECH_FRAGMENT_MS,
            })
    }

    /// STS_BUDGET_MS, or its default for the boundaries.
    pub fn sts_budget_ms(&self) -> u32 {
        self.sts_budget_ms
            .unwrap_or(match self.fragment_boundaries {
                BoundaryMode::Grid => DEFAULT_STS_BUDGET_MS,
                BoundaryMode::Speech => DEFAULT_SPEECH_STS_BUDGET_MS,
            })
    }

    /// The fragmenter's boundaries.
    pub fn boundaries(&self) -> Boundaries {
        match self.fragment_boundaries {
            BoundaryMode::Grid => Boundaries::Grid,
            BoundaryMode::Speech => Boundaries::Speech {
                min_ms: self.fragment_min_ms.unwrap_or(self.fragment_ms() / 2),
                pause_ms: self.fragment_pause_ms,
            },
        }
    }

    /// OUTPUT_DELAY_MS, or its default F + budget + margin.
    pub fn output_delay_ms(&self) -> u32 {
        self.output_delay_ms
            .unwrap_or(self.fragment_ms() + self.sts_budget_ms() + self.deadline_margin_ms)
    }

    /// Cross-field checks; the error names the variables and what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(min) = self.fragment_min_ms.filter(|&m| m >= self.fragment_ms()) {
            return Err(format!(
                "invalid FRAGMENT_MIN_MS={min}: must be shorter than FRAGMENT_DURATION_MS={}",
                self.fragment_ms()
            ));
        }
        let d = self.output_delay_ms();
        let min = self.fragment_ms() + self.deadline_margin_ms + 100;
        if d < min {
            return Err(format!(
                "invalid OUTPUT_DELAY_MS={d}: must be at least FRAGMENT_DURATION_MS + DEADLINE_MARGIN_MS + 100 = {min} ms, or no fragment could ever be dubbed"
            ));
        }
        if self.retry_min_ms > self.retry_max_ms {
            return Err(format!(
                "invalid RETRY_MIN_MS={}: must not exceed RETRY_MAX_MS={}",
                self.retry_min_ms, self.retry_max_ms
            ));
        }
        Ok(())
    }

    /// MIX_MODE and DUCK_DB.
    pub fn mix(&self) -> MixConfig {
        MixConfig {
            mode: self.mix_mode,
            duck_db: self.duck_db,
        }
    }

    /// The STS budget the delay actually leaves: D - F - margin.
    pub fn effective_sts_budget_ms(&self) -> u32 {
        self.output_delay_ms()
            .saturating_sub(self.fragment_ms() + self.deadline_margin_ms)
    }
}

/// `media-service dub`: dub one input (file or URL) into a file or RTMP output.
#[derive(Debug, Clone, Args)]
pub struct DubArgs {
    /// Input: a file path or any URI GStreamer reads (file://, rtsp://, rtmp://, http://).
    #[arg(long)]
    pub input: String,
    /// Output: a file ending in .mp4, .mkv or .flv, or rtmp://HOST[:PORT]/APP/STREAM.
    #[arg(long)]
    pub output: String,
    /// Transcript/translation report (JSON). Default: <output>.report.json for file outputs.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Stream id used with the STS and in SEGMENT_DIR. Default: derived from the output name.
    #[arg(long)]
    pub name: Option<String>,
    /// Wait this long for the STS session before starting, so early fragments are dubbed (ms; 0 = don't wait).
    #[arg(long, default_value = "20000", value_parser = ranged_wait)]
    pub sts_wait_ms: u32,
}

fn ranged_wait(s: &str) -> Result<u32, String> {
    ranged_u32(s, 0, 600_000, "milliseconds")
}

/// Modes.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Run the service: discovery, control API, /health, /metrics (the default).
    Serve,
    /// Dub one input into one output and exit (this is what `make demo` runs).
    Dub(DubArgs),
}

/// The command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "media-service",
    version,
    about = "livedub media-service: live stream in, dubbed stream out"
)]
pub struct Cli {
    /// Print the environment contract as JSON ([{name, default, meaning}]) and exit.
    #[arg(long)]
    pub print_env_contract: bool,
    /// Settings.
    #[command(flatten)]
    pub settings: Settings,
    /// Mode (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One entry of the env contract.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnvEntry {
    /// Variable.
    pub name: String,
    /// Default, if any.
    pub default: Option<String>,
    /// Help line.
    pub meaning: String,
}

/// The env contract, introspected from the clap command.
pub fn env_contract() -> Vec<EnvEntry> {
    let cmd = Cli::command();
    cmd.get_arguments()
        .filter_map(|a| {
            let name = a.get_env()?.to_string_lossy().to_string();
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().to_string())
                .collect();
            let default = if defaults.is_empty() {
                None
            } else {
                Some(defaults.join(","))
            };
            let meaning = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            Some(EnvEntry {
                name,
                default,
                meaning,
            })
        })
        .collect()
}

/// Turns a clap error into one line naming the variable, the value and what is accepted.
pub fn one_line_error(err: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let arg = err.get(ContextKind::InvalidArg).and_then(|v| match v {
        ContextValue::String(s) => Some(s.clone()),
        _ => None,
    });
    let value = err.get(ContextKind::InvalidValue).and_then(|v| match v {
        ContextValue::String(s) => Some(s.clone()),
        _ => None,
    });
    if let (Some(arg), Some(value)) = (arg, value) {
        let long = arg
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_start_matches("--")
            .to_string();
        let cmd = Cli::command();
        let found = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()));
        let env = found.and_then(|a| a.get_env().map(|e| e.to_string_lossy().to_string()));
        // A secret (MEDIA_SERVICE_TOKEN) is never echoed, not even when it is refused.
        let value = if found.is_some_and(|a| a.is_hide_env_values_set()) {
            "<hidden>".to_string()
        } else {
            value
        };
        let reason = std::error::Error::source(err)
            .map(|s| s.to_string())
            .unwrap_or_else(|| {
                err.get(ContextKind::ValidValue)
                    .map(|v| format!("expected one of {v}"))
                    .unwrap_or_else(|| "not accepted".into())
            });
        return match env {
            Some(env) => format!("invalid {env}='{value}' (--{long}): {reason}"),
            None => format!("invalid value '{value}' for --{long}: {reason}"),
        };
    }
    err.to_string()
        .lines()
        .next()
        .unwrap_or("invalid command line")
        .trim_start_matches("error: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("media-service").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = parse(&[]).unwrap();
        let s = &c.settings;
        assert_eq!(
            (
                s.mediamtx_rtsp_port,
                s.mediamtx_rtmp_port,
                s.mediamtx_api_port,
                s.media_service_port
            ),
            (8554, 1935, 9997, 8080)
        );
        assert_eq!(s.fragment_ms(), 4000);
        assert_eq!(s.boundaries(), Boundaries::Grid);
        assert_eq!(s.output_delay_ms(), 4000 + 2500 + 500);
        assert_eq!(s.effective_sts_budget_ms(), 2500);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn speech_boundaries_bring_their_own_defaults() {
        let c = parse(&["--fragment-boundaries", "speech"]).unwrap();
        let s = &c.settings;
        assert_eq!(
            s.boundaries(),
            Boundaries::Speech {
                min_ms: 1500,
                pause_ms: 200
            }
        );
        assert_eq!(s.output_delay_ms(), 3000 + 1100 + 500);
        // What is set wins over the mode's defaults.
        let c = parse(&[
            "--fragment-boundaries",
            "speech",
            "--fragment-duration-ms",
            "5000",
            "--sts-budget-ms",
            "2000",
            "--fragment-min-ms",
            "2000",
        ])
        .unwrap();
        assert_eq!(c.settings.output_delay_ms(), 7500);
        assert_eq!(
            c.settings.boundaries(),
            Boundaries::Speech {
                min_ms: 2000,
                pause_ms: 200
            }
        );
        let c = parse(&[
            "--fragment-boundaries",
            "speech",
            "--fragment-min-ms",
            "3000",
        ])
        .unwrap();
        let e = c.settings.validate().unwrap_err();
        assert!(
            e.contains("FRAGMENT_MIN_MS=3000") && e.contains("FRAGMENT_DURATION_MS=3000"),
            "{e}"
        );
        let e = parse(&["--fragment-boundaries", "pause"]).unwrap_err();
        assert!(
            one_line_error(&e).contains("expected grid"),
            "{}",
            one_line_error(&e)
        );
    }

    #[test]
    fn bad_value_names_variable_value_and_accepted_range() {
        let e = parse(&["--fragment-duration-ms", "abc"]).unwrap_err();
        let line = one_line_error(&e);
        assert_eq!(line, "invalid FRAGMENT_DURATION_MS='abc' (--fragment-duration-ms): expected an integer from 1000 to 30000 (milliseconds)");
        let e = parse(&["--discovery", "maybe"]).unwrap_err();
        assert!(
            one_line_error(&e).starts_with("invalid DISCOVERY='maybe'"),
            "{}",
            one_line_error(&e)
        );
        let e = parse(&["--sts-service-url", "localhost:3000"]).unwrap_err();
        assert!(one_line_error(&e).contains("http://"));
    }

    #[test]
    fn delay_shorter_than_fragment_is_refused() {
        let c = parse(&["--output-delay-ms", "4000"]).unwrap();
        let e = c.settings.validate().unwrap_err();
        assert!(
            e.contains("OUTPUT_DELAY_MS=4000") && e.contains("4600"),
            "{e}"
        );
    }

    #[test]
    fn env_contract_lists_every_variable_with_defaults() {
        let c = env_contract();
        let get = |n: &str| {
            c.iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        assert_eq!(get("MEDIAMTX_RTSP_PORT").default.as_deref(), Some("8554"));
        assert_eq!(get("MEDIA_SERVICE_PORT").default.as_deref(), Some("8080"));
        assert_eq!(get("SEGMENT_DIR").default.as_deref(), Some("/tmp/segments"));
        assert_eq!(get("OUTPUT_DELAY_MS").default, None);
        assert!(get("STS_SERVICE_URL").meaning.contains("sts-service"));
        for e in &c {
            assert!(!e.meaning.is_empty(), "{} has no help", e.name);
        }
    }

    #[test]
    fn mix_mode_and_duck_depth() {
        let s = parse(&[]).unwrap().settings;
        assert_eq!(s.mix(), MixConfig::default());
        let s = parse(&["--mix-mode", "replace", "--duck-db", "-20"])
            .unwrap()
            .settings;
        assert_eq!((s.mix_mode, s.duck_db), (MixMode::Replace, -20.0));
        let e = one_line_error(&parse(&["--mix-mode", "karaoke"]).unwrap_err());
        assert!(
            e.starts_with("invalid MIX_MODE='karaoke' (--mix-mode): expected voice-over"),
            "{e}"
        );
        for bad in ["6", "-90", "loud"] {
            let e = one_line_error(&parse(&["--duck-db", bad]).unwrap_err());
            assert!(
                e.starts_with(&format!(
                    "invalid DUCK_DB='{bad}' (--duck-db): expected a gain in dB from -60 to 0"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn control_api_settings() {
        let s = parse(&[]).unwrap().settings;
        assert_eq!(s.control_api, ControlApiMode::Auto);
        assert_eq!(s.max_streams, DEFAULT_MAX_STREAMS);
        assert!(s.media_service_token.is_none() && s.input_dir.is_none() && s.output_dir.is_none());
        let s = parse(&[
            "--control-api",
            "OPEN",
            "--max-streams",
            "2",
            "--allowed-input-hosts",
            "a.example,b:8080",
        ])
        .unwrap()
        .settings;
        assert_eq!(s.control_api, ControlApiMode::Open);
        assert_eq!(s.max_streams, 2);
        assert_eq!(
            s.allowed_input_hosts.unwrap().to_string(),
            "a.example,b:8080"
        );
        let e = one_line_error(&parse(&["--max-streams", "0"]).unwrap_err());
        assert_eq!(
            e,
            "invalid MAX_STREAMS='0' (--max-streams): expected an integer from 1 to 256 (workers)"
        );
        let e = one_line_error(&parse(&["--control-api", "yes"]).unwrap_err());
        assert!(
            e.starts_with("invalid CONTROL_API='yes' (--control-api): expected auto"),
            "{e}"
        );
        let e = one_line_error(&parse(&["--allowed-output-hosts", "rtmp://x"]).unwrap_err());
        assert!(
            e.starts_with("invalid ALLOWED_OUTPUT_HOSTS='rtmp://x'"),
            "{e}"
        );
    }

    #[test]
    fn a_refused_token_is_not_echoed() {
        let e = one_line_error(&parse(&["--media-service-token", "tiny secret"]).unwrap_err());
        assert!(
            e.starts_with(
                "invalid MEDIA_SERVICE_TOKEN='<hidden>' (--media-service-token): expected 16"
            ),
            "{e}"
        );
        assert!(!e.contains("tiny secret"), "{e}");
        let s = parse(&["--media-service-token", "0123456789abcdef"])
            .unwrap()
            .settings;
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn languages_and_log_levels() {
        assert!(language("en").is_ok() && language("pt-BR").is_ok());
        assert!(language("English").is_err());
        assert_eq!(log_level("DEBUG").unwrap(), "debug");
        assert!(log_level("loud").is_err());
    }
}
