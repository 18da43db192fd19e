//! `make soak` (SOAK_MINUTES, default 30): one live stream through a pair of its own (local
//! media server, real STS, media-service; native backend) with faults injected on a
//! schedule, then a table of what the output went through (docs/e2e.md "Soak").
//! Exits 1 on a gross failure only (no output, no dubbing, a fault dubbing never came back
//! from), 2 when the soak could not run.

use std::sync::Arc;

use anyhow::{bail, Context};
use livedub_e2e::process::install_interrupt_handler;
use livedub_e2e::repo_root;
use livedub_e2e::soak::{self, Plan};
use livedub_e2e::stack::{BackendKind, Pair, Ports, Settings};

fn main() {
    let code = match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("[soak] cannot run the soak: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn run() -> anyhow::Result<i32> {
    let minutes: f64 = match std::env::var("SOAK_MINUTES") {
        Err(_) => 30.0,
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(m) if (3.0..=24.0 * 60.0).contains(&m) => m,
            _ => bail!("SOAK_MINUTES={v:?} is not a number of minutes; accepted: 3..1440"),
        },
    };
    let settings = Arc::new(Settings::from_env(&repo_root())?);
    if settings.backend != BackendKind::Native {
        bail!("the soak runs on the native backend only (E2E_BACKEND=native)");
    }
    settings.check_prerequisites()?;
    install_interrupt_handler();
    let plan = if minutes <= 3.0 {
        Plan::short()
    } else {
        Plan::minutes(minutes)
    };
    let cache = soak::cache_dir();
    let seconds = plan.duration.as_secs() + 60;
    eprintln!("[soak] source: {seconds} s of the looped counting fixture with a clock and sync marks (made once, kept in {})", cache.display());
    let source = soak::make_source(&cache, seconds)?;
    let mut pair = Pair::start(settings.clone(), plan.pair_spec("soak", Ports::free()?))
        .context("starting the soak's pair")?;
    let name = format!(
        "soak{}",
        &settings.run_id[settings.run_id.len().saturating_sub(6)..]
    );
    let report = soak::run(&mut pair, &plan, &name, &source, &settings.log_dir);
    pair.teardown();
    let report = report?;
    let table = report.table();
    println!("{table}");
    let saved = settings.log_dir.join(format!("{name}-report.txt"));
    std::fs::write(&saved, &table).with_context(|| format!("writing {}", saved.display()))?;
    eprintln!(
        "[soak] logs, recordings and this table in {}",
        settings.log_dir.display()
    );
    let gross = report.gross_failures();
    for g in &gross {
        eprintln!("[soak] FAILED: {g}");
    }
    Ok(if gross.is_empty() { 0 } else { 1 })
}
