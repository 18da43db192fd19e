//! `make bench-live`: how many live streams one box dubs. N streams of read English speech
//! are published at once to the local media server (all starting together, so their
//! fragment boundaries line up: the worst case; or staggered over one fragment), through
//! the real STS and the media-service with their defaults (native backend); for each N it
//! measures fragments dubbed / total, the STS's time per fragment (p50 / p95 / max, from
//! `fragment:processed`), the glass-to-glass delay of every output ([`crate::delay`],
//! counted from when the media server listed the input, i.e. without the publisher's own
//! start-up) and the CPU and largest RSS of both services.
//!
//! A benchmark, not a test: it prints figures and judges nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

use crate::delay;
use crate::media::{LiveRecorder, Publisher};
use crate::monitor::Monitor;
use crate::process::ProcStats;
use crate::stack::{Pair, Side};

/// The read passage (Aesop, "The North Wind and the Sun", the phonetics classic; public
/// domain), spoken by espeak-ng's English voice: continuous speech with the pauses of
/// reading, about 35 s, of which the first 30 s are published by default; then this
/// project's own text (news-like read speech, written for it), for rounds longer than the
/// fable (BENCH_SECONDS), about 3 minutes in all.
const PASSAGE: &str = "The North Wind and the Sun were disputing which was the stronger, \
    when a traveler came along wrapped in a warm cloak. They agreed that the one who first \
    succeeded in making the traveler take his cloak off should be considered stronger than \
    the other. Then the North Wind blew as hard as he could, but the more he blew the more \
    closely did the traveler fold his cloak around him; and at last the North Wind gave up \
    the attempt. Then the Sun shined out warmly, and immediately the traveler took off his \
    cloak. And so the North Wind was obliged to confess that the Sun was the stronger of \
    the two. \
    Good evening, and welcome to the late news. Heavy rain swept across the northern valleys \
    this afternoon, and several roads near the river were closed for a few hours. Farmers \
    said the water came faster than anyone expected, but most of the fields were spared. \
    In the city, the new bridge opened to traffic this morning after two years of work. \
    The mayor thanked the builders and asked drivers to be patient while the last lanes \
    are painted. Buses will use the bridge from next week, and the old ferry will keep \
    running on weekends for visitors who enjoy the slower crossing. \
    At the harbor, a small fishing boat returned safely after its engine failed far from \
    the coast. The crew of four spent the night on deck and were found by a passing cargo \
    ship at dawn. Their families waited on the pier, and there were tears and laughter \
    when the boat was finally tied up. \
    In sports, the home team won a close match on Saturday. The game was level until the \
    final minutes, when a young player scored from the edge of the box. The coach said he \
    was proud of the team and that the season is far from over. Tickets for the next home \
    game are already sold out. \
    The weather tomorrow will be cooler, with clouds in the morning and bright spells in \
    the afternoon. The wind will ease during the evening, and the night should be calm and \
    dry. At the weekend, temperatures will rise again, and the rain is expected to stay \
    away until the middle of next week. \
    Finally, the public library is looking for volunteers to read stories to children on \
    Sunday mornings. No experience is needed, only a friendly voice and a little patience. \
    Anyone who would like to help can leave their name at the front desk. That is all for \
    tonight. Thank you for watching, and have a good night.";
/// Seconds published per stream by default (BENCH_SECONDS sets another length).
pub const DEFAULT_SOURCE_S: u32 = 30;
/// Longest accepted BENCH_SECONDS: the whole text is read by then.
pub const MAX_SOURCE_S: u32 = 240;

/// Seconds published per stream: BENCH_SECONDS, or [`DEFAULT_SOURCE_S`].
pub fn source_seconds() -> anyhow::Result<u32> {
    match std::env::var("BENCH_SECONDS") {
        Err(_) => Ok(DEFAULT_SOURCE_S),
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|s| (10..=MAX_SOURCE_S).contains(s))
            .with_context(|| {
                format!("BENCH_SECONDS={v:?}: accepted: whole seconds from 10 to {MAX_SOURCE_S}")
            }),
    }
}
/// The media-service's default fragment length (ms), for the staggered starts when
/// FRAGMENT_DURATION_MS is not set.
const DEFAULT_FRAGMENT_MS: f64 = 4000.0;

/// The fragment length the media-service runs with (s): FRAGMENT_DURATION_MS, which the
/// native pair inherits, or its default.
fn fragment_s() -> f64 {
    std::env::var("FRAGMENT_DURATION_MS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(DEFAULT_FRAGMENT_MS)
        / 1000.0
}

pub use livedub_wer::prefix_word_errors;

/// One round of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Streams published.
    pub streams: usize,
    /// Starts spread evenly over one fragment instead of all at once.
    pub staggered: bool,
}

impl Round {
    fn label(&self) -> String {
        format!("{}{}", self.streams, if self.staggered { "s" } else { "a" })
    }
}

/// What one stream of a round got.
#[derive(Debug, Clone)]
pub struct StreamFigures {
    /// Stream name.
    pub name: String,
    /// Fragments by the status the media-service placed them with.
    pub statuses: BTreeMap<String, usize>,
    /// The STS's `processing_time_ms` per answered fragment.
    pub sts_ms: Vec<f64>,
    /// Glass-to-glass delay of its output and the published seconds its output lacks at
    /// the start, or why they could not be measured.
    pub delay: Result<delay::Measured, String>,
    /// Its publisher's spawn to the media server listing the input (s), from which the
    /// delay counts; `None` when it was never listed (the delay then counts from the spawn).
    pub start_up_s: Option<f64>,
    /// What the STS heard, every fragment's transcript in order (`fragments.jsonl`).
    pub heard: String,
    /// Lengths of its fragments (ms), in order.
    pub fragment_ms: Vec<f64>,
}

impl StreamFigures {
    /// ASR word errors against the passage: (errors, reference words).
    pub fn word_errors(&self) -> (usize, usize) {
        prefix_word_errors(PASSAGE, &self.heard)
    }
}

impl StreamFigures {
    fn total(&self) -> usize {
        self.statuses.values().sum()
    }

    /// Fragments with speech (everything but `no_speech`), and how many of them were dubbed.
    fn speech_dubbed(&self) -> (usize, usize) {
        let speech = self.total() - self.statuses.get("no_speech").copied().unwrap_or(0);
        (speech, self.statuses.get("processed").copied().unwrap_or(0))
    }
}

/// CPU and memory of one service over a round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU seconds used during the round.
    pub cpu_s: f64,
    /// Largest RSS sampled (MiB).
    pub rss_max_mib: f64,
}

/// Everything one round measured.
#[derive(Debug, Clone)]
pub struct RoundFigures {
    /// The round.
    pub round: Round,
    /// Per stream.
    pub streams: Vec<StreamFigures>,
    /// The STS.
    pub sts: Usage,
    /// The media-service.
    pub media: Usage,
    /// Wall time of the round (s).
    pub wall_s: f64,
}

/// Percentile `p` (0..=100) of `v` (nearest rank; NaN when empty).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

impl RoundFigures {
    /// The header of [`RoundFigures::row`].
    pub fn header() -> String {
        "| streams | start | speech fragments dubbed | STS ms p50 / p95 / p99 / max | glass-to-glass s (min..max) | start lost s (min..max) | fragment s (min..max) | ASR word error | STS CPU % / RSS MiB | media-service CPU % / RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|".into()
    }

    /// One Markdown table row.
    pub fn row(&self) -> String {
        let (speech, dubbed) = self
            .streams
            .iter()
            .map(StreamFigures::speech_dubbed)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let sts: Vec<f64> = self.streams.iter().flat_map(|s| s.sts_ms.clone()).collect();
        let measured: Vec<delay::Measured> = self
            .streams
            .iter()
            .filter_map(|s| s.delay.as_ref().ok().copied())
            .collect();
        let delays: Vec<f64> = measured.iter().map(|m| m.delay_s).collect();
        let lost: Vec<f64> = measured.iter().map(|m| m.lost_start_s).collect();
        let range = |v: &[f64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                format!("{lo:.2}..{hi:.2}")
            }
        };
        let pct = |u: &Usage| 100.0 * u.cpu_s / self.wall_s.max(1e-9);
        // Every fragment but each stream's last (cut short by the end of the input).
        let lens: Vec<f64> = self
            .streams
            .iter()
            .flat_map(|s| {
                let n = s.fragment_ms.len().saturating_sub(1);
                s.fragment_ms[..n].iter().map(|ms| ms / 1000.0)
            })
            .collect();
        let (errors, ref_words) = self
            .streams
            .iter()
            .map(StreamFigures::word_errors)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        format!(
            "| {} | {} | {dubbed} / {speech} | {:.0} / {:.0} / {:.0} / {:.0} | {} | {} | {} | {:.1} % of {ref_words} | {:.0} % / {:.0} | {:.0} % / {:.0} |",
            self.round.streams,
            if self.round.staggered { "staggered" } else { "together" },
            percentile(&sts, 50.0),
            percentile(&sts, 95.0),
            percentile(&sts, 99.0),
            percentile(&sts, 100.0),
            range(&delays),
            range(&lost),
            range(&lens),
            100.0 * errors as f64 / ref_words.max(1) as f64,
            pct(&self.sts),
            self.sts.rss_max_mib,
            pct(&self.media),
            self.media.rss_max_mib,
        )
    }

    /// Per stream: statuses, and the delay or why it is missing.
    pub fn details(&self) -> String {
        let mut out = String::new();
        for s in &self.streams {
            let (errors, ref_words) = s.word_errors();
            let _ = writeln!(
                out,
                "  {}: {:?}; {errors} word errors in {ref_words} (heard: {:?}); delay {}; publisher start-up {}",
                s.name,
                s.statuses,
                s.heard,
                match &s.delay {
                    Ok(d) => format!("{:.3} s, start lost {:.2} s", d.delay_s, d.lost_start_s),
                    Err(e) => format!("not measured ({e})"),
                },
                s.start_up_s
                    .map_or("not seen (delay from the spawn)".to_string(), |t| format!("{:.0} ms", t * 1000.0))
            );
        }
        out
    }
}

/// The benchmark's source: the counting fixture's video with [`PASSAGE`] read by
/// espeak-ng (English, 165 words per minute) as its audio, 30 s. Made once into `dir`.
pub fn speech_source(dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = dir.join(format!("bench-read-speech-v2-{seconds}s.mp4"));
    if out.is_file() {
        return Ok(out);
    }
    let wav = crate::temp_beside(&out, "wav");
    speak_english(PASSAGE, 165, &wav)?;
    let partial = crate::temp_beside(&out, "mp4");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-stream_loop", "-1", "-i"])
        .arg(crate::fixture_path())
        .arg("-i")
        .arg(&wav)
        .args(["-map", "0:v", "-map", "1:a", "-t", &seconds.to_string()])
        .args([
            "-af",
            "apad,aformat=sample_rates=48000:channel_layouts=stereo",
        ])
        .args(["-c:v", "copy", "-c:a", "aac", "-b:a", "128k"])
        .arg(&partial)
        .output()
        .context("running ffmpeg")?;
    let _ = std::fs::remove_file(&wav);
    if !o.status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "ffmpeg could not make the benchmark source: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    std::fs::rename(&partial, &out)?;
    Ok(out)
}

/// Writes `text` spoken by espeak-ng's US English voice at `wpm` words per minute to the
/// WAV file `out`.
pub fn speak_english(text: &str, wpm: u32, out: &Path) -> anyhow::Result<()> {
    let o = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", &wpm.to_string(), "-w"])
        .arg(out)
        .arg(text)
        .output()
        .context("running espeak-ng (make setup installs it)")?;
    ensure!(
        o.status.success(),
        "espeak-ng failed: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    Ok(())
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

/// Samples the largest RSS of `pid` every 200 ms until `stop`.
fn sample_rss(pid: Option<u32>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut max = 0u64;
        while !stop.load(Ordering::SeqCst) {
            if let Some(s) = pid.and_then(ProcStats::of) {
                max = max.max(s.rss_kib);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        max as f64 / 1024.0
    })
}

/// Runs one round on `pair` (native, its own for the round): publishes `source` as
/// `round.streams` streams and collects what came out. Recordings and logs go to `log_dir`.
pub async fn run_round(
    pair: &Pair,
    round: Round,
    source: &Path,
    seconds: u32,
    log_dir: &Path,
) -> anyhow::Result<RoundFigures> {
    let pids = (pair.service_pid(Side::Sts), pair.service_pid(Side::Media));
    let cpu_start = (pids.0.and_then(cpu_seconds), pids.1.and_then(cpu_seconds));
    let stop = Arc::new(AtomicBool::new(false));
    let samplers = (
        sample_rss(pids.0, stop.clone()),
        sample_rss(pids.1, stop.clone()),
    );
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..round.streams {
        let name = format!("bench-{}-{i}", round.label());
        let offset = if round.staggered {
            fragment_s() * i as f64 / round.streams as f64
        } else {
            0.0
        };
        let (server, url, segments) = (pair.media_server(), pair.sts_url(), pair.segment_dir());
        let (source, log_dir) = (source.to_path_buf(), log_dir.to_path_buf());
        tasks.push(tokio::spawn(async move {
            let mut monitor = Monitor::connect(&url, None).await?;
            monitor.subscribe(&name).await?;
            let recorder = LiveRecorder::start(
                &server,
                &name,
                &log_dir.join(format!("{name}-output")),
                &log_dir.join(format!("{name}-recorder.log")),
                epoch,
            );
            tokio::time::sleep(Duration::from_secs_f64(offset)).await;
            let publish_log = log_dir.join(format!("{name}-publisher.log"));
            let mut publisher = Publisher::start(&server, &name, &source, &publish_log)?;
            let published_at_s = publisher
                .started()
                .saturating_duration_since(epoch)
                .as_secs_f64();
            // The input's wall-clock time in is when the media server has it: ffmpeg's
            // `-re` clock starts after its spawn (exec, probing: ~0.2 s on 2 cores) and
            // before the media server lists the input, so the delay counts from the listing.
            let listed = tokio::task::spawn_blocking({
                let (server, name) = (server.clone(), name.clone());
                move || server.wait_input_listed(&name, Duration::from_secs(15))
            });
            let ok = tokio::task::spawn_blocking(move || {
                publisher.wait(Duration::from_secs(u64::from(seconds) + 30))
            })
            .await??;
            ensure!(
                ok,
                "publishing {name} failed; see {}",
                publish_log.display()
            );
            let segs = tokio::task::spawn_blocking(move || {
                recorder.finish_when_ended(epoch, Duration::from_secs(20))
            })
            .await?;
            // The output has ended, so every answer the STS gave has come.
            let processed = monitor
                .collect_processed(&name, 1, Duration::from_secs(5))
                .await;
            monitor.close().await;
            let log = segments.join(&name).join("fragments.jsonl");
            let mut statuses = BTreeMap::new();
            let mut fragments: Vec<(u64, String, f64)> = Vec::new();
            for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    let st = v["status"].as_str().unwrap_or("?").to_string();
                    *statuses.entry(st).or_insert(0) += 1;
                    fragments.push((
                        v["sequence"].as_u64().unwrap_or(u64::MAX),
                        v["transcript"].as_str().unwrap_or("").to_string(),
                        v["duration_ms"].as_f64().unwrap_or(f64::NAN),
                    ));
                }
            }
            fragments.sort_by_key(|f| f.0);
            let start_up_s = listed
                .await?
                .map(|t| t.saturating_duration_since(epoch).as_secs_f64() - published_at_s);
            let in_at_s = published_at_s + start_up_s.unwrap_or(0.0);
            let delay = match segs.as_slice() {
                [one] => delay::measure(one, &source, in_at_s).map_err(|e| e.to_string()),
                [] => Err("no output recorded".to_string()),
                more => Err(format!("output interrupted ({} connections)", more.len())),
            };
            anyhow::Ok(StreamFigures {
                name,
                statuses,
                sts_ms: processed
                    .iter()
                    .filter_map(|p| p["processing_time_ms"].as_f64())
                    .collect(),
                delay,
                start_up_s,
                heard: fragments
                    .iter()
                    .map(|f| f.1.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                fragment_ms: fragments.iter().map(|f| f.2).collect(),
            })
        }));
    }
    let mut streams = Vec::new();
    for t in tasks {
        streams.push(t.await??);
    }
    let wall_s = epoch.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let rss = (
        samplers.0.join().unwrap_or(0.0),
        samplers.1.join().unwrap_or(0.0),
    );
    let used = |start: Option<f64>, pid: Option<u32>| {
        start
            .zip(pid.and_then(cpu_seconds))
            .map_or(0.0, |(a, b)| b - a)
    };
    Ok(RoundFigures {
        round,
        streams,
        sts: Usage {
            cpu_s: used(cpu_start.0, pids.0),
            rss_max_mib: rss.0,
        },
        media: Usage {
            cpu_s: used(cpu_start.1, pids.1),
            rss_max_mib: rss.1,
        },
        wall_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 95.0), 5.0);
        assert_eq!(percentile(&v, 100.0), 5.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn cpu_time_of_this_process_is_read() {
        let t = cpu_seconds(std::process::id()).unwrap();
        assert!(t >= 0.0);
    }

    #[test]
    fn a_row_counts_speech_fragments_and_spans_delays() {
        let s = |name: &str, dubbed: usize, fallback: usize, d: f64| StreamFigures {
            name: name.into(),
            statuses: [
                ("processed".to_string(), dubbed),
                ("fallback".to_string(), fallback),
                ("no_speech".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            sts_ms: vec![700.0, 1300.0],
            delay: Ok(delay::Measured {
                delay_s: d,
                lost_start_s: 1.5,
            }),
            heard: "The north wind and the son were".into(),
            fragment_ms: vec![4000.0, 2500.0, 1200.0],
            start_up_s: Some(0.2),
        };
        let r = RoundFigures {
            round: Round {
                streams: 2,
                staggered: false,
            },
            streams: vec![s("a", 5, 0, 9.1), s("b", 4, 1, 9.2)],
            sts: Usage {
                cpu_s: 30.0,
                rss_max_mib: 500.0,
            },
            media: Usage {
                cpu_s: 15.0,
                rss_max_mib: 100.0,
            },
            wall_s: 60.0,
        };
        let row = r.row();
        assert!(row.contains("| 9 / 10 |"), "{row}");
        assert!(row.contains("700 / 1300 / 1300 / 1300"), "{row}");
        assert!(
            row.contains("| 9.10..9.20 | 1.50..1.50 | 2.50..4.00 |"),
            "{row}"
        );
        assert!(row.contains("| 14.3 % of 14 |"), "{row}");
        assert!(row.contains("50 % / 500"), "{row}");
    }
}
