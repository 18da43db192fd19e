//! Compares the audio of two media files segment by segment with the suite's fingerprint:
//! `cargo run -p livedub-e2e --example compare_audio -- INPUT OUTPUT [SEGMENT_SECONDS]`.
//! Prints the best alignment and, per segment, the bit error rate (low = same audio).

use livedub_e2e::analyzer::decode_audio_mono;
use livedub_e2e::fingerprint::Fingerprint;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: compare_audio INPUT OUTPUT [SEGMENT_SECONDS (default 6)]");
    }
    let seg: f64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(6.0);
    let a = Fingerprint::compute(&decode_audio_mono(args[1].as_ref())?);
    let b = Fingerprint::compute(&decode_audio_mono(args[2].as_ref())?);
    let (offset, whole) = a.best_offset(&b, 100);
    println!(
        "offset {offset} frames ({:.0} ms), whole-file BER {:.3} over {} frames",
        offset as f64 * Fingerprint::hop_seconds() * 1000.0,
        whole.bit_error_rate,
        whole.frames
    );
    let total = a.hashes.len() as f64 * Fingerprint::hop_seconds();
    let mut start = 0.0;
    while start + 1.0 < total {
        let c = a.compare_seconds(&b, offset, start, start + seg);
        println!(
            "segment {:>5.1}-{:>5.1}s BER {:.3} ({} frames)",
            start,
            start + seg,
            c.bit_error_rate,
            c.frames
        );
        start += seg;
    }
    Ok(())
}
