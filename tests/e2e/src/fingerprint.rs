//! Spectral audio fingerprints (the Philips / chromaprint family) to tell, segment by
//! segment, whether output audio *is* the input audio (fallback) or something else
//! (dubbed).
//!
//! Audio (mono, [`SAMPLE_RATE`]) is cut into Hann-windowed FFT frames; each frame's energy
//! is summed into [`BANDS`] log-spaced bands; each frame gets a 32-bit hash whose bit `b`
//! says whether the energy difference between bands `b` and `b+1` grew or shrank since
//! the previous frame. Those signs survive AAC re-encoding, resampling and gain changes,
//! so two renditions of the same audio differ in few bits, while unrelated audio differs
//! in about half of them. Comparisons only count frames where the *reference* has sound:
//! in silence the bits are noise and would make identical audio look different.

use rustfft::{num_complex::Complex, FftPlanner};

/// Sample rate the fingerprinter expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// FFT frame length in samples (128 ms).
pub const FRAME: usize = 2048;
/// Hop between frames in samples (32 ms).
pub const HOP: usize = 512;
/// Number of bands; hashes have `BANDS - 1` bits.
pub const BANDS: usize = 33;
const LOW_HZ: f64 = 300.0;
const HIGH_HZ: f64 = 4000.0;
/// Band floor below the frame's strongest band, in natural-log energy units (30 dB).
const BAND_FLOOR_LN: f32 = 6.9;
/// A frame counts as sound when it is above this level (dBFS) ...
const ABS_FLOOR_DB: f32 = -50.0;
/// ... and not more than this far below the loudest frame of the reference.
const REL_FLOOR_DB: f32 = 35.0;

/// Fingerprint of one audio signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// One hash per frame.
    pub hashes: Vec<u32>,
    /// Frame level in dBFS, used to skip silent frames.
    pub level_db: Vec<f32>,
    /// Per frame, the hash bits whose bands carried signal (above the band floor, now
    /// or in the previous frame). Bits outside it are constant and say nothing.
    pub active: Vec<u32>,
}

/// Result of comparing a stretch of two fingerprints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Fraction of differing hash bits over the compared frames, counting the bits that
    /// carry signal on either side (0 = same, ~0.5 = unrelated).
    pub bit_error_rate: f64,
    /// How many frames were compared (frames with sound in the reference).
    pub frames: usize,
}

impl Fingerprint {
    /// Seconds between two frames.
    pub const fn hop_seconds() -> f64 {
        HOP as f64 / SAMPLE_RATE as f64
    }

    /// Computes the fingerprint of mono samples in [-1, 1] at [`SAMPLE_RATE`].
    pub fn compute(samples: &[f32]) -> Self {
        if samples.len() < FRAME {
            return Fingerprint {
                hashes: Vec::new(),
                level_db: Vec::new(),
                active: Vec::new(),
            };
        }
        let mut planner = FftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(FRAME);
        let window: Vec<f32> = (0..FRAME)
            .map(|i| {
                0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / (FRAME as f32 - 1.0)).cos()
            })
            .collect();
        // Band edges as FFT bin indices, log-spaced like the ear's resolution.
        let bin_hz = SAMPLE_RATE as f64 / FRAME as f64;
        let edges: Vec<usize> = (0..=BANDS)
            .map(|b| {
                let hz = LOW_HZ * (HIGH_HZ / LOW_HZ).powf(b as f64 / BANDS as f64);
                (hz / bin_hz).round() as usize
            })
            .collect();
        let frames = (samples.len() - FRAME) / HOP + 1;
        let mut hashes = Vec::with_capacity(frames);
        let mut level_db = Vec::with_capacity(frames);
        let mut active = Vec::with_capacity(frames);
        let mut previous: Option<(Vec<f32>, Vec<bool>)> = None;
        let mut buf = vec![Complex::new(0.0f32, 0.0); FRAME];
        for f in 0..frames {
            let chunk = &samples[f * HOP..f * HOP + FRAME];
            let mean_square = chunk.iter().map(|s| s * s).sum::<f32>() / FRAME as f32;
            level_db.push(10.0 * (mean_square + 1e-12).log10());
            for (slot, (s, w)) in buf.iter_mut().zip(chunk.iter().zip(&window)) {
                *slot = Complex::new(s * w, 0.0);
            }
            fft.process(&mut buf);
            let mut bands: Vec<f32> = edges
                .windows(2)
                .map(|e| {
                    let (lo, hi) = (e[0], e[1].max(e[0] + 1));
                    let energy: f32 = buf[lo..hi].iter().map(|c| c.norm_sqr()).sum();
                    (energy + 1e-9).ln()
                })
                .collect();
            // Bands far below the frame's strongest hold only noise (or codec artefacts):
            // clamp them to a common floor so their bits are stable (0) instead of random.
            let strongest = bands.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let floor = strongest - BAND_FLOOR_LN;
            let above: Vec<bool> = bands.iter().map(|&b| b > floor).collect();
            for b in &mut bands {
                *b = b.max(floor);
            }
            let mut hash = 0u32;
            let mut live = 0u32;
            if let Some((prev, prev_above)) = &previous {
                for b in 0..BANDS - 1 {
                    let now = bands[b] - bands[b + 1];
                    let before = prev[b] - prev[b + 1];
                    if now - before > 0.0 {
                        hash |= 1 << b;
                    }
                    if above[b] || above[b + 1] || prev_above[b] || prev_above[b + 1] {
                        live |= 1 << b;
                    }
                }
            }
            hashes.push(hash);
            active.push(live);
            previous = Some((bands, above));
        }
        Fingerprint {
            hashes,
            level_db,
            active,
        }
    }

    /// Frames of this fingerprint (as the reference) that carry sound.
    fn sound_mask(&self) -> Vec<bool> {
        let loudest = self
            .level_db
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        self.level_db
            .iter()
            .map(|&l| l > ABS_FLOOR_DB && l > loudest - REL_FLOOR_DB)
            .collect()
    }

    /// Compares reference frames `range` of `self` with `other` shifted by `offset`
    /// frames (other's frame = reference frame + offset). The first frame of each side
    /// has no predecessor and is skipped.
    pub fn compare(
        &self,
        other: &Fingerprint,
        offset: isize,
        range: std::ops::Range<usize>,
    ) -> Comparison {
        let mask = self.sound_mask();
        let mut differing = 0u64;
        let mut counted = 0u64;
        let mut frames = 0usize;
        // `r` indexes four parallel arrays and, shifted, the other fingerprint.
        #[allow(clippy::needless_range_loop)]
        for r in range.start.max(1)..range.end.min(self.hashes.len()) {
            let o = r as isize + offset;
            if o < 1 || o as usize >= other.hashes.len() || !mask[r] {
                continue;
            }
            let o = o as usize;
            let live = self.active[r] | other.active[o];
            differing += u64::from(((self.hashes[r] ^ other.hashes[o]) & live).count_ones());
            counted += u64::from(live.count_ones());
            frames += 1;
        }
        Comparison {
            bit_error_rate: if counted == 0 {
                1.0
            } else {
                differing as f64 / counted as f64
            },
            frames,
        }
    }

    /// The shift (in frames, within ±`max_shift`) at which `other` best matches the whole
    /// of `self`, with that comparison. Used to line output audio up with the input.
    pub fn best_offset(&self, other: &Fingerprint, max_shift: usize) -> (isize, Comparison) {
        let mut best = (0isize, self.compare(other, 0, 0..self.hashes.len()));
        for shift in -(max_shift as isize)..=(max_shift as isize) {
            let c = self.compare(other, shift, 0..self.hashes.len());
            // Demand a reasonable overlap so a tiny overlap at an extreme shift cannot win.
            if c.frames * 2 >= best.1.frames && c.bit_error_rate < best.1.bit_error_rate {
                best = (shift, c);
            }
        }
        best
    }

    /// Compares the reference seconds `[start_s, end_s)` with `other` at `offset` frames.
    pub fn compare_seconds(
        &self,
        other: &Fingerprint,
        offset: isize,
        start_s: f64,
        end_s: f64,
    ) -> Comparison {
        let hop = Self::hop_seconds();
        let first = (start_s / hop).ceil().max(0.0) as usize;
        // The frame must end before end_s.
        let last = ((end_s - FRAME as f64 / SAMPLE_RATE as f64) / hop)
            .floor()
            .max(0.0) as usize
            + 1;
        self.compare(other, offset, first..last.max(first))
    }
}

/// Converts little-endian s16 PCM bytes to samples in [-1, 1].
pub fn pcm_s16le_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic "speech-like" signal: bursts of harmonic tones with changing pitch.
    fn babble(seed: u64, seconds: f32) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 10_000) as f32 / 10_000.0
        };
        let n = (seconds * SAMPLE_RATE as f32) as usize;
        let mut out = vec![0.0f32; n];
        let syllable = (0.18 * SAMPLE_RATE as f32) as usize;
        let mut start = 0;
        while start < n {
            let f0 = 100.0 + 200.0 * next();
            let formant = 500.0 + 2500.0 * next();
            let amp = 0.1 + 0.3 * next();
            // `i` is both the output index and the time base of the tone.
            #[allow(clippy::needless_range_loop)]
            for i in start..(start + syllable).min(n) {
                let t = i as f32 / SAMPLE_RATE as f32;
                let env = ((i - start) as f32 / syllable as f32 * std::f32::consts::PI).sin();
                // Breath noise under the voice, as in real speech: every band gets some energy.
                let mut v = 0.4 * (next() - 0.5);
                for h in 1..8 {
                    let f = f0 * h as f32;
                    let weight = 1.0 / (1.0 + ((f - formant) / 400.0).powi(2));
                    v += weight * (2.0 * std::f32::consts::PI * f * t).sin();
                }
                out[i] = amp * env * v * 0.3;
            }
            // Short pauses between syllables, like speech.
            start += syllable + (0.05 * SAMPLE_RATE as f32 * next()) as usize;
        }
        out
    }

    fn noisy(signal: &[f32], gain: f32, noise: f32) -> Vec<f32> {
        let mut state = 12345u32;
        signal
            .iter()
            .map(|s| {
                state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                let n = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                s * gain + n * noise
            })
            .collect()
    }

    #[test]
    fn same_audio_matches_through_gain_and_noise() {
        let a = babble(1, 6.0);
        let b = noisy(&a, 0.7, 0.002);
        let (fa, fb) = (Fingerprint::compute(&a), Fingerprint::compute(&b));
        let c = fa.compare(&fb, 0, 0..fa.hashes.len());
        assert!(c.frames > 100, "{c:?}");
        assert!(c.bit_error_rate < 0.15, "{c:?}");
    }

    #[test]
    fn different_audio_differs() {
        let fa = Fingerprint::compute(&babble(1, 6.0));
        let fb = Fingerprint::compute(&babble(2, 6.0));
        let c = fa.compare(&fb, 0, 0..fa.hashes.len());
        assert!(c.bit_error_rate > 0.35, "{c:?}");
    }

    #[test]
    fn silence_in_the_reference_is_not_compared() {
        let mut a = babble(3, 2.0);
        a.extend(vec![0.0; SAMPLE_RATE as usize * 2]);
        let fa = Fingerprint::compute(&a);
        let silent_part = fa.compare_seconds(&fa, 0, 2.2, 4.0);
        assert_eq!(silent_part.frames, 0);
        assert_eq!(
            silent_part.bit_error_rate, 1.0,
            "nothing compared means no evidence of a match"
        );
    }

    #[test]
    fn finds_the_shift_and_compares_by_seconds() {
        let a = babble(4, 8.0);
        // Output delayed by 5 hops (160 ms), e.g. encoder priming plus a late start.
        let mut b = vec![0.0f32; 5 * HOP];
        b.extend(noisy(&a, 1.0, 0.001));
        let (fa, fb) = (Fingerprint::compute(&a), Fingerprint::compute(&b));
        let (offset, c) = fa.best_offset(&fb, 20);
        assert_eq!(offset, 5);
        assert!(c.bit_error_rate < 0.1, "{c:?}");
        // Replace seconds 4..8 of the output with other audio: first half matches, second differs.
        let mut mixed = b.clone();
        let other = babble(9, 4.0);
        let from = 5 * HOP + 4 * SAMPLE_RATE as usize;
        for (i, s) in other.iter().enumerate() {
            if from + i < mixed.len() {
                mixed[from + i] = *s;
            }
        }
        let fm = Fingerprint::compute(&mixed);
        let first = fa.compare_seconds(&fm, offset, 0.0, 4.0);
        let second = fa.compare_seconds(&fm, offset, 4.0, 8.0);
        assert!(first.bit_error_rate < 0.15, "{first:?}");
        assert!(second.bit_error_rate > 0.35, "{second:?}");
    }

    #[test]
    fn short_input_gives_empty_fingerprint_and_pcm_conversion() {
        assert!(Fingerprint::compute(&[0.0; 100]).hashes.is_empty());
        assert_eq!(
            pcm_s16le_to_f32(&[0, 0x80, 0xff, 0x7f]),
            vec![-1.0, 32767.0 / 32768.0]
        );
    }
}
