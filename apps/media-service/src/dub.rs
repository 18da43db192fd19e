//! `media-service dub`: one input to one output with the same worker, progress on the
//! terminal and a JSON report of transcripts and translations.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{DubArgs, Settings};
use crate::fragmenter::Boundaries;
use crate::manager::{stream_init, sts_client_config, valid_name, worker_config};
use crate::metrics::Metrics;
use crate::mix::MixMode;
use crate::pipeline::{input_uri, OutputTarget};
use crate::spoken;
use crate::sts::StsDubber;
use crate::worker::{self, Dubber, FragmentHook, FragmentRecord, Outcome, StatusCell, WorkerEnd};

/// The report written beside the output.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Input as given.
    pub input: String,
    /// Output.
    pub output: String,
    /// Language pair.
    pub source_language: String,
    /// Language pair.
    pub target_language: String,
    /// Fragment length (ms).
    pub fragment_duration_ms: u32,
    /// Output delay used (ms).
    pub output_delay_ms: u32,
    /// Wall time (s).
    pub wall_seconds: f64,
    /// Counts.
    pub processed: u64,
    /// Counts.
    pub fallback: u64,
    /// Counts.
    pub failed: u64,
    /// Counts: fragments without speech (original audio).
    pub no_speech: u64,
    /// MIX_MODE used for dubbed fragments.
    pub mix_mode: MixMode,
    /// DUCK_DB used in voice-over mode.
    pub duck_db: f32,
    /// Every fragment in order.
    pub fragments: Vec<FragmentRecord>,
}

fn default_name(output: &str) -> String {
    let stem = std::path::Path::new(output)
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let n = format!("dub-{cleaned}-{}", std::process::id());
    if valid_name(&n) {
        n
    } else {
        format!("dub-{}", std::process::id())
    }
}

/// Runs the dub subcommand; returns the process exit code.
pub async fn run(
    settings: Settings,
    args: DubArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<i32> {
    let uri = input_uri(&args.input).map_err(anyhow::Error::msg)?;
    let output = OutputTarget::parse(&args.output).map_err(anyhow::Error::msg)?;
    if let OutputTarget::File { path, .. } = &output {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the output directory {}", dir.display()))?;
        }
    }
    let report_path: Option<PathBuf> = match (&args.report, &output) {
        (Some(r), _) => Some(r.clone()),
        (None, OutputTarget::File { path, .. }) => {
            Some(PathBuf::from(format!("{}.report.json", path.display())))
        }
        (None, OutputTarget::Rtmp { .. }) => None,
    };
    let name = match &args.name {
        Some(n) if valid_name(n) => n.clone(),
        Some(n) => bail!("invalid --name '{n}': use 1-64 characters from A-Z a-z 0-9 - _ ."),
        None => default_name(&args.output),
    };
    let cfg = worker_config(&settings, &name, uri.clone(), output.clone());
    let metrics = Arc::new(Metrics::new());
    let (dubber, events) = StsDubber::start(
        sts_client_config(&settings, &cfg.sts_url),
        stream_init(&settings, &name),
    );

    eprintln!(
        "dubbing {} -> {} ({} -> {}, fragments of {} ms{}, output delay {} ms, mix {}, real time)",
        args.input,
        output.describe(),
        settings.source_language,
        settings.target_language,
        settings.fragment_ms(),
        match cfg.boundaries {
            Boundaries::Grid => "",
            Boundaries::Speech { .. } => " at most, cut in pauses",
        },
        cfg.delay_ms,
        match cfg.mix.mode {
            MixMode::VoiceOver => format!(
                "voice-over (original ducked {} dB under the dub)",
                cfg.mix.duck_db
            ),
            MixMode::Replace => "replace (dubbed audio only)".into(),
        }
    );
    if args.sts_wait_ms > 0 {
        let t0 = Instant::now();
        while !dubber.is_ready() && t0.elapsed() < Duration::from_millis(args.sts_wait_ms as u64) {
            if shutdown.is_cancelled() {
                return Ok(130);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if dubber.is_ready() {
            eprintln!("connected to the STS at {}", cfg.sts_url);
        } else {
            eprintln!(
                "WARNING: no STS session at {} after {} ms; going on with the original audio where it is still missing (retrying in the background)",
                cfg.sts_url, args.sts_wait_ms
            );
        }
    }

    let records: Arc<Mutex<Vec<FragmentRecord>>> = Arc::default();
    let rec2 = records.clone();
    let target_language = settings.target_language.clone();
    let hook: FragmentHook = Arc::new(move |r: &FragmentRecord| {
        let mut r = r.clone();
        let shown = match r.status {
            Outcome::Processed => {
                let translation = r.translation.trim().to_string();
                // The TTS reads digits in the target language: show what a listener hears.
                let heard = spoken::spoken_form(&translation, &target_language);
                if heard != translation {
                    r.spoken = Some(heard.clone());
                }
                format!("dubbed   \"{}\" -> \"{heard}\"", r.transcript.trim())
            }
            _ => format!(
                "{:<8} ({})",
                r.status.as_str(),
                r.reason.clone().unwrap_or_default()
            ),
        };
        eprintln!(
            "[{:>6.1}s +{:>4.1}s] fragment {:>3}: {shown}",
            r.pts_ms as f64 / 1000.0,
            r.duration_ms as f64 / 1000.0,
            r.sequence
        );
        rec2.lock().unwrap_or_else(|p| p.into_inner()).push(r);
    });
    let status: StatusCell = Arc::default();
    let t0 = Instant::now();
    let result = worker::run_worker(
        cfg.clone(),
        dubber.clone(),
        events,
        metrics,
        status.clone(),
        shutdown.clone(),
        Some(hook),
    )
    .await;
    dubber.shutdown().await;
    let fragments = std::mem::take(&mut *records.lock().unwrap_or_else(|p| p.into_inner()));
    let count = |o: Outcome| fragments.iter().filter(|r| r.status == o).count() as u64;
    let report = Report {
        input: args.input.clone(),
        output: output.describe(),
        source_language: settings.source_language.clone(),
        target_language: settings.target_language.clone(),
        fragment_duration_ms: settings.fragment_ms(),
        output_delay_ms: cfg.delay_ms,
        wall_seconds: t0.elapsed().as_secs_f64(),
        processed: count(Outcome::Processed),
        fallback: count(Outcome::Fallback),
        failed: count(Outcome::Failed),
        no_speech: count(Outcome::NoSpeech),
        mix_mode: cfg.mix.mode,
        duck_db: cfg.mix.duck_db,
        fragments,
    };
    if let Some(p) = &report_path {
        let body = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(p, body).with_context(|| format!("writing the report {}", p.display()))?;
    }
    match result {
        Ok(WorkerEnd::Finished) => {
            eprintln!(
                "done in {:.1} s: {} dubbed, {} no speech (original), {} original (late/unavailable), {} failed -> {}{}",
                report.wall_seconds,
                report.processed,
                report.no_speech,
                report.fallback,
                report.failed,
                output.describe(),
                report_path
                    .map(|p| format!(" (report {})", p.display()))
                    .unwrap_or_default()
            );
            Ok(0)
        }
        Ok(WorkerEnd::Cancelled) => {
            eprintln!("interrupted; the output may be incomplete");
            Ok(130)
        }
        Err(e) => Err(anyhow::Error::new(e).context("dubbing failed")),
    }
}
