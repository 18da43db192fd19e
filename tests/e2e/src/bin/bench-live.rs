//! `make bench-live` (BENCH_STREAMS, default "1,2,4,6,8"; BENCH_STARTS, default
//! "together,staggered"; BENCH_SECONDS, default 30): N live streams of read speech through a pair with the services'
//! defaults (native backend; a fresh pair per round), then one table row per round
//! (docs/capacity.md). Exits 2 when it could not run; it judges nothing.

use std::sync::Arc;

use anyhow::{bail, Context};
use livedub_e2e::bench::{self, Round, RoundFigures};
use livedub_e2e::process::install_interrupt_handler;
use livedub_e2e::stack::{BackendKind, Pair, PairSpec, Ports, Settings};
use livedub_e2e::{repo_root, soak};

fn main() {
    if let Err(e) = run() {
        eprintln!("[bench-live] cannot run: {e:#}");
        std::process::exit(2);
    }
}

fn parse_list<T>(
    var: &str,
    default: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<Vec<T>> {
    let text = std::env::var(var).unwrap_or_else(|_| default.to_string());
    text.split(',')
        .map(|t| parse(t.trim()).with_context(|| format!("{var}={text:?}: {t:?} is not accepted")))
        .collect()
}

fn run() -> anyhow::Result<()> {
    let counts = parse_list("BENCH_STREAMS", "1,2,4,6,8", |t| {
        t.parse::<usize>().ok().filter(|n| (1..=32).contains(n))
    })
    .context("accepted: stream counts 1..32, comma-separated")?;
    let starts = parse_list("BENCH_STARTS", "together,staggered", |t| match t {
        "together" => Some(false),
        "staggered" => Some(true),
        _ => None,
    })
    .context("accepted: together, staggered")?;
    let settings = Arc::new(Settings::from_env(&repo_root())?);
    if settings.backend != BackendKind::Native {
        bail!("the benchmark runs on the native backend only (E2E_BACKEND=native)");
    }
    settings.check_prerequisites()?;
    install_interrupt_handler();
    let seconds = bench::source_seconds()?;
    let source = bench::speech_source(&soak::cache_dir(), seconds)?;
    eprintln!("[bench-live] source: {}", source.display());
    let rt = tokio::runtime::Runtime::new()?;
    let mut rows: Vec<RoundFigures> = Vec::new();
    println!("{}", RoundFigures::header());
    for &staggered in &starts {
        for &streams in &counts {
            let round = Round { streams, staggered };
            let spec = PairSpec::new(&format!("bench{streams}"), Ports::free()?);
            let mut pair = Pair::start(settings.clone(), spec).context("starting a pair")?;
            eprintln!(
                "[bench-live] {streams} stream(s), {}",
                if staggered { "staggered" } else { "together" }
            );
            let figures = rt.block_on(bench::run_round(
                &pair,
                round,
                &source,
                seconds,
                &settings.log_dir,
            ));
            pair.teardown();
            let figures = figures?;
            println!("{}", figures.row());
            eprint!("{}", figures.details());
            rows.push(figures);
        }
    }
    let mut table = RoundFigures::header();
    for r in &rows {
        table.push('\n');
        table.push_str(&r.row());
    }
    let saved = settings.log_dir.join("bench-live.md");
    std::fs::write(&saved, format!("{table}\n"))
        .with_context(|| format!("writing {}", saved.display()))?;
    eprintln!(
        "[bench-live] table and logs in {}",
        settings.log_dir.display()
    );
    Ok(())
}
