//! `av-marks FILE...`: the A/V offset of recordings of the soak's source (a flash and a
//! 9 kHz burst every second, `SyncMarks::SOAK`), per mark and summarised. Positive: the
//! audio comes late. For checking a recording by hand and for experiments on the input
//! side (e.g. recording the media server's RTSP output with gst-launch).

use std::path::PathBuf;

use anyhow::Context;
use livedub_e2e::analyzer::{median, SyncMarks};

fn main() -> anyhow::Result<()> {
    let files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    anyhow::ensure!(
        !files.is_empty(),
        "usage: av-marks FILE... (recordings of the soak source: flash + 9 kHz burst each second)"
    );
    let verbose = std::env::var_os("AV_MARKS_ALL").is_some();
    for file in &files {
        let offsets = SyncMarks::SOAK
            .av_offsets(file)
            .with_context(|| format!("analysing {}", file.display()))?;
        let ms: Vec<f64> = offsets.iter().map(|o| o * 1000.0).collect();
        if ms.is_empty() {
            println!("{}: no sync marks found", file.display());
            continue;
        }
        let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "{}: {} marks, A/V offset median {:+.0} ms, min {:+.0}, max {:+.0}, first {:+.0}, last {:+.0}",
            file.display(),
            ms.len(),
            median(ms.clone()),
            min,
            max,
            ms[0],
            ms[ms.len() - 1]
        );
        if verbose {
            let all: Vec<String> = ms.iter().map(|m| format!("{m:+.0}")).collect();
            println!("  {}", all.join(" "));
        }
    }
    Ok(())
}
