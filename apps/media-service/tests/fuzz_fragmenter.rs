//! Fuzzing the fragmenter with the timestamps a live input can deliver: jitter, gaps,
//! overlaps, jumps of hours, buffers of any size, a stream a year old. Whatever arrives,
//! the fragments it cuts must be whole, numbered in order, tile the timeline without holes
//! or overlaps (except where it reports a timeline jump), and cost bounded work: a bad
//! timestamp never makes it allocate or emit hours of silence.
//!
//! Bounded by `FUZZ_SECS` (default a few seconds in `cargo test`; `make fuzz` runs longer).
//! A failure prints `FUZZ_SEED=… FUZZ_CASE=…` to replay it.

use livedub_fuzzkit::{run, Rng};
use media_service::fragmenter::{Boundaries, Fragment, Fragmenter, BLOCK_FRAMES, MAX_GAP_FILL_NS};
use media_service::pcm::{INTERNAL_CHANNELS, INTERNAL_RATE};

const MS: u64 = 1_000_000;
const YEAR_NS: u64 = 365 * 24 * 3600 * 1_000_000_000;

/// The settings' accepted ranges (FRAGMENT_DURATION_MS, RESYNC_TOLERANCE_MS).
fn settings(rng: &mut Rng) -> (u32, u32) {
    let any = rng.range(1000, 30_000) as u32;
    let fragment_ms = *rng.pick(&[1000, 2000, 6000, 30_000, any]);
    let tolerance_ms = rng.range(5, 100) as u32;
    (fragment_ms, tolerance_ms)
}

/// The next buffer's timestamp relative to where the fragmenter expects it.
fn next_timestamp(rng: &mut Rng, expected: u64, tolerance_ns: u64) -> u64 {
    match rng.below(10) {
        // In place, or jitter within the tolerance.
        0..=4 => expected + rng.below(tolerance_ns + 1),
        5 => expected.saturating_sub(rng.below(tolerance_ns + 1)),
        // A gap an encoder can leave.
        6 => expected + rng.range(tolerance_ns + 1, 5_000 * MS),
        // An overlap.
        7 => expected.saturating_sub(rng.range(tolerance_ns + 1, 3_000 * MS)),
        // A jump far ahead (broken input): hours, or anywhere in a year.
        8 => expected.saturating_add(rng.range(MAX_GAP_FILL_NS, 10 * 3600 * 1000 * MS)),
        _ => rng.below(YEAR_NS),
    }
}

/// Checks one case's output; returns the fragments seen.
struct Checker {
    frames_per_fragment: usize,
    /// Speech boundaries: the fewest frames a fragment cut in a pause or at its maximum has.
    speech_min_frames: Option<usize>,
    next_sequence: u64,
    last: Option<Fragment>,
    /// Non-contiguous fragment boundaries seen so far.
    holes: u64,
}

impl Checker {
    fn check(&mut self, f: Fragment, jumps_now: u64, flushed: bool) -> Result<(), String> {
        let ch = INTERNAL_CHANNELS as usize;
        if f.sequence != self.next_sequence {
            return Err(format!(
                "fragment {} came when {} was due",
                f.sequence, self.next_sequence
            ));
        }
        self.next_sequence += 1;
        if !f.pcm.len().is_multiple_of(ch) {
            return Err(format!("fragment {} holds half a frame", f.sequence));
        }
        let frames = f.frames();
        if let Some(min) = self.speech_min_frames {
            // Cut at a pause or at its maximum (whole 10 ms blocks, within min..=max), or
            // sent as it was by a flush or a timeline jump (partial, never empty or longer).
            let cut_ok = !f.partial
                && (min..=self.frames_per_fragment).contains(&frames)
                && frames.is_multiple_of(BLOCK_FRAMES);
            let partial_ok = f.partial && frames > 0 && frames <= self.frames_per_fragment;
            if !(cut_ok || partial_ok) {
                return Err(format!(
                    "speech fragment {} has {frames} frames (partial {}), not {min}..={}",
                    f.sequence, f.partial, self.frames_per_fragment
                ));
            }
        } else if !flushed && (frames != self.frames_per_fragment || f.partial) {
            return Err(format!(
                "fragment {} has {frames} frames (partial {}), not {}",
                f.sequence, f.partial, self.frames_per_fragment
            ));
        }
        if flushed && (frames == 0 || frames > self.frames_per_fragment || !f.partial) {
            return Err(format!(
                "flushed fragment {} has {frames} frames",
                f.sequence
            ));
        }
        // Its duration is its sample count to within rounding.
        let exact = frames as u128 * 1_000_000_000 / INTERNAL_RATE as u128;
        if (f.duration_ns as u128).abs_diff(exact) > 1 {
            return Err(format!(
                "fragment {} lasts {} ns for {frames} frames ({exact} ns)",
                f.sequence, f.duration_ns
            ));
        }
        if let Some(prev) = &self.last {
            let prev_end = prev.start_ns + prev.duration_ns;
            // Contiguous, or a hole forward that a reported timeline jump accounts for:
            // never more holes than jumps.
            if f.start_ns != prev_end {
                self.holes += 1;
                if f.start_ns < prev_end || self.holes > jumps_now {
                    return Err(format!(
                        "fragment {} starts at {} ns but {} ended at {prev_end} ns ({} holes, {jumps_now} jumps reported)",
                        f.sequence, f.start_ns, prev.sequence, self.holes
                    ));
                }
            }
        }
        self.last = Some(f);
        Ok(())
    }
}

#[test]
fn fuzz_fragmenter_timestamps() {
    let report = run("fragmenter", |rng| {
        let (fragment_ms, tolerance_ms) = settings(rng);
        // Half the cases cut in the pauses of speech (FRAGMENT_BOUNDARIES=speech).
        let speech = rng.one_in(2).then(|| Boundaries::Speech {
            min_ms: rng.range(500, fragment_ms as u64) as u32,
            pause_ms: rng.range(50, 2000) as u32,
        });
        let mut fr = Fragmenter::new(fragment_ms, tolerance_ms)
            .with_boundaries(speech.unwrap_or(Boundaries::Grid));
        let frames_per_fragment = (fragment_ms as u64 * INTERNAL_RATE as u64 / 1000) as usize;
        let speech_min_frames = match speech {
            Some(Boundaries::Speech { min_ms, .. }) => {
                let blocks = (min_ms as usize)
                    .div_ceil(10)
                    .min(frames_per_fragment / BLOCK_FRAMES);
                Some(blocks * BLOCK_FRAMES)
            }
            _ => None,
        };
        let mut checker = Checker {
            frames_per_fragment,
            speech_min_frames,
            next_sequence: 0,
            last: None,
            holes: 0,
        };
        let tolerance_ns = fr.tolerance();
        // FUZZ_TRACE=1 with a replayed case prints every push and what came out.
        let trace = std::env::var_os("FUZZ_TRACE").is_some();
        if trace {
            eprintln!("fragment_ms={fragment_ms} tolerance_ms={tolerance_ms} speech={speech:?}");
        }
        // Start anywhere: at 0, or a stream already a year old.
        let mut expected = if rng.one_in(3) { rng.below(YEAR_NS) } else { 0 };
        for _ in 0..rng.range(1, 60) {
            let rt = next_timestamp(rng, expected, tolerance_ns);
            // Buffer sizes from one frame to a whole second, odd sample counts included.
            let samples = rng.range(1, INTERNAL_RATE as u64 * 2) as usize;
            // Loud or quiet, so that speech boundaries find pauses and speech.
            let level = *rng.pick(&[0i16, 1, 40, 3000, 20_000]);
            let buf = vec![level; samples];
            let before = fr.stats();
            let out = fr.push(rt, &buf);
            let after = fr.stats();
            if trace {
                eprintln!(
                    "push rt={rt} frames={} -> {:?} {after:?}",
                    samples / 2,
                    out.iter()
                        .map(|f| (f.sequence, f.start_ns, f.duration_ns))
                        .collect::<Vec<_>>()
                );
            }
            // Bounded work: at most the gap cap plus this buffer, plus the fragment a jump
            // completes.
            let max_frames = samples as u64 / 2
                + MAX_GAP_FILL_NS * INTERNAL_RATE as u64 / 1_000_000_000
                + frames_per_fragment as u64;
            let shortest = speech_min_frames.unwrap_or(frames_per_fragment).max(1);
            let bound = max_frames / shortest as u64 + if speech.is_some() { 2 } else { 1 };
            if out.len() as u64 > bound {
                return Err(format!(
                    "one buffer at {rt} ns produced {} fragments (bound {bound})",
                    out.len()
                ));
            }
            if after.gap_frames_filled - before.gap_frames_filled > max_frames {
                return Err(format!(
                    "{} frames of silence filled for one buffer",
                    after.gap_frames_filled - before.gap_frames_filled
                ));
            }
            for f in out {
                checker.check(f, after.timeline_jumps, false)?;
            }
            expected = rt + (samples as u64 / 2) * 1_000_000_000 / INTERNAL_RATE as u64;
        }
        if let Some(f) = fr.flush() {
            checker.check(f, fr.stats().timeline_jumps, true)?;
        }
        if fr.emitted() != checker.next_sequence {
            return Err(format!(
                "emitted() says {} but {} fragments came out",
                fr.emitted(),
                checker.next_sequence
            ));
        }
        Ok(())
    });
    assert!(report.cases > 10, "only {} cases ran", report.cases);
}

#[test]
fn a_jump_of_hours_costs_one_fragment_of_silence_and_is_reported() {
    let mut fr = Fragmenter::new(1000, 20);
    let second = vec![1i16; INTERNAL_RATE as usize * 2];
    assert_eq!(fr.push(0, &second[..INTERNAL_RATE as usize]).len(), 0);
    // Ten hours later: the half-full fragment is completed with silence, no more.
    let out = fr.push(10 * 3600 * 1000 * MS, &second);
    assert_eq!(fr.stats().timeline_jumps, 1);
    assert_eq!(
        out.len(),
        2,
        "{:?}",
        out.iter().map(|f| f.start_ns).collect::<Vec<_>>()
    );
    assert_eq!(out[0].start_ns, 0);
    assert_eq!(out[1].start_ns, 10 * 3600 * 1000 * MS);
    // And a gap within the cap is still filled in place.
    let mut fr = Fragmenter::new(1000, 20);
    fr.push(0, &second);
    let out = fr.push(3000 * MS, &second);
    assert_eq!(fr.stats().timeline_jumps, 0);
    assert_eq!(
        out.iter().map(|f| f.start_ns / MS).collect::<Vec<_>>(),
        vec![1000, 2000, 3000]
    );
}

#[test]
fn the_checker_rejects_a_hole_in_the_timeline() {
    // The invariant the fuzz target relies on must be able to fail.
    let mut checker = Checker {
        frames_per_fragment: INTERNAL_RATE as usize,
        speech_min_frames: None,
        next_sequence: 0,
        last: None,
        holes: 0,
    };
    let whole = |sequence: u64, start_ns: u64| Fragment {
        sequence,
        start_ns,
        duration_ns: 1000 * MS,
        pcm: vec![0; INTERNAL_RATE as usize * 2],
        max_drift_ns: 0,
        partial: false,
    };
    checker.check(whole(0, 0), 0, false).unwrap();
    let err = checker.check(whole(1, 1001 * MS), 0, false).unwrap_err();
    assert!(err.contains("starts at"), "{err}");
    let err = checker.check(whole(3, 1000 * MS), 0, false).unwrap_err();
    assert!(err.contains("came when"), "{err}");
}

#[test]
fn the_checker_rejects_speech_fragments_cut_outside_their_range() {
    // A cut speech fragment must hold min..=max frames on whole blocks.
    let checker = || Checker {
        frames_per_fragment: INTERNAL_RATE as usize,
        speech_min_frames: Some(INTERNAL_RATE as usize / 2),
        next_sequence: 0,
        last: None,
        holes: 0,
    };
    let frag = |frames: usize, partial: bool| Fragment {
        sequence: 0,
        start_ns: 0,
        duration_ns: (frames as u64 * 1_000_000_000).div_ceil(INTERNAL_RATE as u64),
        pcm: vec![0; frames * INTERNAL_CHANNELS as usize],
        max_drift_ns: 0,
        partial,
    };
    assert!(checker()
        .check(frag(80 * BLOCK_FRAMES, false), 0, false)
        .is_ok());
    assert!(checker()
        .check(frag(10 * BLOCK_FRAMES, false), 0, false)
        .is_err());
    assert!(checker()
        .check(frag(80 * BLOCK_FRAMES + 7, false), 0, false)
        .is_err());
    assert!(checker()
        .check(frag(10 * BLOCK_FRAMES, true), 0, true)
        .is_ok());
    assert!(checker().check(frag(0, true), 0, true).is_err());
}
