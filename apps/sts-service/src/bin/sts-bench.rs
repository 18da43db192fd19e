//! sts-bench: latency benchmark of the real pipeline (ASR -> MT -> TTS -> fit) over N
//! fragments of generated English speech, for whisper-tiny.en and whisper-base, with the
//! same audio through faster-whisper (PyPI) as the baseline, side by side.
//!
//! Usage: `sts-bench [--fragments 24] [--models whisper-tiny.en,whisper-base]
//!         [--python /var/cache/livedub/venv-bench/bin/python] [--no-baseline]`

use anyhow::{bail, Context};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Instant;
use sts_protocol::AudioFormat;
use sts_service::config::Config;
use sts_service::metrics::Metrics;
use sts_service::pipeline::{Engines, Job, Pipeline};

/// Benchmark options.
#[derive(Parser, Debug)]
#[command(
    name = "sts-bench",
    about = "STS latency benchmark with a faster-whisper baseline"
)]
struct Args {
    /// Number of 6 s fragments (>= 20).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(20..=500))]
    fragments: u32,
    /// Comma-separated ASR models (names resolve in MODEL_DIR).
    #[arg(long, default_value = "whisper-tiny.en,whisper-base")]
    models: String,
    /// Model cache.
    #[arg(long, env = "MODEL_DIR", default_value = sts_service::config::DEFAULT_MODEL_DIR)]
    model_dir: PathBuf,
    /// Python with faster-whisper.
    #[arg(
        long,
        env = "LIVEDUB_BENCH_PYTHON",
        default_value = "/var/cache/livedub/venv-bench/bin/python"
    )]
    python: String,
    /// Skip the faster-whisper baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Print every fragment's stage times and texts.
    #[arg(long)]
    verbose: bool,
    /// ASR threads (same for both engines).
    #[arg(long, default_value_t = 2)]
    threads: u16,
    /// Also send bursts of this many fragments at once (as N streams whose fragment
    /// boundaries line up), and report each fragment's time and the burst's; 0 = none.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=64))]
    burst: u32,
    /// ASR beam size.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=16))]
    beam: u16,
}

const SENTENCES: &[&str] = &[
    "The weather is nice today.",
    "I would like a cup of coffee.",
    "Where is the train station?",
    "My brother lives in a small town.",
    "We are going to the beach tomorrow.",
    "The children play in the park.",
    "Please close the door when you leave.",
    "She reads a book every week.",
    "The market opens at nine in the morning.",
    "He bought a new car last year.",
    "Can you help me with my homework?",
    "The restaurant on the corner is very good.",
    "I have two cats and one dog.",
    "The meeting starts in ten minutes.",
    "They live in a big house near the river.",
    "It is raining in the city.",
    "My mother cooks dinner every night.",
    "The museum is closed on Monday.",
    "We need more time to finish the work.",
    "The music is too loud.",
    "I lost my keys this morning.",
    "The students are in the classroom.",
    "Our team won the game yesterday.",
    "The shop sells fresh bread and fruit.",
    "Turn left at the next street.",
    "The water in the lake is cold.",
    "He speaks three languages.",
    "The flowers in the garden are beautiful.",
    "I will call you after work.",
    "The plane arrives at noon.",
];

fn speak(text: &str, dir: &Path, i: usize) -> anyhow::Result<Vec<f32>> {
    let p = dir.join(format!("src{i}.wav"));
    let st = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "165", "-w"])
        .arg(&p)
        .arg(text)
        .status()
        .context("running espeak-ng (Debian package espeak-ng)")?;
    if !st.success() {
        bail!("espeak-ng failed for {text:?}");
    }
    let w = livedub_audio::read_wav(&p)?;
    let mut s = livedub_audio::resample(&w.samples, w.sample_rate, 16000)?;
    // Start 0.3 s in, pad/cut to 6 s: one fragment of the stream.
    let mut out = vec![0f32; 4800];
    out.append(&mut s);
    out.resize(96000, 0.0);
    Ok(out)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[idx.min(s.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let n = args.fragments as usize;
    println!("sts-bench: {n} fragments of 6 s espeak-ng English speech, 16 kHz mono; ASR beam {}, int8, {} threads, 10 s window", args.beam, args.threads);
    let mut frags = Vec::with_capacity(n);
    let mut wavs = Vec::with_capacity(n);
    for i in 0..n {
        let s = speak(SENTENCES[i % SENTENCES.len()], dir.path(), i)?;
        let p = dir.path().join(format!("frag{i}.wav"));
        livedub_audio::write_wav(&p, &s, 16000, 1)?;
        wavs.push(p.display().to_string());
        frags.push(livedub_audio::f32_to_i16(&s));
    }
    let fmt = AudioFormat::pcm_s16le(16000, 1);
    let mut summary = Vec::new();
    for model in args
        .models
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
    {
        let cfg = Config::try_parse_from([
            "sts-service",
            "--asr-model",
            model,
            "--model-dir",
            &args.model_dir.display().to_string(),
            "--asr-threads",
            &args.threads.to_string(),
            "--asr-beam-size",
            &args.beam.to_string(),
        ])?;
        let c2 = cfg.clone();
        let t = Instant::now();
        let engines = tokio::task::spawn_blocking(move || Engines::load(&c2)).await??;
        let load_s = t.elapsed().as_secs_f64();
        let pipeline = Pipeline::with_engines(&cfg, engines, Metrics::new());
        // Warm-up fragment (first inference allocates), not timed.
        let job = |i: usize| Job {
            fragment_id: format!("b{i}"),
            stream_id: "bench".into(),
            sequence_number: i as u64,
            duration_ms: 6000,
            samples: frags[i].clone(),
            format: fmt.clone(),
            source_language: "en".into(),
            target_language: "es".into(),
            voice: None,
            deadline: None,
        };
        pipeline.process(job(0)).await;
        let (mut asr, mut mt, mut tts, mut fit, mut total) =
            (vec![], vec![], vec![], vec![], vec![]);
        let mut statuses = std::collections::BTreeMap::<&str, u32>::new();
        let (mut errors, mut words) = (0usize, 0usize);
        for i in 0..n {
            let ev = pipeline.process(job(i)).await;
            let reference = SENTENCES[i % SENTENCES.len()];
            errors += livedub_wer::word_errors(reference, &ev.transcript);
            words += livedub_wer::words(reference).len();
            *statuses.entry(ev.status.as_str()).or_default() += 1;
            asr.push(ev.stage_ms.asr as f64 / 1000.0);
            mt.push(ev.stage_ms.translation as f64 / 1000.0);
            tts.push(ev.stage_ms.tts as f64 / 1000.0);
            fit.push(ev.stage_ms.fit as f64 / 1000.0);
            total.push(ev.processing_time_ms as f64 / 1000.0);
            if args.verbose {
                println!(
                    "  [{model}] #{i}: asr {} ms, total {} ms: {:?} -> {:?}",
                    ev.stage_ms.asr, ev.processing_time_ms, ev.transcript, ev.translated_text
                );
            } else if i < 3 {
                println!(
                    "  [{model}] #{i}: {:?} -> {:?}",
                    ev.transcript, ev.translated_text
                );
            }
        }
        let wer = errors as f64 / words.max(1) as f64;
        println!(
            "\n== {model} (load {load_s:.2} s), statuses {statuses:?}, word error rate {:.1} % ({errors} of {words} words)",
            wer * 100.0
        );
        println!("{:<12} {:>9} {:>9}", "stage", "p50 (s)", "p95 (s)");
        for (name, v) in [
            ("asr", &asr),
            ("translation", &mt),
            ("tts", &tts),
            ("fit", &fit),
            ("total", &total),
        ] {
            println!("{:<12} {:>9.3} {:>9.3}", name, pct(v, 50.0), pct(v, 95.0));
        }
        let rtf50 = pct(&total, 50.0) / 6.0;
        let rtf95 = pct(&total, 95.0) / 6.0;
        println!("real-time factor (total / 6 s): p50 {rtf50:.3}, p95 {rtf95:.3}");
        let mut line = format!(
            "{model}: ct2rs ASR p50 {:.3} s p95 {:.3} s, total p50 {:.3} s, RTF p50 {rtf50:.3}, WER {:.1} %",
            pct(&asr, 50.0),
            pct(&asr, 95.0),
            pct(&total, 50.0),
            wer * 100.0
        );
        if args.burst > 0 {
            let (per, walls) = bursts(&pipeline, &job, n, args.burst as usize).await;
            println!(
                "bursts of {} fragments at once: per fragment p50 {:.3} s, p95 {:.3} s, max {:.3} s; whole burst p50 {:.3} s ({} bursts)",
                args.burst,
                pct(&per, 50.0),
                pct(&per, 95.0),
                pct(&per, 100.0),
                pct(&walls, 50.0),
                walls.len()
            );
            line.push_str(&format!(
                "; bursts of {}: per fragment p50 {:.3} s p95 {:.3} s max {:.3} s",
                args.burst,
                pct(&per, 50.0),
                pct(&per, 95.0),
                pct(&per, 100.0)
            ));
        }
        if !args.no_baseline {
            let model_path = cfg
                .resolve_asr_model()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/bench-faster-whisper.py"
            );
            for chunk in [10u32, 30] {
                let out = std::process::Command::new(&args.python)
                    .arg(script)
                    .arg(&model_path)
                    .arg("en")
                    .arg(chunk.to_string())
                    .args(&wavs)
                    .output()
                    .with_context(|| format!("running {} (set --python / LIVEDUB_BENCH_PYTHON to a Python with faster-whisper; `scripts/install-python.sh --bench`)", args.python))?;
                if !out.status.success() {
                    bail!(
                        "faster-whisper baseline failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                let v: serde_json::Value = serde_json::from_slice(
                    out.stdout
                        .split(|b| *b == b'\n')
                        .rfind(|l| !l.is_empty())
                        .unwrap_or_default(),
                )?;
                let times: Vec<f64> = v["times_s"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                    .unwrap_or_default();
                if let Some(t0) = v["texts"].get(0) {
                    println!("  [faster-whisper {chunk} s window] #0: {t0}");
                }
                println!(
                    "faster-whisper {} ({chunk} s window): ASR p50 {:.3} s, p95 {:.3} s; ratio ct2rs/faster-whisper p50 = {:.2}",
                    v["model"].as_str().unwrap_or(model),
                    pct(&times, 50.0),
                    pct(&times, 95.0),
                    pct(&asr, 50.0) / pct(&times, 50.0)
                );
                line.push_str(&format!(
                    "; faster-whisper {chunk}s-window p50 {:.3} s (ratio {:.2})",
                    pct(&times, 50.0),
                    pct(&asr, 50.0) / pct(&times, 50.0)
                ));
            }
        }
        summary.push(line);
    }
    println!("\n== summary");
    for l in summary {
        println!("{l}");
    }
    Ok(())
}

/// Sends the `n` fragments in bursts of `size` at once; returns every fragment's
/// processing time and every burst's wall time, in seconds.
async fn bursts(
    pipeline: &Pipeline,
    job: &impl Fn(usize) -> Job,
    n: usize,
    size: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut per, mut walls) = (Vec::new(), Vec::new());
    let ids: Vec<usize> = (0..n).collect();
    for chunk in ids.chunks(size).filter(|c| c.len() == size) {
        let t = Instant::now();
        let evs = futures::future::join_all(chunk.iter().map(|&i| pipeline.process(job(i)))).await;
        walls.push(t.elapsed().as_secs_f64());
        per.extend(evs.iter().map(|e| e.processing_time_ms as f64 / 1000.0));
    }
    (per, walls)
}
