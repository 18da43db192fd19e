//! How a dubbed fragment becomes output audio (MIX_MODE, DUCK_DB).
//!
//! The mix runs on the two PCM spans the worker already holds for a fragment — the original
//! (internal format, exactly the fragment's frames) and the dubbed answer converted to the
//! same format and length — so it is sample-accurate on the stream's timeline and changes
//! nothing in the timing: the result is pushed with the fragment's PTS like before. The DSP
//! (voice activity, hold, look-ahead, ramps) is [`livedub_audio::duck`].

use livedub_audio::DuckParams;
use serde::Serialize;

use crate::pcm::{INTERNAL_CHANNELS, INTERNAL_RATE};

/// Default depth of the duck in voice-over mode (dB).
pub const DEFAULT_DUCK_DB: f32 = livedub_audio::duck::DEFAULT_DUCK_DB;
/// Deepest accepted duck (dB).
pub const MIN_DUCK_DB: f32 = -60.0;

/// How dubbed audio is combined with the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MixMode {
    /// The original stays, lowered by DUCK_DB while the dubbed voice speaks (music and
    /// ambience continue).
    VoiceOver,
    /// The dubbed audio replaces the original (a clean dub; the background is lost).
    Replace,
}

impl MixMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VoiceOver => "voice-over",
            Self::Replace => "replace",
        }
    }
}

/// The mix of a worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixConfig {
    /// Mode.
    pub mode: MixMode,
    /// Depth of the duck in voice-over mode (dB, <= 0).
    pub duck_db: f32,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            mode: MixMode::VoiceOver,
            duck_db: DEFAULT_DUCK_DB,
        }
    }
}

impl MixConfig {
    /// Output audio of a dubbed fragment: `dubbed` as is (replace) or `original` ducked under
    /// it (voice-over). Both are interleaved internal-format PCM of the same span.
    pub fn mix(&self, original: &[i16], dubbed: Vec<i16>) -> Vec<i16> {
        match self.mode {
            MixMode::Replace => dubbed,
            MixMode::VoiceOver => livedub_audio::voice_over(
                original,
                &dubbed,
                usize::from(INTERNAL_CHANNELS),
                INTERNAL_RATE,
                &DuckParams::with_depth(self.duck_db),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: usize = INTERNAL_RATE as usize;

    fn stereo_tone(freq: f32, amp: f32, from: usize, to: usize, len: usize) -> Vec<i16> {
        let mut out = vec![0i16; len * 2];
        for f in from..to {
            let v = (amp
                * 32767.0
                * (2.0 * std::f32::consts::PI * freq * f as f32 / INTERNAL_RATE as f32).sin())
            .round() as i16;
            out[2 * f] = v;
            out[2 * f + 1] = v;
        }
        out
    }

    /// Level of `freq` (dB of amplitude) in the left channel over frames [from, to).
    fn tone_db(x: &[i16], freq: f32, from: usize, to: usize) -> f32 {
        let w = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(INTERNAL_RATE);
        let (mut s1, mut s2) = (0f64, 0f64);
        for f in from..to {
            let s = f64::from(x[f * 2]) / 32768.0 + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let p = (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).max(1e-30);
        (20.0 * (2.0 * p.sqrt() / (to - from) as f64).log10()) as f32
    }

    /// A 6 s fragment: 440 Hz bed throughout; a 1.2 kHz "voice" from 1 s to 3 s.
    fn fragment() -> (Vec<i16>, Vec<i16>) {
        (
            stereo_tone(440.0, 0.25, 0, 6 * SEC, 6 * SEC),
            stereo_tone(1200.0, 0.25, SEC, 3 * SEC, 6 * SEC),
        )
    }

    #[test]
    fn default_is_voice_over_at_minus_15_db() {
        let c = MixConfig::default();
        assert_eq!(c.mode, MixMode::VoiceOver);
        assert_eq!(c.duck_db, -15.0);
        assert_eq!(c.mode.as_str(), "voice-over");
    }

    #[test]
    fn voice_over_keeps_the_bed_ducked_by_the_depth_only_under_the_voice() {
        let (orig, dub) = fragment();
        for depth in [-15.0f32, -6.0, -25.0] {
            let out = MixConfig {
                mode: MixMode::VoiceOver,
                duck_db: depth,
            }
            .mix(&orig, dub.clone());
            let full = tone_db(&orig, 440.0, 0, 6 * SEC);
            let under = tone_db(&out, 440.0, SEC + SEC / 10, 3 * SEC - SEC / 10);
            assert!(
                (under - full - depth).abs() < 2.0,
                "depth {depth}: {under} vs {full}"
            );
            let tail = tone_db(&out, 440.0, 4 * SEC, 6 * SEC);
            assert!(
                (tail - full).abs() < 0.1,
                "after the voice: {tail} vs {full}"
            );
            let voice = tone_db(&out, 1200.0, SEC + SEC / 10, 3 * SEC - SEC / 10);
            assert!(
                (voice - tone_db(&dub, 1200.0, SEC + SEC / 10, 3 * SEC - SEC / 10)).abs() < 0.2
            );
        }
    }

    #[test]
    fn replace_removes_the_bed() {
        let (orig, dub) = fragment();
        let out = MixConfig {
            mode: MixMode::Replace,
            duck_db: DEFAULT_DUCK_DB,
        }
        .mix(&orig, dub.clone());
        assert_eq!(out, dub);
        let full = tone_db(&orig, 440.0, 0, 6 * SEC);
        let gone = tone_db(&out, 440.0, 0, 6 * SEC);
        assert!(gone < full - 60.0, "{gone} vs {full}");
    }
}
