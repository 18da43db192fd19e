//! Where known audio sits in a recorded output, to the sample: the check that the output
//! carries, over each fragment's span, the dubbed audio the STS returned for it (or, for a
//! fragment that fell back, its original audio), at the right place.
//!
//! Both are found by normalised cross-correlation (FFT) of the waveform, which a silent or
//! wrong dub cannot pass (its score stays near 0, where the real one scores above 0.5), and
//! which measures a misplaced one to the sample (a fingerprint only to a 32 ms hop).
//!
//! The reference of "the right place" is the fragment's own original audio: the
//! media-service places the dub exactly where that fragment's original would have played,
//! so the dub's position minus the original's position is the placement error. Where the
//! original cannot be found with confidence (replace mode removes it, a long dub ducks it
//! under), the run's mapping from fragment timestamps to output time (the median over the
//! fragments whose original was found) stands in.

use rustfft::{num_complex::Complex, FftPlanner};
use std::fmt;

/// Sample rate of everything compared here (the STS's and the fragment artifacts' rate).
pub const RATE: u32 = 16_000;
/// Score from which a fallback fragment's output "is" its original audio.
pub const SAME_SCORE: f64 = 0.8;
/// Score from which a dubbed fragment's output carries its dub (measured 0.8-0.98 in
/// voice-over mode; a silent or wrong dub scores below 0.1).
pub const DUB_SCORE: f64 = 0.5;
/// Score from which a fragment's original, ducked under its dub, counts as found.
pub const ANCHOR_SCORE: f64 = 0.3;
/// A dub is searched this far (s) around where it belongs.
pub const DUB_SEARCH_S: f64 = 1.0;
/// A dubbed fragment's original (its anchor) is searched this far (s) around where the
/// run's mapping puts it: the mapping is right to a few ms, and a quarter second is far
/// from any other match of the same words.
pub const ANCHOR_SEARCH_S: f64 = 0.25;
/// Level (absolute sample value, -45 dBFS) from which a dub sample is voice.
const VOICE_LEVEL: f32 = 0.0056;

/// Where a needle was found in a haystack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    /// Start of the best match (s from the haystack's first sample).
    pub at_s: f64,
    /// Normalised correlation there (1 = the same waveform, up to gain).
    pub score: f64,
}

/// Finds where `needle` starts in `haystack` (both mono at [`RATE`]), among the starts
/// `from_s..=to_s` (clamped to where the needle fits whole). `None` when the needle is
/// silent or the window holds no start at all.
pub fn locate(haystack: &[f32], needle: &[f32], from_s: f64, to_s: f64) -> Option<Found> {
    let n = needle.len();
    let needle_energy: f64 = needle.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if n == 0 || haystack.len() < n || needle_energy < 1e-9 {
        return None;
    }
    let last_start = haystack.len() - n;
    let first = ((from_s.max(0.0) * RATE as f64).floor() as usize).min(last_start);
    let last = ((to_s.max(0.0) * RATE as f64).ceil() as usize).min(last_start);
    if last < first {
        return None;
    }
    let window = &haystack[first..last + n];
    let corr = correlate(window, needle);
    // Energy of every needle-long stretch of the window, by prefix sums.
    let mut prefix = Vec::with_capacity(window.len() + 1);
    prefix.push(0.0f64);
    for &x in window {
        let next = prefix[prefix.len() - 1] + f64::from(x) * f64::from(x);
        prefix.push(next);
    }
    let mut best: Option<(usize, f64)> = None;
    for lag in 0..=(last - first) {
        let energy = prefix[lag + n] - prefix[lag];
        if energy < 1e-9 {
            continue;
        }
        let score = corr[lag] / (needle_energy * energy).sqrt();
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((lag, score));
        }
    }
    best.map(|(lag, score)| Found {
        at_s: (first + lag) as f64 / RATE as f64,
        score,
    })
}

/// `c[lag] = sum_i window[lag + i] * needle[i]` for every lag at which the needle fits.
fn correlate(window: &[f32], needle: &[f32]) -> Vec<f64> {
    let size = window.len().next_power_of_two();
    let mut planner = FftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    let mut a: Vec<Complex<f32>> = window.iter().map(|&x| Complex::new(x, 0.0)).collect();
    a.resize(size, Complex::new(0.0, 0.0));
    let mut b: Vec<Complex<f32>> = needle.iter().map(|&x| Complex::new(x, 0.0)).collect();
    b.resize(size, Complex::new(0.0, 0.0));
    forward.process(&mut a);
    forward.process(&mut b);
    for (x, y) in a.iter_mut().zip(&b) {
        *x *= y.conj();
    }
    inverse.process(&mut a);
    let scale = 1.0 / size as f64;
    a[..=window.len() - needle.len()]
        .iter()
        .map(|c| f64::from(c.re) * scale)
        .collect()
}

/// The span of `pcm` that holds voice: (first, last + 1) sample above -45 dBFS.
pub fn voiced_span(pcm: &[f32]) -> Option<(usize, usize)> {
    let first = pcm.iter().position(|s| s.abs() > VOICE_LEVEL)?;
    let last = pcm.iter().rposition(|s| s.abs() > VOICE_LEVEL)?;
    Some((first, last + 1))
}

/// One fragment as the media-service cut it and (when dubbed) as the STS answered it.
#[derive(Debug, Clone)]
pub struct FragmentAudio {
    /// Sequence number.
    pub sequence: u64,
    /// The fragment's timestamp (s, the media-service's `pts_ms`).
    pub pts_s: f64,
    /// What was sent to the STS (mono, [`RATE`]).
    pub original: Vec<f32>,
    /// What the output must carry instead: the STS's dubbed audio (mono, [`RATE`]), or
    /// `None` when the fragment went out with its original audio.
    pub dubbed: Option<Vec<f32>>,
}

/// How one fragment was found in the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// Sequence number.
    pub sequence: u64,
    /// Where its original audio was found: searched over the whole output for a fragment
    /// that fell back, within [`ANCHOR_SEARCH_S`] of the run's mapping for a dubbed one.
    pub original: Option<Found>,
    /// Where it belongs in the output (s): its original's position when that was found
    /// with confidence, else the run's mapping.
    pub expected_s: Option<f64>,
    /// Dubbed fragments: where the dub's voiced part was found, and the placement error
    /// (ms, positive = late).
    pub dub: Option<(Found, f64)>,
    /// What is wrong with this fragment (empty when placed right).
    pub problems: Vec<String>,
    /// Not judged: its span is not wholly inside the recording (a recorder joins the
    /// output at its first key frame, up to a GOP after its first audio).
    pub outside: bool,
}

impl fmt::Display for Placed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.sequence)?;
        if self.outside {
            return write!(f, " not wholly in the recording, not judged");
        }
        if let Some(o) = self.original {
            write!(f, " original at {:.3} s (score {:.2})", o.at_s, o.score)?;
        }
        if let Some((d, err)) = self.dub {
            write!(
                f,
                ", dub at {:.3} s (score {:.2}, {err:+.1} ms)",
                d.at_s, d.score
            )?;
        }
        Ok(())
    }
}

/// What [`place`] measured over a whole output.
#[derive(Debug, Clone)]
pub struct PlacementReport {
    /// Output time minus fragment timestamp (s), the median over fragments whose original
    /// was found with confidence.
    pub mapping_s: Option<f64>,
    /// Per fragment.
    pub fragments: Vec<Placed>,
}

impl PlacementReport {
    /// Fragments judged (wholly inside the recording).
    pub fn judged(&self) -> usize {
        self.fragments.iter().filter(|p| !p.outside).count()
    }

    /// Every problem found, one line each.
    pub fn problems(&self) -> Vec<String> {
        self.fragments
            .iter()
            .flat_map(|p| {
                p.problems
                    .iter()
                    .map(move |e| format!("fragment {}: {e}", p.sequence))
            })
            .collect()
    }

    /// Largest |placement error| (ms) over the judged dubbed fragments and fallback ones
    /// (against the mapping).
    pub fn worst_error_ms(&self) -> Option<f64> {
        self.fragments
            .iter()
            .filter(|p| !p.outside)
            .filter_map(|p| match (p.dub, p.original, self.mapping_s) {
                (Some((_, err)), _, _) => Some(err.abs()),
                (None, Some(o), Some(_)) => p.expected_s.map(|e| (o.at_s - e).abs() * 1000.0),
                _ => None,
            })
            .max_by(f64::total_cmp)
    }
}

/// Finds every fragment of `fragments` in `output` (mono, [`RATE`]) and judges it:
/// a fallback fragment's output is its original (score >= [`SAME_SCORE`]) where the run's
/// mapping puts it (within `max_error_ms`); a dubbed fragment's output carries its dub
/// (score >= [`DUB_SCORE`]) within `max_error_ms` of where its original belongs.
pub fn place(output: &[f32], fragments: &[FragmentAudio], max_error_ms: f64) -> PlacementReport {
    let whole = output.len() as f64 / RATE as f64;
    let originals: Vec<Option<Found>> = fragments
        .iter()
        .map(|f| locate(output, &f.original, 0.0, whole))
        .collect();
    // The mapping from every fragment whose original was found with confidence (at full
    // level where it fell back; ducked under a short dub it may still qualify).
    let mut offsets: Vec<f64> = fragments
        .iter()
        .zip(&originals)
        .filter_map(|(f, o)| {
            let o = (*o)?;
            (o.score >= ANCHOR_SCORE).then_some(o.at_s - f.pts_s)
        })
        .collect();
    offsets.sort_by(f64::total_cmp);
    let mapping_s = offsets.get(offsets.len() / 2).copied();
    let fragments = fragments
        .iter()
        .zip(originals)
        .map(|(f, original)| {
            let span_s = f.original.len() as f64 / RATE as f64;
            match mapping_s.map(|m| m + f.pts_s) {
                Some(at) if at < -0.005 || at + span_s > whole + 0.005 => Placed {
                    sequence: f.sequence,
                    original,
                    expected_s: Some(at),
                    dub: None,
                    problems: Vec::new(),
                    outside: true,
                },
                _ => judge_fragment(output, f, original, mapping_s, max_error_ms),
            }
        })
        .collect();
    PlacementReport {
        mapping_s,
        fragments,
    }
}

fn judge_fragment(
    output: &[f32],
    f: &FragmentAudio,
    original: Option<Found>,
    mapping_s: Option<f64>,
    max_error_ms: f64,
) -> Placed {
    let by_mapping = mapping_s.map(|m| m + f.pts_s);
    let mut problems = Vec::new();
    let mut placed = Placed {
        sequence: f.sequence,
        original,
        expected_s: None,
        dub: None,
        problems: Vec::new(),
        outside: false,
    };
    let Some(dub) = &f.dubbed else {
        // Fell back: the output is the original, where the mapping puts it.
        placed.expected_s = by_mapping;
        match (original, by_mapping) {
            (Some(o), Some(e)) if o.score >= SAME_SCORE => {
                let err = (o.at_s - e) * 1000.0;
                if err.abs() > max_error_ms {
                    problems.push(format!(
                        "its original audio is in the output {err:+.1} ms from where the other fragments put it (allowed ±{max_error_ms} ms)"
                    ));
                }
            }
            (Some(o), _) => problems.push(format!(
                "it went out with its original audio, but the output there is not that audio (best match {:.2} at {:.3} s, needs {SAME_SCORE})",
                o.score, o.at_s
            )),
            (None, _) => problems.push("its original audio is silent or longer than the output".into()),
        }
        placed.problems = problems;
        return placed;
    };
    // The anchor is the original where the mapping puts it, not the best match over the
    // whole output: ducked under its dub the original scores 0.2-0.5, and the same words
    // at full level elsewhere (a fragment before it that fell back; a repeated phrase) can
    // score higher (seen in CI: 0.39 four seconds early, where the dub is not).
    let anchor = match by_mapping {
        Some(e) => locate(
            output,
            &f.original,
            e - ANCHOR_SEARCH_S,
            e + ANCHOR_SEARCH_S,
        ),
        None => original,
    };
    placed.original = anchor;
    let expected = match anchor {
        Some(o) if o.score >= ANCHOR_SCORE => Some(o.at_s),
        _ => by_mapping,
    };
    placed.expected_s = expected;
    let Some(expected) = expected else {
        placed.problems = vec![
            "neither its original nor any other fragment's was found in the output: nowhere to judge the dub against".into(),
        ];
        return placed;
    };
    let Some((from, to)) = voiced_span(dub) else {
        placed.problems = vec!["the STS's dubbed audio for it is silent".into()];
        return placed;
    };
    let lead = from as f64 / RATE as f64;
    let want = expected + lead;
    match locate(
        output,
        &dub[from..to],
        want - DUB_SEARCH_S,
        want + DUB_SEARCH_S,
    ) {
        Some(d) if d.score >= DUB_SCORE => {
            let err = (d.at_s - want) * 1000.0;
            placed.dub = Some((d, err));
            if err.abs() > max_error_ms {
                problems.push(format!(
                    "its dub is in the output {err:+.1} ms from its place (allowed ±{max_error_ms} ms)"
                ));
            }
        }
        Some(d) => problems.push(format!(
            "the output within {DUB_SEARCH_S} s of its place does not carry its dub (best match {:.2} at {:+.1} ms, needs {DUB_SCORE}): silent, wrong or missing dub",
            d.score,
            (d.at_s - want) * 1000.0
        )),
        None => problems.push("its place is outside the recorded output".into()),
    }
    placed.problems = problems;
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic speech-like audio: noise bursts ("syllables") of varying length and
    /// level, different for every `seed`.
    fn speechy(seed: u64, seconds: f64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64) as f32 - 0.5
        };
        let n = (seconds * RATE as f64) as usize;
        let mut out = Vec::with_capacity(n);
        let mut smooth = 0.0f32;
        while out.len() < n {
            let len = 1600 + ((next() + 0.5) * 3200.0) as usize;
            let level = 0.2 + (next() + 0.5) * 0.6;
            let pause = ((next() + 0.5) * 2400.0) as usize;
            for i in 0..len {
                let env = (std::f32::consts::PI * i as f32 / len as f32).sin();
                smooth = 0.6 * smooth + 0.4 * next();
                out.push(level * env * smooth);
            }
            out.extend(std::iter::repeat_n(0.0, pause));
        }
        out.truncate(n);
        out
    }

    const FRAG_S: f64 = 2.0;

    /// Three 2 s fragments: 0 falls back, 1 and 2 are dubbed (voice of 1.2 s from 0.2 s).
    fn fragments() -> Vec<FragmentAudio> {
        (0..3u64)
            .map(|k| {
                let dubbed = (k > 0).then(|| {
                    let mut d = vec![0.0; (0.2 * RATE as f64) as usize];
                    d.extend(speechy(100 + k, 1.2));
                    d.resize((FRAG_S * RATE as f64) as usize, 0.0);
                    d
                });
                FragmentAudio {
                    sequence: k,
                    pts_s: 10.0 + k as f64 * FRAG_S,
                    original: speechy(k, FRAG_S),
                    dubbed,
                }
            })
            .collect()
    }

    /// The output a voice-over mix makes: 0.5 s of lead, then each fragment's original
    /// (ducked while its dub speaks) plus the dub shifted by `shift_s`, a gain, light noise.
    fn mix(frags: &[FragmentAudio], dubs: &[Option<&Vec<f32>>], shift_s: f64) -> Vec<f32> {
        let lead = (0.5 * RATE as f64) as usize;
        let frag = (FRAG_S * RATE as f64) as usize;
        let mut out = vec![0.0f32; lead + frags.len() * frag + lead];
        for (k, f) in frags.iter().enumerate() {
            let at = lead + k * frag;
            // Ducked while the dub speaks (0.2..1.4 s), at full level around it.
            let voiced = dubs[k].and_then(|d| voiced_span(d));
            for (i, s) in f.original.iter().enumerate() {
                let duck = match voiced {
                    Some((a, b)) if (a..b).contains(&i) => 0.18,
                    _ => 1.0,
                };
                out[at + i] += duck * 0.9 * s;
            }
            if let Some(d) = dubs[k] {
                let shifted = (at as f64 + shift_s * RATE as f64) as usize;
                for (i, s) in d.iter().enumerate() {
                    if let Some(o) = out.get_mut(shifted + i) {
                        *o += 0.8 * s;
                    }
                }
            }
        }
        let noise = speechy(999, out.len() as f64 / RATE as f64 + 1.0);
        for (o, n) in out.iter_mut().zip(noise) {
            *o += 0.01 * n;
        }
        out
    }

    #[test]
    fn locates_a_needle_to_the_sample() {
        let hay = speechy(7, 5.0);
        let needle = hay[24_000..40_000].to_vec();
        let f = locate(&hay, &needle, 0.0, 5.0).unwrap();
        assert_eq!((f.at_s * RATE as f64).round() as usize, 24_000, "{f:?}");
        assert!(f.score > 0.999, "{f:?}");
        // Outside the searched window the best match is poor.
        let g = locate(&hay, &needle, 3.0, 4.0).unwrap();
        assert!(g.score < 0.2, "{g:?}");
        assert!(locate(&hay, &[0.0; 100], 0.0, 5.0).is_none(), "silence");
        assert!(locate(&needle, &hay, 0.0, 5.0).is_none(), "needle longer");
    }

    #[test]
    fn a_right_output_passes() {
        let frags = fragments();
        let dubs: Vec<Option<&Vec<f32>>> = frags.iter().map(|f| f.dubbed.as_ref()).collect();
        let r = place(&mix(&frags, &dubs, 0.0), &frags, 40.0);
        assert!(r.problems().is_empty(), "{:?}", r);
        assert!(r.worst_error_ms().unwrap() < 1.0, "{r:?}");
        let mapping = r.mapping_s.unwrap();
        assert!((mapping - (0.5 - 10.0)).abs() < 0.001, "{mapping}");
        for p in &r.fragments[1..] {
            let (d, _) = p.dub.unwrap();
            assert!(d.score > 0.9, "{p}");
        }
    }

    #[test]
    fn a_fragment_cut_by_the_recording_start_is_not_judged() {
        let frags = fragments();
        let dubs: Vec<Option<&Vec<f32>>> = frags.iter().map(|f| f.dubbed.as_ref()).collect();
        // The recording starts 1.5 s in: fragment 0 (0.5..2.5 s) is half missing.
        let out = mix(&frags, &dubs, 0.0)[24_000..].to_vec();
        let r = place(&out, &frags, 40.0);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        assert_eq!(r.judged(), 2, "{r:?}");
        assert!(r.fragments[0].outside);
        // The fragment left out does not count in the worst error either.
        assert!(r.worst_error_ms().unwrap() < 1.0, "{r:?}");
    }

    #[test]
    fn a_shifted_dub_is_rejected() {
        let frags = fragments();
        let dubs: Vec<Option<&Vec<f32>>> = frags.iter().map(|f| f.dubbed.as_ref()).collect();
        let r = place(&mix(&frags, &dubs, 0.1), &frags, 40.0);
        let problems = r.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("+100.0 ms"), "{problems:?}");
        // 30 ms is inside the bound.
        let r = place(&mix(&frags, &dubs, 0.03), &frags, 40.0);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
    }

    #[test]
    fn a_silent_dub_is_rejected() {
        let frags = fragments();
        // The output carries no dub at all (the mix lost it) ...
        let r = place(&mix(&frags, &[None, None, None], 0.0), &frags, 40.0);
        let problems = r.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .all(|p| p.contains("does not carry its dub")),
            "{problems:?}"
        );
        // ... or the STS answered silence.
        let mut silent = fragments();
        silent[1].dubbed = Some(vec![0.0; 32_000]);
        let dubs: Vec<Option<&Vec<f32>>> = silent.iter().map(|f| f.dubbed.as_ref()).collect();
        let r = place(&mix(&silent, &dubs, 0.0), &silent, 40.0);
        assert!(r.problems()[0].contains("silent"), "{:?}", r.problems());
    }

    #[test]
    fn a_wrong_dub_is_rejected() {
        let frags = fragments();
        // Fragments 1 and 2 carry each other's dub.
        let dubs = [None, frags[2].dubbed.as_ref(), frags[1].dubbed.as_ref()];
        let r = place(&mix(&frags, &dubs, 0.0), &frags, 40.0);
        assert_eq!(r.problems().len(), 2, "{:?}", r.problems());
    }

    #[test]
    fn a_repeated_phrase_does_not_move_a_dubbed_fragment_s_anchor() {
        // Fragment 0 (fell back, full level) says what fragment 2 says, ducked under its
        // dub: the best match of fragment 2's original over the whole output is fragment
        // 0's span, 4 s early, where fragment 2's dub is not.
        let mut frags = fragments();
        frags[0].original = frags[2].original.clone();
        let dubs: Vec<Option<&Vec<f32>>> = frags.iter().map(|f| f.dubbed.as_ref()).collect();
        let out = mix(&frags, &dubs, 0.0);
        let whole = out.len() as f64 / RATE as f64;
        let global = locate(&out, &frags[2].original, 0.0, whole).unwrap();
        assert!((global.at_s - 0.5).abs() < 0.01, "{global:?}");
        let r = place(&out, &frags, 40.0);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        let expected = r.fragments[2].expected_s.unwrap();
        assert!((expected - 4.5).abs() < 0.001, "{:?}", r.fragments[2]);
        // Still judged: the same output with fragment 2's dub 100 ms late is rejected.
        let late = mix(&frags, &dubs, 0.1);
        let problems = place(&late, &frags, 40.0).problems();
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("fragment 2") && p.contains("+100.0 ms")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_misplaced_or_replaced_fallback_is_rejected() {
        let mut frags = fragments();
        for f in &mut frags {
            f.dubbed = None;
        }
        let dubs = [None, None, None];
        let out = mix(&frags, &dubs, 0.0);
        assert!(place(&out, &frags, 40.0).problems().is_empty());
        // Fragment 2's original 60 ms late.
        let mut late = out.clone();
        let (at, len, by) = (8_000 + 2 * 32_000, 32_000, 960);
        let piece: Vec<f32> = late[at..at + len].to_vec();
        late[at..at + len].iter_mut().for_each(|s| *s = 0.0);
        for (i, s) in piece.iter().enumerate() {
            late[at + by + i] += s;
        }
        let problems = place(&late, &frags, 40.0).problems();
        assert!(
            problems.len() == 1
                && problems[0].starts_with("fragment 2")
                && problems[0].contains("+60.0 ms"),
            "{problems:?}"
        );
        // Fragment 1 replaced by other audio (a stream's audio crossing into another).
        let mut swapped = out;
        let other = speechy(4242, FRAG_S);
        swapped[8_000 + 32_000..8_000 + 64_000].copy_from_slice(&other);
        let problems = place(&swapped, &frags, 40.0).problems();
        assert!(
            problems.len() == 1 && problems[0].contains("not that audio"),
            "{problems:?}"
        );
    }
}
