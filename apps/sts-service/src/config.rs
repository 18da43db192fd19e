//! Typed configuration: flags and the environment contract of ARCHITECTURE §3, validated
//! once at start. A bad value stops the service with one line naming the variable, the value
//! and what is accepted (clap's own message names the env variable and the accepted values).

use clap::{CommandFactory, Parser, ValueEnum};
use std::net::IpAddr;
use std::path::PathBuf;

/// Default Socket.IO / HTTP port.
pub const DEFAULT_PORT: u16 = 3000;
/// Default model cache (where `whisper-tiny.en` and `whisper-base` resolve).
pub const DEFAULT_MODEL_DIR: &str = "/var/cache/livedub/models";
/// Default ASR model name.
pub const DEFAULT_ASR_MODEL: &str = "whisper-tiny.en";
/// Model names resolved inside MODEL_DIR.
pub const KNOWN_ASR_MODELS: &[&str] = &["whisper-tiny.en", "whisper-base"];
/// Default TTS_MODEL (the contract's Coqui model; espeak ignores `tts_models/...` names).
pub const DEFAULT_TTS_MODEL: &str = "tts_models/en/ljspeech/tacotron2-DDC";
/// Default MAX_SESSIONS: concurrent Socket.IO connections (the media-service uses one per
/// stream; 2 cores sustain about 10 fragments per 6 s in total, far fewer streams).
pub const DEFAULT_MAX_SESSIONS: u32 = 64;
/// Default MAX_STREAMS_PER_SESSION: open streams one connection may own.
pub const DEFAULT_MAX_STREAMS_PER_SESSION: u32 = 8;
/// Default MAX_QUEUED_BYTES_PER_SESSION: decoded PCM of the fragments one connection has
/// accepted and not yet answered (about 340 media-service fragments of 6 s at 16 kHz mono,
/// 11 of the largest accepted fragment).
pub const DEFAULT_MAX_QUEUED_BYTES_PER_SESSION: usize = 64 * 1024 * 1024;

/// What the service does with fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// ASR -> translation -> TTS -> duration fit.
    Full,
    /// Return the input audio after ECHO_DELAY_MS (pipeline tests).
    Echo,
}

/// Translation provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TranslationProvider {
    /// Local resident Apertium pipeline (offline default; eng->spa).
    Apertium,
    /// LibreTranslate HTTP API (LIBRETRANSLATE_URL, optional LIBRETRANSLATE_API_KEY).
    Libretranslate,
    /// Google Cloud Translation v2 (GOOGLE_API_KEY).
    Google,
}

/// TTS provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TtsProvider {
    /// Local espeak-ng through libespeak-ng (offline default).
    Espeak,
    /// Coqui TTS server speaking the OpenAI `/v1/audio/speech` API (TTS_URL).
    Coqui,
    /// Any OpenAI-compatible `/v1/audio/speech` server (TTS_URL, TTS_API_KEY).
    Openai,
    /// Piper behind an OpenAI-compatible server (TTS_URL).
    Piper,
    /// Kokoro-FastAPI (OpenAI-compatible, TTS_URL).
    Kokoro,
}

impl TtsProvider {
    /// Whether this provider talks HTTP to TTS_URL.
    pub fn is_http(self) -> bool {
        !matches!(self, Self::Espeak)
    }
}

/// Who may `monitor:subscribe` (read copies of a stream's transcripts and dubbed audio).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MonitorPolicy {
    /// Every connection the handshake admitted (with STS_AUTH_TOKEN set: token holders only;
    /// without: anyone who reaches the port).
    Open,
    /// Only when STS_AUTH_TOKEN is set (the subscriber proved the token at the handshake);
    /// without a token every subscription is refused.
    Token,
    /// Nobody: `monitor:subscribe` is always refused.
    Off,
}

/// CTranslate2 compute type for the ASR model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComputeType {
    /// 8-bit weights (fastest on CPU).
    Int8,
    /// Full precision.
    Float32,
    /// Whatever the model was saved in / the device prefers.
    Default,
}

/// Inference device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// CPU (the only device this build supports).
    Cpu,
}

/// sts-service configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sts-service",
    version,
    about = "livedub speech-to-speech service (Socket.IO): Whisper ASR -> translation -> TTS"
)]
pub struct Config {
    /// Port for Socket.IO, /health and /metrics.
    #[arg(long, env = "STS_PORT", value_name = "STS_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Bind address.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// Log level: trace, debug, info, warn, error (any case).
    #[arg(long, env = "LOG_LEVEL", default_value = "INFO", value_parser = parse_log_level)]
    pub log_level: String,
    /// full = real ASR/MT/TTS; echo = return the input audio after ECHO_DELAY_MS.
    #[arg(
        long,
        env = "STS_MODE",
        value_name = "STS_MODE",
        value_enum,
        default_value = "full"
    )]
    pub mode: Mode,
    /// Delay before an echo answer, in milliseconds (echo mode).
    #[arg(long, env = "ECHO_DELAY_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub echo_delay_ms: u64,
    /// Test setting: wait this long before loading the models, to simulate a slow model load (ms, 0..600000; 0 in production).
    #[arg(long, env = "LOAD_DELAY_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub load_delay_ms: u64,
    /// Directory where model names (whisper-tiny.en, whisper-base) resolve.
    #[arg(long, env = "MODEL_DIR", default_value = DEFAULT_MODEL_DIR)]
    pub model_dir: PathBuf,
    /// Whisper model: whisper-tiny.en, whisper-base, or a CTranslate2 model directory.
    #[arg(long, env = "ASR_MODEL", default_value = DEFAULT_ASR_MODEL)]
    pub asr_model: String,
    /// CTranslate2 compute type (int8 falls back to the saved type if the model rejects it).
    #[arg(long, env = "ASR_COMPUTE_TYPE", value_enum, default_value = "int8")]
    pub asr_compute_type: ComputeType,
    /// Threads used by one Whisper inference.
    #[arg(long, env = "ASR_THREADS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub asr_threads: u16,
    /// Whisper beam size.
    #[arg(long, env = "ASR_BEAM_SIZE", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub asr_beam_size: u16,
    /// Whisper input window in seconds (10 is ~3x faster than the standard 30 on CPU).
    #[arg(long, env = "ASR_WINDOW_S", default_value_t = 10, value_parser = clap::value_parser!(u16).range(8..=30))]
    pub asr_window_s: u16,
    /// Inference device.
    #[arg(long, env = "DEVICE", value_enum, default_value = "cpu")]
    pub device: Device,
    /// Translation provider.
    #[arg(
        long,
        env = "TRANSLATION_PROVIDER",
        value_enum,
        default_value = "apertium"
    )]
    pub translation_provider: TranslationProvider,
    /// LibreTranslate base URL (required with TRANSLATION_PROVIDER=libretranslate).
    #[arg(long, env = "LIBRETRANSLATE_URL")]
    pub libretranslate_url: Option<String>,
    /// LibreTranslate API key (optional).
    #[arg(long, env = "LIBRETRANSLATE_API_KEY", hide_env_values = true)]
    pub libretranslate_api_key: Option<String>,
    /// Google Cloud Translation v2 API key (required with TRANSLATION_PROVIDER=google).
    #[arg(long, env = "GOOGLE_API_KEY", hide_env_values = true)]
    pub google_api_key: Option<String>,
    /// Google Translation endpoint (override for tests/proxies).
    #[arg(
        long,
        env = "GOOGLE_TRANSLATE_URL",
        default_value = "https://translation.googleapis.com/language/translate/v2"
    )]
    pub google_translate_url: String,
    /// TTS provider.
    #[arg(long, env = "TTS_PROVIDER", value_enum, default_value = "espeak")]
    pub tts_provider: TtsProvider,
    /// Provider-specific voice/model (espeak: a voice name such as `es`; `tts_models/...`
    /// names mean "the target language's voice"; HTTP providers: the `voice` field).
    #[arg(long, env = "TTS_MODEL", default_value = DEFAULT_TTS_MODEL)]
    pub tts_model: String,
    /// Base URL of an OpenAI-compatible TTS server (required with HTTP TTS providers).
    #[arg(long, env = "TTS_URL")]
    pub tts_url: Option<String>,
    /// Bearer key for the TTS server (optional).
    #[arg(long, env = "TTS_API_KEY", hide_env_values = true)]
    pub tts_api_key: Option<String>,
    /// Normal speaking rate (espeak words per minute).
    #[arg(long, env = "TTS_RATE_WPM", default_value_t = 175, value_parser = clap::value_parser!(u16).range(80..=450))]
    pub tts_rate_wpm: u16,
    /// Fastest speaking rate used to make speech fit (espeak wpm; HTTP providers scale
    /// their `speed` by TTS_MAX_RATE_WPM / TTS_RATE_WPM).
    #[arg(long, env = "TTS_MAX_RATE_WPM", default_value_t = 260, value_parser = clap::value_parser!(u16).range(80..=450))]
    pub tts_max_rate_wpm: u16,
    /// Largest pitch-preserving time compression applied after speed-up (>= 1.0).
    #[arg(long, env = "TIME_STRETCH_MAX", default_value_t = 1.5, value_parser = parse_stretch)]
    pub time_stretch_max: f32,
    /// Fragments processed at once per stream; beyond it: backpressure.
    #[arg(long, env = "MAX_INFLIGHT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_inflight: u32,
    /// Seconds per fragment (from acceptance) before it is answered as timed out.
    #[arg(long, env = "PROCESSING_TIMEOUT", default_value_t = 30.0, value_parser = parse_timeout)]
    pub processing_timeout: f64,
    /// Largest decoded PCM payload of one fragment, in bytes.
    #[arg(long, env = "MAX_FRAGMENT_BYTES", default_value_t = sts_protocol::DEFAULT_MAX_FRAGMENT_BYTES, value_parser = parse_max_bytes)]
    pub max_fragment_bytes: usize,
    /// When set, clients must send `auth: {token}` in the Socket.IO handshake.
    #[arg(long, env = "STS_AUTH_TOKEN", hide_env_values = true)]
    pub sts_auth_token: Option<String>,
    /// Concurrent Socket.IO connections; further ones are refused at the handshake (TOO_MANY_SESSIONS).
    #[arg(long, env = "MAX_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_sessions: u32,
    /// Open streams one connection may own, and streams it may watch (monitor:subscribe); beyond it: TOO_MANY_STREAMS.
    #[arg(long, env = "MAX_STREAMS_PER_SESSION", default_value_t = DEFAULT_MAX_STREAMS_PER_SESSION, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_streams_per_session: u32,
    /// Decoded PCM bytes of the fragments one connection has accepted and not yet answered; beyond it fragments are refused (SESSION_QUEUE_FULL).
    #[arg(long, env = "MAX_QUEUED_BYTES_PER_SESSION", default_value_t = DEFAULT_MAX_QUEUED_BYTES_PER_SESSION, value_parser = parse_queued_bytes)]
    pub max_queued_bytes_per_session: usize,
    /// Who may monitor:subscribe (copies of any stream's transcripts and dubbed audio): open = every connection the handshake admits, token = only when STS_AUTH_TOKEN is set, off = nobody.
    #[arg(
        long,
        env = "MONITOR",
        value_name = "MONITOR",
        value_enum,
        default_value = "open"
    )]
    pub monitor: MonitorPolicy,
    /// Print the environment contract as JSON and exit.
    #[arg(long)]
    pub print_env_contract: bool,
}

fn parse_log_level(s: &str) -> Result<String, String> {
    let l = s.to_ascii_lowercase();
    match l.as_str() {
        "trace" | "debug" | "info" | "warn" | "warning" | "error" => {
            Ok(if l == "warning" { "warn".into() } else { l })
        }
        _ => Err("accepted: TRACE, DEBUG, INFO, WARN, ERROR (any case)".into()),
    }
}

fn parse_stretch(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && (1.0..=3.0).contains(&v) => Ok(v),
        _ => Err("accepted: a number from 1.0 (no compression) to 3.0".into()),
    }
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err("accepted: seconds, a number > 0 and <= 3600 (e.g. 30 or 0.5)".into()),
    }
}

fn parse_queued_bytes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if (1024..=(1usize << 32)).contains(&v) => Ok(v),
        _ => {
            Err("accepted: bytes from 1024 to 4294967296 (and at least MAX_FRAGMENT_BYTES)".into())
        }
    }
}

fn parse_max_bytes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(v) if (1024..=64 * 1024 * 1024).contains(&v) => Ok(v),
        _ => Err("accepted: bytes from 1024 to 67108864".into()),
    }
}

/// A configuration that parses but cannot work (missing URL/key, unknown model...).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable has an unacceptable value or a needed one is missing.
    #[error("{var}={value:?}: {reason}")]
    Invalid {
        /// Variable name.
        var: &'static str,
        /// Value found (`<unset>` when missing).
        value: String,
        /// What is accepted.
        reason: String,
    },
}

impl Config {
    /// Cross-field checks clap cannot express (provider needs, model resolution).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tts_max_rate_wpm < self.tts_rate_wpm {
            return Err(ConfigError::Invalid {
                var: "TTS_MAX_RATE_WPM",
                value: self.tts_max_rate_wpm.to_string(),
                reason: format!(
                    "must be >= TTS_RATE_WPM ({}); accepted: {}..=450",
                    self.tts_rate_wpm, self.tts_rate_wpm
                ),
            });
        }
        if self.max_queued_bytes_per_session < self.max_fragment_bytes {
            return Err(ConfigError::Invalid {
                var: "MAX_QUEUED_BYTES_PER_SESSION",
                value: self.max_queued_bytes_per_session.to_string(),
                reason: format!(
                    "must be >= MAX_FRAGMENT_BYTES ({}), or the largest accepted fragment could never be queued; accepted: {}..=4294967296",
                    self.max_fragment_bytes, self.max_fragment_bytes
                ),
            });
        }
        if self.mode == Mode::Echo {
            return Ok(());
        }
        match self.translation_provider {
            TranslationProvider::Libretranslate => {
                require_url("LIBRETRANSLATE_URL", self.libretranslate_url.as_deref())?;
            }
            TranslationProvider::Google => {
                if self.google_api_key.as_deref().unwrap_or("").is_empty() {
                    return Err(ConfigError::Invalid {
                        var: "GOOGLE_API_KEY",
                        value: "<unset>".into(),
                        reason: "TRANSLATION_PROVIDER=google needs a Cloud Translation v2 API key"
                            .into(),
                    });
                }
                require_url("GOOGLE_TRANSLATE_URL", Some(&self.google_translate_url))?;
            }
            TranslationProvider::Apertium => {}
        }
        if self.tts_provider.is_http() {
            require_url("TTS_URL", self.tts_url.as_deref())?;
        }
        self.resolve_asr_model()?;
        Ok(())
    }

    /// Resolves ASR_MODEL to a CTranslate2 model directory.
    pub fn resolve_asr_model(&self) -> Result<PathBuf, ConfigError> {
        let name = self.asr_model.as_str();
        let invalid = |reason: String| ConfigError::Invalid {
            var: "ASR_MODEL",
            value: name.to_string(),
            reason,
        };
        let looks_like_path = name.contains('/') || name.starts_with('.');
        let dir = if KNOWN_ASR_MODELS.contains(&name) {
            self.model_dir.join(name)
        } else if looks_like_path {
            PathBuf::from(name)
        } else {
            return Err(invalid(format!(
                "unknown model; accepted: {} (resolved in MODEL_DIR={}), or the path of a CTranslate2 Whisper directory (e.g. a converted whisper-small)",
                KNOWN_ASR_MODELS.join(", "),
                self.model_dir.display()
            )));
        };
        for f in ["model.bin", "config.json", "vocabulary.txt"] {
            if !dir.join(f).is_file() {
                let hint = if KNOWN_ASR_MODELS.contains(&name) {
                    " (run scripts/install-models.sh, or set MODEL_DIR)"
                } else {
                    ""
                };
                return Err(invalid(format!(
                    "{} has no {f}; a CTranslate2 Whisper directory needs model.bin, config.json and vocabulary.txt{hint}",
                    dir.display()
                )));
            }
        }
        Ok(dir)
    }

    /// Parses from the real process arguments and environment. On a bad value, prints ONE
    /// line (clap's message, which names the variable, the value and the accepted values,
    /// folded onto one line) and exits with status 2; `--help`/`--version` print and exit 0.
    pub fn from_env_and_args() -> Self {
        match Self::try_parse() {
            Ok(c) => c,
            Err(e) => {
                use clap::error::ErrorKind;
                if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                    e.exit();
                }
                eprintln!("{}", one_line(&e.to_string()));
                std::process::exit(2);
            }
        }
    }
}

/// Folds a multi-line clap error into one line (drops the "For more information" hint).
pub fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn require_url(var: &'static str, v: Option<&str>) -> Result<(), ConfigError> {
    match v {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => Ok(()),
        Some(u) => Err(ConfigError::Invalid {
            var,
            value: u.to_string(),
            reason: "accepted: an http:// or https:// URL".into(),
        }),
        None => Err(ConfigError::Invalid {
            var,
            value: "<unset>".into(),
            reason: "required by the selected provider; accepted: an http:// or https:// URL"
                .into(),
        }),
    }
}

/// One row of the environment contract.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Default value (null when none).
    pub default: Option<String>,
    /// One line of meaning.
    pub meaning: String,
}

/// The environment contract, generated from the clap command (so it can never disagree
/// with the parser).
pub fn env_contract() -> Vec<EnvVar> {
    let cmd = Config::command();
    cmd.get_arguments()
        .filter_map(|a| {
            let name = a.get_env()?.to_string_lossy().into_owned();
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let mut meaning = a.get_help().map(|h| h.to_string()).unwrap_or_default();
            let values: Vec<String> = a
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect();
            if !values.is_empty() {
                meaning = format!("{meaning} Accepted: {}.", values.join(", "));
            }
            Some(EnvVar {
                name,
                default: if defaults.is_empty() {
                    None
                } else {
                    Some(defaults.join(","))
                },
                meaning,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut v = vec!["sts-service"];
        v.extend_from_slice(args);
        Config::try_parse_from(v)
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.max_inflight, 3);
        assert_eq!(c.processing_timeout, 30.0);
        assert_eq!(c.time_stretch_max, 1.5);
        assert_eq!(c.device, Device::Cpu);
        assert_eq!(c.tts_model, DEFAULT_TTS_MODEL);
        assert_eq!(c.max_sessions, 64);
        assert_eq!(c.max_streams_per_session, 8);
        assert_eq!(c.max_queued_bytes_per_session, 64 * 1024 * 1024);
        assert_eq!(c.monitor, MonitorPolicy::Open);
    }

    #[test]
    fn admission_limits_reject_bad_values() {
        let e = one_line(&parse(&["--max-sessions", "0"]).unwrap_err().to_string());
        assert!(
            e.contains("MAX_SESSIONS") && e.contains("1..=100000"),
            "{e}"
        );
        let e = one_line(
            &parse(&["--max-streams-per-session", "0"])
                .unwrap_err()
                .to_string(),
        );
        assert!(e.contains("MAX_STREAMS_PER_SESSION"), "{e}");
        let e = parse(&["--max-queued-bytes-per-session", "lots"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MAX_QUEUED_BYTES_PER_SESSION") && e.contains("1024"),
            "{e}"
        );
        let e = parse(&["--monitor", "maybe"]).unwrap_err().to_string();
        assert!(
            e.contains("open") && e.contains("token") && e.contains("off"),
            "{e}"
        );
        // A queue bound below one fragment could never accept the largest fragment.
        let c = parse(&[
            "--mode",
            "echo",
            "--max-fragment-bytes",
            "200000",
            "--max-queued-bytes-per-session",
            "100000",
        ])
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("MAX_QUEUED_BYTES_PER_SESSION=\"100000\"") && e.contains("200000"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_what_is_accepted() {
        let e = one_line(&parse(&["--max-inflight", "0"]).unwrap_err().to_string());
        assert!(e.contains("MAX_INFLIGHT") && e.contains("1..=64"), "{e}");
        assert!(!e.contains('\n'));
        let e = one_line(&parse(&["--port", "99999"]).unwrap_err().to_string());
        assert!(e.contains("STS_PORT") && e.contains("99999"), "{e}");
        let e = parse(&["--time-stretch-max", "0.5"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1.0"), "{e}");
        let e = parse(&["--translation-provider", "deepl"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("apertium") && e.contains("google"), "{e}");
        let e = parse(&["--device", "cuda"]).unwrap_err().to_string();
        assert!(e.contains("cpu"), "{e}");
        let e = parse(&["--log-level", "loud"]).unwrap_err().to_string();
        assert!(e.contains("DEBUG"), "{e}");
        let e = parse(&["--processing-timeout=-1"]).unwrap_err().to_string();
        assert!(e.contains("seconds"), "{e}");
    }

    #[test]
    fn providers_without_url_or_key_fail_validation() {
        let c = parse(&["--translation-provider", "google"]).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("GOOGLE_API_KEY="), "{e}");
        let c = parse(&["--translation-provider", "libretranslate"]).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("LIBRETRANSLATE_URL="));
        let c = parse(&["--tts-provider", "kokoro"]).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("TTS_URL="));
        let c = parse(&["--tts-provider", "openai", "--tts-url", "ftp://x"]).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("http://"));
        // Echo mode needs no providers.
        let c = parse(&["--translation-provider", "google", "--mode", "echo"]).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn unknown_asr_model_names_accepted_values_and_model_dir() {
        let c = parse(&["--asr-model", "whisper-huge", "--model-dir", "/nonexistent"]).unwrap();
        let e = c.resolve_asr_model().unwrap_err().to_string();
        assert!(e.starts_with("ASR_MODEL=\"whisper-huge\""), "{e}");
        assert!(
            e.contains("whisper-tiny.en") && e.contains("/nonexistent"),
            "{e}"
        );
        let c = parse(&["--asr-model", "whisper-base", "--model-dir", "/nonexistent"]).unwrap();
        let e = c.resolve_asr_model().unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/whisper-base has no model.bin"),
            "{e}"
        );
    }

    #[test]
    fn env_contract_lists_every_env_var_with_defaults() {
        let rows = env_contract();
        let get = |n: &str| rows.iter().find(|r| r.name == n).cloned();
        for n in [
            "STS_PORT",
            "HOST",
            "LOG_LEVEL",
            "ASR_MODEL",
            "TRANSLATION_PROVIDER",
            "TTS_PROVIDER",
            "TTS_MODEL",
            "DEVICE",
            "MAX_INFLIGHT",
            "PROCESSING_TIMEOUT",
            "STS_AUTH_TOKEN",
            "MAX_SESSIONS",
            "MAX_STREAMS_PER_SESSION",
            "MAX_QUEUED_BYTES_PER_SESSION",
            "MONITOR",
        ] {
            assert!(get(n).is_some(), "{n} missing from the contract");
        }
        assert_eq!(get("MAX_SESSIONS").unwrap().default.as_deref(), Some("64"));
        assert_eq!(get("MONITOR").unwrap().default.as_deref(), Some("open"));
        assert_eq!(get("STS_PORT").unwrap().default.as_deref(), Some("3000"));
        assert_eq!(get("MAX_INFLIGHT").unwrap().default.as_deref(), Some("3"));
        assert_eq!(get("STS_AUTH_TOKEN").unwrap().default, None);
        assert!(get("TTS_PROVIDER").unwrap().meaning.contains("kokoro"));
    }
}
