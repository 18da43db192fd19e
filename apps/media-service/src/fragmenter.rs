//! Cuts decoded audio into fixed-length fragments on the stream's timeline.
//!
//! Input: buffers of interleaved S16 at [`INTERNAL_RATE`] with their running time.
//! Output: fragments of exactly `fragment_duration` (the last one may be shorter), stamped by
//! *sample count* from the first sample. Fragments end on a fixed grid of that length from
//! the first sample: a fragment cut early by [`Fragmenter::flush`]
//! (the input went quiet) is followed by one that completes its slot, so the boundaries of a
//! stream never move. Stamping by count keeps the output audio continuous
//! (one encoder, no gaps, no overlaps); the resync policy below keeps that timeline within
//! [`Fragmenter::tolerance`] of the input's own timestamps, which the untouched video shares,
//! so A/V sync error is bounded by the tolerance.
//!
//! Resync policy (RTSP audio timestamps wander tens of ms from the sample count):
//! - |drift| <= tolerance: append, keep counting.
//! - input later than expected by more than the tolerance (a gap): insert silence up to the
//!   buffer's timestamp.
//! - input earlier than expected by more than the tolerance (an overlap): drop the samples
//!   that fall before the expected position.
//! - input later than expected by more than [`MAX_GAP_FILL_NS`] (a timestamp jump, not a
//!   gap an encoder could leave): the unfinished fragment is completed with silence and the
//!   timeline is re-anchored at the buffer's timestamp, so a broken input costs at most one
//!   fragment of silence, never hours of it.
//!
//! Boundaries ([`Boundaries`], FRAGMENT_BOUNDARIES): on the fixed grid above, or in the
//! pauses of speech. With speech boundaries the fragment length is a maximum: once a
//! fragment holds `min_ms` of audio it ends in the middle of the first pause of `pause_ms`
//! (quiet 10 ms blocks, measured against the loudness of the speech around them); a
//! fragment that reaches the maximum without such a pause ends in the middle of the longest
//! quiet stretch after `min_ms`, or, in sound that never goes quiet (music, crowd), at the
//! quietest 50 ms. What follows the cut starts the next fragment, so the timeline still
//! tiles without holes; only the grid is gone.

use crate::pcm::{INTERNAL_CHANNELS, INTERNAL_RATE};

const NS_PER_S: u64 = 1_000_000_000;

/// Longest input gap filled with silence (ns); a longer jump re-anchors the timeline.
pub const MAX_GAP_FILL_NS: u64 = 30 * NS_PER_S;

/// Frames in one loudness block (10 ms at [`INTERNAL_RATE`]): speech boundaries fall on
/// whole blocks, so every fragment lasts a whole number of milliseconds.
pub const BLOCK_FRAMES: usize = INTERNAL_RATE as usize / 100;
/// A block is quiet below this share of the energy of the loudest block of the current or
/// the previous fragment (-24 dB)...
const QUIET_RELATIVE: f64 = 0.004;
/// ...and always below this mean square (about -55 dBFS).
const QUIET_FLOOR: f64 = 3_400.0;
/// Width of the window that finds the quietest place in sound that never goes quiet.
const QUIETEST_WINDOW_BLOCKS: usize = 5;

/// Where fragments end (FRAGMENT_BOUNDARIES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundaries {
    /// Every fragment length on a fixed grid from the first sample.
    Grid,
    /// In the pauses of speech, the fragment length being the longest a fragment gets.
    Speech {
        /// No cut before a fragment holds this much audio (ms).
        min_ms: u32,
        /// A quiet stretch this long (ms) after `min_ms` ends the fragment at its middle.
        pause_ms: u32,
    },
}

/// Loudness of the current fragment in 10 ms blocks (speech boundaries only).
#[derive(Debug, Default)]
struct Loudness {
    /// Mean square of every whole block since the fragment's start.
    blocks: Vec<f64>,
    /// Sum of squares and frames of the block being filled.
    acc: f64,
    acc_frames: usize,
    /// Loudest block of the previous fragment: the reference for "quiet" early on.
    prev_peak: f64,
}

impl Loudness {
    fn feed(&mut self, samples: &[i16]) {
        let ch = INTERNAL_CHANNELS as usize;
        for frame in samples.chunks_exact(ch) {
            let m = frame.iter().map(|&v| v as f64).sum::<f64>() / ch as f64;
            self.acc += m * m;
            self.acc_frames += 1;
            if self.acc_frames == BLOCK_FRAMES {
                self.blocks.push(self.acc / BLOCK_FRAMES as f64);
                self.acc = 0.0;
                self.acc_frames = 0;
            }
        }
    }

    fn peak(&self) -> f64 {
        self.blocks.iter().copied().fold(0.0, f64::max)
    }

    fn quiet_below(&self) -> f64 {
        (self.peak().max(self.prev_peak) * QUIET_RELATIVE).max(QUIET_FLOOR)
    }

    /// The first `n` blocks went out as a fragment.
    fn cut(&mut self, n: usize) {
        self.prev_peak = self.blocks[..n].iter().copied().fold(0.0, f64::max);
        self.blocks.drain(..n);
    }

    /// The whole fragment went out (a flush): the partial block with it.
    fn clear(&mut self) {
        self.prev_peak = self.peak();
        self.blocks.clear();
        self.acc = 0.0;
        self.acc_frames = 0;
    }

    /// Where a fragment that holds `min` blocks or more ends early: the middle of a
    /// trailing quiet stretch of `pause` blocks that follows speech.
    fn pause_cut(&self, min: usize, pause: usize) -> Option<usize> {
        let n = self.blocks.len();
        if n < min || pause == 0 {
            return None;
        }
        let thr = self.quiet_below();
        let run = self.blocks.iter().rev().take_while(|&&e| e < thr).count();
        if run < pause || run == n {
            return None; // no pause yet, or nothing but quiet so far
        }
        Some((n - run / 2).max(min))
    }

    /// Where a fragment that reached its maximum ends: the middle of the longest quiet
    /// stretch that reaches past `min` blocks, else the quietest window after `min`.
    fn forced_cut(&self, min: usize) -> usize {
        let n = self.blocks.len();
        let min = min.min(n);
        let thr = self.quiet_below();
        // Longest quiet run (start, len) among those ending after `min`; later wins ties.
        let mut best: Option<(usize, usize)> = None;
        let mut i = 0;
        while i < n {
            if self.blocks[i] < thr {
                let start = i;
                while i < n && self.blocks[i] < thr {
                    i += 1;
                }
                if i > min && best.is_none_or(|(_, l)| i - start >= l) {
                    best = Some((start, i - start));
                }
            } else {
                i += 1;
            }
        }
        if let Some((start, len)) = best {
            if len == n {
                return n; // nothing but quiet: the longest fragment
            }
            return (start + len / 2).clamp(min.max(1), n);
        }
        // Never quiet: the boundary with the least energy around it, later wins ties.
        let w = QUIETEST_WINDOW_BLOCKS;
        let mut best_at = n;
        let mut best_e = f64::INFINITY;
        for b in min.max(1)..=n {
            let lo = b.saturating_sub(w / 2 + 1);
            let hi = (b + w / 2).min(n);
            let e = self.blocks[lo..hi].iter().sum::<f64>() / (hi - lo).max(1) as f64;
            if e <= best_e {
                best_e = e;
                best_at = b;
            }
        }
        best_at
    }
}

/// One cut fragment of internal-format audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Fragment {
    /// Position in the stream, from 0.
    pub sequence: u64,
    /// Running time of the first sample (ns) on the sample-count timeline.
    pub start_ns: u64,
    /// Duration (ns) = frames / rate.
    pub duration_ns: u64,
    /// Interleaved stereo S16 at 48 kHz.
    pub pcm: Vec<i16>,
    /// Worst |stamped - input| timestamp difference seen inside this fragment (ns).
    pub max_drift_ns: u64,
    /// Shorter than the nominal length (end of stream).
    pub partial: bool,
}

impl Fragment {
    /// Number of sample frames.
    pub fn frames(&self) -> usize {
        self.pcm.len() / INTERNAL_CHANNELS as usize
    }
}

/// Counters a worker exports about resync decisions.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResyncStats {
    /// Silence frames inserted for input gaps.
    pub gap_frames_filled: u64,
    /// Input frames dropped because they overlapped already-stamped audio.
    pub overlap_frames_dropped: u64,
    /// Timestamp jumps beyond [`MAX_GAP_FILL_NS`] that re-anchored the timeline.
    pub timeline_jumps: u64,
}

/// Accumulates audio and emits fragments. Not thread-safe by itself; the worker keeps it
/// behind a mutex in the appsink callback.
#[derive(Debug)]
pub struct Fragmenter {
    frames_per_fragment: usize,
    tolerance_ns: u64,
    /// Running time of the next expected sample, once started.
    next_ns: Option<u64>,
    /// Running time of the first sample of the stream.
    origin_ns: u64,
    /// Frames emitted or buffered since `origin_ns` (drives the stamping).
    frames_total: u64,
    current: Vec<i16>,
    current_drift: u64,
    sequence: u64,
    stats: ResyncStats,
    /// Offset of the fragment grid (frames, < frames_per_fragment): the first fragment is
    /// that much shorter (FRAGMENT_STAGGER, stagger.rs).
    phase_frames: u64,
    /// Speech boundaries: (min blocks, pause blocks) and the current fragment's loudness.
    speech: Option<(usize, usize, Loudness)>,
}

// Both conversions multiply before dividing (exact rounding); in u64 the product overflows
// after about 106 hours of 48 kHz audio, so they work in u128 and saturate on the way back.
fn frames_to_ns(frames: u64) -> u64 {
    // Exact for 48 kHz: 1 frame = 20833.33 ns; round to nearest ns.
    let rate = INTERNAL_RATE as u128;
    let ns = (frames as u128 * NS_PER_S as u128 + rate / 2) / rate;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn ns_to_frames(ns: u64) -> u64 {
    let frames = (ns as u128 * INTERNAL_RATE as u128 + NS_PER_S as u128 / 2) / NS_PER_S as u128;
    u64::try_from(frames).unwrap_or(u64::MAX)
}

impl Fragmenter {
    /// A fragmenter cutting `fragment_ms` fragments, resyncing beyond `tolerance_ms`.
    pub fn new(fragment_ms: u32, tolerance_ms: u32) -> Self {
        Self {
            frames_per_fragment: (fragment_ms as u64 * INTERNAL_RATE as u64 / 1000) as usize,
            tolerance_ns: tolerance_ms as u64 * 1_000_000,
            next_ns: None,
            origin_ns: 0,
            frames_total: 0,
            current: Vec::new(),
            current_drift: 0,
            sequence: 0,
            stats: ResyncStats::default(),
            phase_frames: 0,
            speech: None,
        }
    }

    /// The same fragmenter with these boundaries; with [`Boundaries::Speech`] the fragment
    /// length is the longest a fragment gets.
    pub fn with_boundaries(mut self, boundaries: Boundaries) -> Self {
        self.speech = match boundaries {
            Boundaries::Grid => None,
            Boundaries::Speech { min_ms, pause_ms } => {
                let blocks = |ms: u32| (ms as usize).div_ceil(10);
                let max_blocks = self.frames_per_fragment / BLOCK_FRAMES;
                Some((
                    blocks(min_ms).min(max_blocks),
                    blocks(pause_ms),
                    Loudness::default(),
                ))
            }
        };
        self
    }

    /// Makes the first fragment `ms` shorter (modulo the fragment length), shifting the
    /// whole grid by that much; every later fragment keeps the full length. Only before
    /// the first sample: once audio has arrived the grid stays where it is.
    /// Speech boundaries have no grid to shift: nothing happens.
    pub fn shorten_first(&mut self, ms: u32) {
        if self.started() || self.speech.is_some() {
            return;
        }
        let f = self.frames_per_fragment.max(1) as u64;
        self.phase_frames = (ms as u64 * INTERNAL_RATE as u64 / 1000) % f;
    }

    /// Whether audio has arrived.
    pub fn started(&self) -> bool {
        self.next_ns.is_some()
    }

    /// The same fragmenter, numbering its first fragment `sequence`.
    pub fn starting_at(mut self, sequence: u64) -> Self {
        self.sequence = sequence;
        self
    }

    /// The resync tolerance (ns).
    pub fn tolerance(&self) -> u64 {
        self.tolerance_ns
    }

    /// Resync counters so far.
    pub fn stats(&self) -> ResyncStats {
        self.stats
    }

    /// Fragments emitted so far.
    pub fn emitted(&self) -> u64 {
        self.sequence
    }

    /// Running time where the current (unfinished) fragment starts.
    fn current_start_ns(&self) -> u64 {
        let frames_before =
            self.frames_total - (self.current.len() / INTERNAL_CHANNELS as usize) as u64;
        self.origin_ns.saturating_add(frames_to_ns(frames_before))
    }

    /// Running time of the next stamped sample.
    fn stamped_end_ns(&self) -> u64 {
        self.origin_ns
            .saturating_add(frames_to_ns(self.frames_total))
    }

    /// Frames the current fragment holds when it reaches the next boundary of the grid
    /// (speech boundaries: its maximum length).
    fn slot_frames(&self) -> usize {
        let ch = INTERNAL_CHANNELS as usize;
        if self.speech.is_some() {
            return self.frames_per_fragment.max(BLOCK_FRAMES);
        }
        let f = self.frames_per_fragment.max(1) as u64;
        let before = self.frames_total - (self.current.len() / ch) as u64;
        (f - (before + self.phase_frames) % f) as usize
    }

    /// Completes the unfinished fragment with silence and restarts the timeline at `rt_ns`.
    /// With speech boundaries there is no slot to complete: the unfinished fragment goes out
    /// as it is (a cut in it could leave audio behind on the old timeline).
    fn reanchor(&mut self, rt_ns: u64, out: &mut Vec<Fragment>) {
        let ch = INTERNAL_CHANNELS as usize;
        if let Some((_, _, loud)) = self.speech.as_mut() {
            loud.clear();
            if !self.current.is_empty() {
                out.push(self.take_current(true));
            }
        } else if !self.current.is_empty() {
            let missing = self.slot_frames() - self.current.len() / ch;
            self.stats.gap_frames_filled += missing as u64;
            self.append(&vec![0i16; missing * ch], 0, out);
        }
        self.stats.timeline_jumps += 1;
        self.origin_ns = rt_ns;
        self.frames_total = 0;
    }

    /// Adds one input buffer (interleaved stereo S16) whose first sample has running time
    /// `rt_ns`; returns the fragments completed by it.
    pub fn push(&mut self, rt_ns: u64, samples: &[i16]) -> Vec<Fragment> {
        let ch = INTERNAL_CHANNELS as usize;
        let mut samples = &samples[..samples.len() - samples.len() % ch];
        let mut out = Vec::new();
        let expected = match self.next_ns {
            None => {
                self.origin_ns = rt_ns;
                rt_ns
            }
            Some(e) if rt_ns.saturating_sub(e) > MAX_GAP_FILL_NS => {
                self.reanchor(rt_ns, &mut out);
                rt_ns
            }
            Some(e) => e,
        };
        let drift = rt_ns.abs_diff(expected);
        if drift > self.tolerance_ns {
            if rt_ns > expected {
                // Gap: fill with silence so the stamped timeline catches up with the input.
                let gap = ns_to_frames(rt_ns - expected);
                self.stats.gap_frames_filled += gap;
                // At most one fragment of silence is allocated, appended as often as needed.
                let chunk = gap.min(self.frames_per_fragment as u64);
                let silence = vec![0i16; chunk as usize * ch];
                let mut left = gap;
                while left > 0 {
                    let n = left.min(chunk);
                    self.append(&silence[..n as usize * ch], 0, &mut out);
                    left -= n;
                }
            } else {
                // Overlap: skip what was already stamped.
                let skip = (ns_to_frames(expected - rt_ns) as usize).min(samples.len() / ch);
                self.stats.overlap_frames_dropped += skip as u64;
                samples = &samples[skip * ch..];
            }
        } else {
            self.current_drift = self.current_drift.max(drift);
        }
        let kept_drift = if drift > self.tolerance_ns { 0 } else { drift };
        self.append(samples, kept_drift, &mut out);
        self.next_ns = Some(self.stamped_end_ns());
        out
    }

    fn append(&mut self, mut samples: &[i16], drift: u64, out: &mut Vec<Fragment>) {
        let ch = INTERNAL_CHANNELS as usize;
        while !samples.is_empty() {
            let want = self.slot_frames() * ch;
            let take = (want - self.current.len()).min(samples.len());
            self.current.extend_from_slice(&samples[..take]);
            if let Some((_, _, loud)) = self.speech.as_mut() {
                loud.feed(&samples[..take]);
            }
            self.frames_total += (take / ch) as u64;
            samples = &samples[take..];
            self.current_drift = self.current_drift.max(drift);
            let cut = match self.speech.as_ref() {
                None => (self.current.len() == want).then_some(want / ch),
                Some((min, _, loud)) if self.current.len() == want => {
                    Some(loud.forced_cut(*min) * BLOCK_FRAMES)
                }
                Some((min, pause, loud)) => loud.pause_cut(*min, *pause).map(|b| b * BLOCK_FRAMES),
            };
            if let Some(frames) = cut {
                out.push(self.take_front(frames, false));
            }
        }
    }

    /// Cuts the first `frames` of the current fragment off as a fragment (all of it on the
    /// grid); the rest starts the next one.
    fn take_front(&mut self, frames: usize, partial: bool) -> Fragment {
        let ch = INTERNAL_CHANNELS as usize;
        let held = self.current.len() / ch;
        if frames >= held {
            if let Some((_, _, loud)) = self.speech.as_mut() {
                loud.clear();
            }
            return self.take_current(partial);
        }
        let start_ns = self.current_start_ns();
        let before = self.frames_total - held as u64;
        let end_ns = self
            .origin_ns
            .saturating_add(frames_to_ns(before + frames as u64));
        let rest = self.current.split_off(frames * ch);
        let pcm = std::mem::replace(&mut self.current, rest);
        if let Some((_, _, loud)) = self.speech.as_mut() {
            loud.cut(frames / BLOCK_FRAMES);
        }
        let f = Fragment {
            sequence: self.sequence,
            start_ns,
            duration_ns: end_ns - start_ns,
            pcm,
            max_drift_ns: self.current_drift,
            partial,
        };
        self.sequence += 1;
        self.current_drift = 0;
        f
    }

    fn take_current(&mut self, partial: bool) -> Fragment {
        let start_ns = self.current_start_ns();
        let pcm = std::mem::take(&mut self.current);
        let frames = (pcm.len() / INTERNAL_CHANNELS as usize) as u64;
        let f = Fragment {
            sequence: self.sequence,
            start_ns,
            // Duration from stamped start/end so consecutive fragments tile exactly.
            duration_ns: self.stamped_end_ns() - start_ns,
            pcm,
            max_drift_ns: self.current_drift,
            partial,
        };
        debug_assert_eq!(frames as usize, f.frames());
        self.sequence += 1;
        self.current_drift = 0;
        f
    }

    /// Emits the unfinished fragment (end of stream, or an input gone quiet), if it holds
    /// any audio. Audio that comes after it fills the rest of the same slot first.
    pub fn flush(&mut self) -> Option<Fragment> {
        if self.current.is_empty() {
            None
        } else {
            if let Some((_, _, loud)) = self.speech.as_mut() {
                loud.clear();
            }
            Some(self.take_current(true))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn timestamps_stay_exact_past_a_hundred_hours() {
        // 300 hours of 48 kHz frames: the u64 product frames * 1e9 would have wrapped.
        let frames = 300 * 3600 * INTERNAL_RATE as u64;
        assert_eq!(frames_to_ns(frames), 300 * 3600 * NS_PER_S);
        assert_eq!(ns_to_frames(300 * 3600 * NS_PER_S), frames);
        assert_eq!(
            frames_to_ns(u64::MAX),
            u64::MAX,
            "saturates instead of wrapping"
        );
    }

    #[test]
    fn streams_200_hours_a_week_and_a_year_old_keep_cutting_in_place() {
        let year_frames = 366 * 24 * 3600 * INTERNAL_RATE as u64;
        assert_eq!(ns_to_frames(frames_to_ns(year_frames)), year_frames);
        for hours in [200, 7 * 24, 366 * 24] {
            let start = hours * 3600 * NS_PER_S;
            let mut f = Fragmenter::new(1000, 40);
            let second = vec![1i16; INTERNAL_RATE as usize * INTERNAL_CHANNELS as usize];
            assert_eq!(f.push(start, &second).len(), 1, "{hours} h");
            let out = f.push(start + NS_PER_S, &second);
            assert_eq!(out.len(), 1, "{hours} h");
            assert_eq!(out[0].start_ns, start + NS_PER_S, "{hours} h");
            assert_eq!(out[0].duration_ns, NS_PER_S, "{hours} h");
            assert_eq!(f.stats().gap_frames_filled, 0, "{hours} h");
        }
    }

    fn buf(frames: usize, val: i16) -> Vec<i16> {
        vec![val; frames * 2]
    }

    #[test]
    fn cuts_exact_fragments_from_arbitrary_buffer_sizes() {
        let mut f = Fragmenter::new(1000, 40);
        let mut out = Vec::new();
        let mut rt = 5_000 * MS;
        // 1023-frame buffers (odd, like an AAC decoder's 1024 minus one) for 3.5 s.
        let mut sent = 0;
        while sent < 48_000 * 35 / 10 {
            let n = 1023.min(48_000 * 35 / 10 - sent);
            out.extend(f.push(rt, &buf(n, 1)));
            rt += frames_to_ns(n as u64);
            sent += n;
        }
        assert_eq!(out.len(), 3);
        for (i, fr) in out.iter().enumerate() {
            assert_eq!(fr.sequence, i as u64);
            assert_eq!(fr.frames(), 48_000);
            assert_eq!(fr.start_ns, 5_000 * MS + i as u64 * 1000 * MS);
            assert_eq!(fr.duration_ns, 1000 * MS);
            assert!(!fr.partial);
        }
        let last = f.flush().expect("half a second left");
        assert!(last.partial);
        assert_eq!(last.frames(), 24_000);
        assert_eq!(last.start_ns, 8_000 * MS);
        assert_eq!(last.duration_ns, 500 * MS);
        assert!(f.flush().is_none());
    }

    #[test]
    fn small_jitter_keeps_counting_and_reports_drift() {
        let mut f = Fragmenter::new(1000, 40);
        let mut out = f.push(0, &buf(24_000, 1));
        // 20 ms late, within tolerance: no silence inserted, stamping continues.
        out.extend(f.push(520 * MS, &buf(24_000, 1)));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start_ns, 0);
        assert_eq!(out[0].max_drift_ns, 20 * MS);
        assert_eq!(f.stats(), ResyncStats::default());
    }

    #[test]
    fn gap_is_filled_with_silence_at_the_right_place() {
        let mut f = Fragmenter::new(1000, 40);
        let mut out = f.push(0, &buf(24_000, 7)); // 0..500 ms
        out.extend(f.push(700 * MS, &buf(24_000, 9))); // 700..1200 ms after a 200 ms gap
        assert_eq!(out.len(), 1);
        let pcm = &out[0].pcm;
        assert_eq!(pcm[0], 7);
        assert_eq!(pcm[2 * 23_999], 7);
        assert_eq!(pcm[2 * 24_000], 0, "gap starts at 500 ms");
        assert_eq!(pcm[2 * 33_599], 0, "gap ends before 700 ms");
        assert_eq!(pcm[2 * 33_600], 9, "input resumes at 700 ms");
        assert_eq!(f.stats().gap_frames_filled, 9_600);
        // The next fragment continues at exactly 1 s.
        out.extend(f.push(1200 * MS, &buf(48_000, 9)));
        assert_eq!(out[1].start_ns, 1000 * MS);
    }

    #[test]
    fn a_flush_mid_slot_keeps_the_grid() {
        let mut f = Fragmenter::new(1000, 40);
        let mut out = f.push(0, &buf(12_000, 1)); // 0..250 ms, then the input goes quiet
        let early = f.flush().expect("a quarter of a fragment");
        assert_eq!((early.start_ns, early.duration_ns), (0, 250 * MS));
        assert!(early.partial);
        // The input resumes: the next fragment completes the slot (250..1000 ms), then the
        // grid goes on at whole seconds.
        out.extend(f.push(250 * MS, &buf(48_000 * 2, 2)));
        let spans: Vec<(u64, u64, u64)> = out
            .iter()
            .map(|fr| (fr.sequence, fr.start_ns / MS, fr.duration_ns / MS))
            .collect();
        assert_eq!(spans, vec![(1, 250, 750), (2, 1000, 1000)]);
        // What came after the last boundary (2000..2250 ms) on a flush; then nothing is held.
        assert_eq!(f.flush().map(|fr| fr.duration_ns / MS), Some(250));
        assert!(f.flush().is_none());
    }

    #[test]
    fn a_shortened_first_fragment_shifts_the_grid_once() {
        let mut f = Fragmenter::new(1000, 40);
        f.shorten_first(400);
        let out = f.push(2_000 * MS, &buf(48_000 * 3, 1));
        f.shorten_first(100); // too late: the grid is fixed
        let out2 = f.push(5_000 * MS, &buf(48_000, 1));
        let spans: Vec<(u64, u64)> = out
            .iter()
            .chain(&out2)
            .map(|fr| ((fr.start_ns - 2_000 * MS) / MS, fr.duration_ns / MS))
            .collect();
        assert_eq!(
            spans,
            vec![(0, 600), (600, 1000), (1600, 1000), (2600, 1000)]
        );
        // A whole fragment is no shortening.
        let mut g = Fragmenter::new(1000, 40);
        g.shorten_first(1000);
        assert_eq!(g.push(0, &buf(48_000, 1))[0].duration_ns, 1000 * MS);
    }

    #[test]
    fn overlap_is_dropped() {
        let mut f = Fragmenter::new(1000, 40);
        let mut out = f.push(0, &buf(24_000, 7)); // 0..500
        out.extend(f.push(400 * MS, &buf(24_000, 9))); // claims 400..900: first 100 ms overlap
        assert!(out.is_empty());
        assert_eq!(f.stats().overlap_frames_dropped, 4_800);
        out.extend(f.push(900 * MS, &buf(4_800, 9)));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pcm[2 * 24_000], 9);
    }
    /// Read speech in miniature: 300 ms "words" (a 220 Hz tone) 80 ms apart over a faint
    /// noise floor, a 400 ms pause after every `phrase` words; returns the audio and each
    /// word's span in frames.
    fn speech(words: usize, phrase: usize) -> (Vec<i16>, Vec<(usize, usize)>) {
        let (word, gap, pause) = (14_400, 3_840, 19_200);
        let mut pcm = Vec::new();
        let mut spans = Vec::new();
        let mut noise = 12345u32;
        for w in 0..words {
            let start = pcm.len() / 2;
            for i in 0..word {
                let v =
                    (8000.0 * (i as f64 * 220.0 * std::f64::consts::TAU / 48_000.0).sin()) as i16;
                pcm.extend([v, v]);
            }
            spans.push((start, start + word));
            let quiet = if (w + 1) % phrase == 0 { pause } else { gap };
            for _ in 0..quiet {
                noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let v = ((noise >> 16) % 61) as i16 - 30;
                pcm.extend([v, v]);
            }
        }
        (pcm, spans)
    }

    /// Feeds `pcm` in 1024-frame buffers, flushes, and returns the fragments.
    fn cut_all(mut f: Fragmenter, pcm: &[i16]) -> Vec<Fragment> {
        let mut out = Vec::new();
        let mut at = 0;
        for chunk in pcm.chunks(2048) {
            out.extend(f.push(frames_to_ns(at as u64), chunk));
            at += chunk.len() / 2;
        }
        out.extend(f.flush());
        out
    }

    /// Boundaries (frames from the start) that fall inside a word.
    fn words_cut(frags: &[Fragment], spans: &[(usize, usize)]) -> Vec<usize> {
        let mut at = 0;
        let mut cut = Vec::new();
        for fr in &frags[..frags.len() - 1] {
            at += fr.frames();
            if spans.iter().any(|&(s, e)| s < at && at < e) {
                cut.push(at);
            }
        }
        cut
    }

    fn check_tiling(frags: &[Fragment], total_frames: usize) {
        let mut at = 0u64;
        for (i, fr) in frags.iter().enumerate() {
            assert_eq!(fr.sequence, i as u64);
            assert_eq!(
                fr.start_ns,
                frames_to_ns(at),
                "fragment {i} starts where the last ended"
            );
            at += fr.frames() as u64;
            assert_eq!(fr.duration_ns, frames_to_ns(at) - fr.start_ns);
        }
        assert_eq!(at as usize, total_frames, "every frame is in one fragment");
    }

    const SPEECH: Boundaries = Boundaries::Speech {
        min_ms: 1500,
        pause_ms: 200,
    };

    #[test]
    fn speech_boundaries_fall_in_pauses_never_inside_words() {
        let (pcm, spans) = speech(40, 5);
        let frags = cut_all(Fragmenter::new(3000, 40).with_boundaries(SPEECH), &pcm);
        check_tiling(&frags, pcm.len() / 2);
        assert_eq!(words_cut(&frags, &spans), Vec::<usize>::new());
        for fr in &frags[..frags.len() - 1] {
            let ms = fr.duration_ns / MS;
            assert!((1500..=3000).contains(&ms), "fragment of {ms} ms");
            assert_eq!(fr.frames() % BLOCK_FRAMES, 0, "whole milliseconds");
        }
        // Phrases of five words and a pause (2.22 s): each fragment is one phrase.
        let lens: Vec<u64> = frags.iter().map(|f| f.duration_ns / MS).collect();
        assert!(
            lens[1..lens.len() - 1]
                .iter()
                .all(|&l| l.abs_diff(2220) <= 20),
            "{lens:?}"
        );
        // The same audio on the grid cuts words: the check above can fail.
        let grid = cut_all(Fragmenter::new(3000, 40), &pcm);
        assert!(!words_cut(&grid, &spans).is_empty());
    }

    #[test]
    fn speech_without_pauses_is_cut_at_its_maximum_between_words() {
        // No pause of 200 ms ever: only the 80 ms gaps between words.
        let (pcm, spans) = speech(40, 1000);
        let frags = cut_all(Fragmenter::new(3000, 40).with_boundaries(SPEECH), &pcm);
        check_tiling(&frags, pcm.len() / 2);
        assert_eq!(words_cut(&frags, &spans), Vec::<usize>::new());
        assert!(frags[..frags.len() - 1]
            .iter()
            .all(|f| (1500..=3000).contains(&(f.duration_ns / MS))));
    }

    #[test]
    fn sound_that_never_goes_quiet_is_cut_at_its_quietest() {
        // A tone whose loudness dips once a second (at 0.5 s, 1.5 s, ...).
        let frames = 48_000 * 10;
        let pcm: Vec<i16> = (0..frames)
            .flat_map(|i| {
                let t = i as f64 / 48_000.0;
                let env = 0.55 + 0.45 * (t * std::f64::consts::TAU).cos();
                let v = (9000.0 * env * (t * 330.0 * std::f64::consts::TAU).sin()) as i16;
                [v, v]
            })
            .collect();
        let frags = cut_all(Fragmenter::new(3000, 40).with_boundaries(SPEECH), &pcm);
        check_tiling(&frags, frames);
        let mut at = 0;
        for fr in &frags[..frags.len() - 1] {
            at += fr.frames();
            let phase = (at as f64 / 48_000.0).fract();
            assert!(
                (phase - 0.5).abs() < 0.05,
                "cut at {at} frames, {phase} into the cycle"
            );
        }
    }

    #[test]
    fn a_timestamp_jump_with_speech_boundaries_sends_what_is_held() {
        let (pcm, _) = speech(4, 1000);
        let mut f = Fragmenter::new(3000, 40).with_boundaries(SPEECH);
        // 1.5 s of words, then a jump of an hour: what was held goes out as it is.
        let mut out = f.push(0, &pcm[..2 * 72_000]);
        out.extend(f.push(3600 * NS_PER_S, &buf(48_000, 0)));
        assert_eq!(f.stats().timeline_jumps, 1);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].start_ns, out[0].duration_ns), (0, 1500 * MS));
        assert!(out[0].partial);
        // The new timeline starts at the jump.
        out.extend(f.push(3601 * NS_PER_S, &buf(48_000 * 3, 0)));
        assert_eq!(out[1].start_ns, 3600 * NS_PER_S);
        assert_eq!(out[1].duration_ns, 3000 * MS);
    }

    #[test]
    fn silence_gets_fragments_of_the_longest_length() {
        let frags = cut_all(
            Fragmenter::new(3000, 40).with_boundaries(SPEECH),
            &buf(48_000 * 9 + 100, 0),
        );
        let lens: Vec<u64> = frags.iter().map(|f| f.duration_ns / MS).collect();
        assert_eq!(lens, vec![3000, 3000, 3000, 2]);
        // No grid to shift.
        let mut f = Fragmenter::new(3000, 40).with_boundaries(SPEECH);
        f.shorten_first(1000);
        assert_eq!(f.push(0, &buf(48_000 * 3, 0))[0].duration_ns, 3000 * MS);
    }
}
