//! Voice-over mixing: the original audio (the "bed") stays, lowered under a voice.
//!
//! The envelope is computed from the voice itself, on the whole fragment at once (the
//! caller has both spans in memory), so it can look ahead:
//!
//! 1. **Voice activity**: RMS of the voice (channels mixed) over [`VOICE_WINDOW_MS`] windows;
//!    a window is active above [`DuckParams::threshold_dbfs`].
//! 2. **Hold and look-ahead**: an active window keeps the duck for `hold_ms` after it (no
//!    pumping between words) and starts it `attack_ms` before it, so the bed is fully down
//!    when the first syllable starts.
//! 3. **Ramps**: the gain (in dB) moves towards its target at most `depth / attack` per
//!    sample going down and `depth / release` going up: linear-in-dB ramps of exactly
//!    `attack_ms` and `release_ms` for a full swing.
//!
//! The output is `bed * gain + voice`, saturated to 16 bits.

/// Default depth of the duck (dB, negative).
pub const DEFAULT_DUCK_DB: f32 = -15.0;
/// Default time to go from full level to the ducked level (ms).
pub const DEFAULT_ATTACK_MS: f32 = 50.0;
/// Default time to come back from the ducked level to full level (ms).
pub const DEFAULT_RELEASE_MS: f32 = 200.0;
/// Default time the duck holds after the voice goes quiet (ms): bridges gaps between words.
pub const DEFAULT_HOLD_MS: f32 = 250.0;
/// Default voice activity threshold (dBFS RMS over a window).
pub const DEFAULT_VOICE_THRESHOLD_DBFS: f32 = -45.0;
/// Window of the voice activity detector (ms).
pub const VOICE_WINDOW_MS: f32 = 10.0;

/// Shape of the duck.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DuckParams {
    /// Gain of the bed while the voice speaks (dB, <= 0).
    pub depth_db: f32,
    /// Ramp down (ms).
    pub attack_ms: f32,
    /// Ramp up (ms).
    pub release_ms: f32,
    /// Duck kept this long after the voice stops (ms).
    pub hold_ms: f32,
    /// Voice present above this RMS level (dBFS).
    pub threshold_dbfs: f32,
}

impl Default for DuckParams {
    fn default() -> Self {
        Self::with_depth(DEFAULT_DUCK_DB)
    }
}

impl DuckParams {
    /// Default ramps and threshold with the given depth (dB).
    pub fn with_depth(depth_db: f32) -> Self {
        Self {
            depth_db: depth_db.min(0.0),
            attack_ms: DEFAULT_ATTACK_MS,
            release_ms: DEFAULT_RELEASE_MS,
            hold_ms: DEFAULT_HOLD_MS,
            threshold_dbfs: DEFAULT_VOICE_THRESHOLD_DBFS,
        }
    }
}

fn ms_to_frames(ms: f32, rate: u32) -> usize {
    (ms * rate as f32 / 1000.0).round().max(1.0) as usize
}

/// Voice activity per frame of interleaved 16-bit `voice` (`channels` per frame).
pub fn voice_activity(voice: &[i16], channels: usize, rate: u32, threshold_dbfs: f32) -> Vec<bool> {
    let channels = channels.max(1);
    let frames = voice.len() / channels;
    let win = ms_to_frames(VOICE_WINDOW_MS, rate);
    // Compare mean squares: (rms / 32768)^2 > 10^(dB/10).
    let thr = 10f64.powf(f64::from(threshold_dbfs) / 10.0) * 32768.0 * 32768.0;
    let mut out = vec![false; frames];
    let mut start = 0;
    while start < frames {
        let end = (start + win).min(frames);
        let mut sum = 0f64;
        for f in start..end {
            let base = f * channels;
            let m: f64 = voice[base..base + channels]
                .iter()
                .map(|&s| f64::from(s))
                .sum::<f64>()
                / channels as f64;
            sum += m * m;
        }
        let active = sum / (end - start) as f64 > thr;
        out[start..end].fill(active);
        start = end;
    }
    out
}

/// Gain of the bed per frame (linear), from the voice activity per frame.
pub fn duck_gains(activity: &[bool], rate: u32, p: &DuckParams) -> Vec<f32> {
    let n = activity.len();
    let depth = p.depth_db.min(0.0);
    if n == 0 || depth == 0.0 {
        return vec![1.0; n];
    }
    let attack = ms_to_frames(p.attack_ms, rate);
    let release = ms_to_frames(p.release_ms, rate);
    let hold = (p.hold_ms.max(0.0) * rate as f32 / 1000.0).round() as usize;
    // Target: ducked from `attack` before each active frame to `hold` after it.
    let mut ducked = vec![false; n];
    let mut last_active: Option<usize> = None;
    for (i, &a) in activity.iter().enumerate() {
        if a {
            last_active = Some(i);
        }
        if last_active.is_some_and(|l| i - l <= hold) {
            ducked[i] = true;
        }
    }
    let mut next_active: Option<usize> = None;
    for i in (0..n).rev() {
        if activity[i] {
            next_active = Some(i);
        }
        if next_active.is_some_and(|nx| nx - i <= attack) {
            ducked[i] = true;
        }
    }
    let down = -depth / attack as f32;
    let up = -depth / release as f32;
    let target = |i: usize| if ducked[i] { depth } else { 0.0 };
    let mut db = target(0);
    let mut gains = Vec::with_capacity(n);
    for i in 0..n {
        let t = target(i);
        if db > t {
            db = (db - down).max(t);
        } else if db < t {
            db = (db + up).min(t);
        }
        gains.push(10f32.powf(db / 20.0));
    }
    gains
}

/// Voice-over mix of two interleaved 16-bit spans of the same length and layout:
/// `bed * gain + voice`, the gain following the voice (see the module doc). A shorter
/// `voice` is taken as silence past its end.
pub fn voice_over(
    bed: &[i16],
    voice: &[i16],
    channels: usize,
    rate: u32,
    p: &DuckParams,
) -> Vec<i16> {
    let channels = channels.max(1);
    let mut v = voice.to_vec();
    v.resize(bed.len(), 0);
    let gains = duck_gains(
        &voice_activity(&v, channels, rate, p.threshold_dbfs),
        rate,
        p,
    );
    bed.iter()
        .zip(&v)
        .enumerate()
        .map(|(i, (&b, &s))| {
            let g = gains[i / channels];
            (f32::from(b) * g + f32::from(s))
                .round()
                .clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    fn tone(freq: f32, amp: f32, frames: usize) -> Vec<f32> {
        (0..frames)
            .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / RATE as f32).sin())
            .collect()
    }

    fn stereo(mono: &[f32]) -> Vec<i16> {
        mono.iter()
            .flat_map(|&s| {
                let v = (s * 32767.0).round() as i16;
                [v, v]
            })
            .collect()
    }

    /// Level (dBFS of a full-scale sine's amplitude) of `freq` in the left channel of
    /// `frames` [from, to), by Goertzel.
    fn tone_db(x: &[i16], freq: f32, from: usize, to: usize) -> f32 {
        let w = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(RATE);
        let (mut s1, mut s2) = (0f64, 0f64);
        for f in from..to {
            let s = f64::from(x[f * 2]) / 32768.0 + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        let amp = 2.0 * power.sqrt() / (to - from) as f64;
        (20.0 * amp.log10()) as f32
    }

    /// 6 s: a 440 Hz tone throughout, a 1.5 kHz "voice" from 2 s to 4 s.
    fn scene() -> (Vec<i16>, Vec<i16>) {
        let n = 6 * RATE as usize;
        let bed = stereo(&tone(440.0, 0.3, n));
        let mut v = vec![0.0; n];
        let burst = tone(1500.0, 0.3, 2 * RATE as usize);
        v[2 * RATE as usize..4 * RATE as usize].copy_from_slice(&burst);
        (bed, stereo(&v))
    }

    #[test]
    fn tone_drops_by_the_depth_only_where_the_voice_speaks() {
        let (bed, voice) = scene();
        let p = DuckParams::with_depth(-15.0);
        let out = voice_over(&bed, &voice, 2, RATE, &p);
        let sec = RATE as usize;
        let before = tone_db(&bed, 440.0, 0, sec);
        // Well before the voice (minus look-ahead): untouched.
        let quiet = tone_db(&out, 440.0, sec / 2, 3 * sec / 2);
        assert!((quiet - before).abs() < 0.1, "{quiet} vs {before}");
        // While the voice speaks: down by the depth (±2 dB, the brief's tolerance).
        let under = tone_db(&out, 440.0, 2 * sec + sec / 10, 4 * sec - sec / 10);
        assert!(
            (under - before + 15.0).abs() < 2.0,
            "ducked {under} vs {before}"
        );
        // After hold + release (250 + 200 ms): back to full level.
        let after = tone_db(&out, 440.0, 4 * sec + sec / 2, 6 * sec);
        assert!((after - before).abs() < 0.1, "{after} vs {before}");
        // The voice itself is passed through at its level.
        let vin = tone_db(&voice, 1500.0, 2 * sec + sec / 10, 4 * sec - sec / 10);
        let vout = tone_db(&out, 1500.0, 2 * sec + sec / 10, 4 * sec - sec / 10);
        assert!((vin - vout).abs() < 0.2, "{vout} vs {vin}");
    }

    #[test]
    fn ramps_have_the_configured_lengths() {
        let mut act = vec![false; 2 * RATE as usize];
        act[24_000..36_000].fill(true);
        let p = DuckParams::with_depth(-20.0);
        let g = duck_gains(&act, RATE, &p);
        let db = |i: usize| 20.0 * g[i].log10();
        let attack = ms_to_frames(p.attack_ms, RATE);
        // Look-ahead: the ramp starts `attack` before the onset and is down at the onset.
        assert!(db(24_000 - attack - 10).abs() < 1e-3);
        assert!(
            (db(24_000 - attack / 2) + 10.0).abs() < 0.5,
            "{}",
            db(24_000 - attack / 2)
        );
        assert!((db(24_000) + 20.0).abs() < 1e-3);
        // Hold, then a 200 ms release.
        let hold_end = 36_000 - 1 + ms_to_frames(p.hold_ms, RATE);
        assert!((db(hold_end) + 20.0).abs() < 1e-3);
        let rel = ms_to_frames(p.release_ms, RATE);
        assert!((db(hold_end + rel / 2) + 10.0).abs() < 0.5);
        assert!(db(hold_end + rel + 10).abs() < 1e-3);
        // No step anywhere: at most depth/attack dB per sample.
        let step = 20.0 / attack as f32 + 1e-3;
        assert!((1..g.len()).all(|i| (db(i) - db(i - 1)).abs() <= step));
    }

    #[test]
    fn silence_leaves_the_bed_untouched_and_zero_depth_is_a_plain_sum() {
        let (bed, _) = scene();
        let silent = vec![0i16; bed.len()];
        assert_eq!(
            voice_over(&bed, &silent, 2, RATE, &DuckParams::default()),
            bed
        );
        // A faint hiss below the threshold does not duck either.
        let hiss: Vec<i16> = (0..bed.len())
            .map(|i| if i % 2 == 0 { 3 } else { -3 })
            .collect();
        let out = voice_over(&bed, &hiss, 2, RATE, &DuckParams::default());
        let d =
            tone_db(&out, 440.0, 0, 6 * RATE as usize) - tone_db(&bed, 440.0, 0, 6 * RATE as usize);
        assert!(d.abs() < 0.1, "{d}");
        let (bed, voice) = scene();
        let out = voice_over(&bed, &voice, 2, RATE, &DuckParams::with_depth(0.0));
        assert!(out.iter().zip(bed.iter().zip(&voice)).all(
            |(&o, (&b, &v))| i32::from(o) == (i32::from(b) + i32::from(v)).clamp(-32768, 32767)
        ));
    }

    #[test]
    fn loud_sums_saturate_instead_of_wrapping() {
        let bed = vec![30_000i16; 9600];
        let voice = vec![30_000i16; 9600];
        let out = voice_over(&bed, &voice, 2, RATE, &DuckParams::with_depth(-1.0));
        assert!(out.iter().all(|&s| s > 30_000));
    }
}
