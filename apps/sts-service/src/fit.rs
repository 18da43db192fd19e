//! Duration fit — policy **"speed-up, compress, pad, else clip"**.
//!
//! Dubbed audio must last exactly the fragment (to the sample at the stream's rate):
//! 1. *speed-up*: the pipeline first re-synthesises faster (TTS rate, up to
//!    TTS_MAX_RATE_WPM / TTS_RATE_WPM) when normal-rate speech is too long;
//! 2. *compress*: what is still too long is time-compressed without changing pitch (WSOLA),
//!    up to TIME_STRETCH_MAX (default 1.5);
//! 3. *pad*: short speech is padded with silence at the end;
//! 4. *else clip*: speech still too long is cut with a 20 ms fade-out and the fragment is
//!    answered `partial` (code SPEECH_TRUNCATED).
//!
//! Leading/trailing silence of the synthesis is trimmed before measuring, so silence is
//! never the reason to speed up, compress or cut.

use livedub_audio::{edit, resample, time_compress};

/// Amplitude under which synthesis edges count as silence (about -50 dBFS).
pub const SILENCE_FLOOR: f32 = 0.003;
/// Fade applied at a cut.
pub const CUT_FADE_MS: u32 = 20;

/// Result of fitting.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Mono samples at the output rate, exactly the target length.
    pub samples: Vec<f32>,
    /// Time-compression factor applied (1.0 = none).
    pub compression: f32,
    /// Whether speech had to be cut.
    pub cut: bool,
}

/// Errors of fitting.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// Resampling failed.
    #[error(transparent)]
    Resample(#[from] livedub_audio::ResampleError),
    /// Compression failed.
    #[error(transparent)]
    Wsola(#[from] livedub_audio::WsolaError),
}

/// Trims leading and trailing samples below [`SILENCE_FLOOR`].
pub fn trim_silence(samples: &[f32]) -> &[f32] {
    let start = samples.iter().position(|s| s.abs() > SILENCE_FLOOR);
    match start {
        None => &[],
        Some(st) => {
            let end = samples
                .iter()
                .rposition(|s| s.abs() > SILENCE_FLOOR)
                .map_or(st, |e| e + 1);
            &samples[st..end]
        }
    }
}

/// Speech duration (seconds) once edge silence is trimmed.
pub fn speech_seconds(samples: &[f32], rate: u32) -> f64 {
    trim_silence(samples).len() as f64 / f64::from(rate)
}

/// Fits mono `speech` at `speech_rate` into exactly `target_frames` at `out_rate`.
pub fn fit_to_duration(
    speech: &[f32],
    speech_rate: u32,
    target_frames: usize,
    out_rate: u32,
    stretch_max: f32,
) -> Result<Fitted, FitError> {
    let trimmed = trim_silence(speech);
    let mut s = resample(trimmed, speech_rate, out_rate)?;
    let mut compression = 1.0;
    if s.len() > target_frames && target_frames > 0 {
        let need = s.len() as f32 / target_frames as f32;
        compression = need.min(stretch_max);
        s = time_compress(&s, out_rate, compression)?;
    }
    let fade = (out_rate * CUT_FADE_MS / 1000) as usize;
    let cut = edit::fit_length(&mut s, target_frames, fade, SILENCE_FLOOR);
    // A tiny fade-in avoids a click if synthesis starts on a non-zero sample.
    edit::fade_in(&mut s, (out_rate / 1000) as usize * 2);
    Ok(Fitted {
        samples: s,
        compression,
        cut,
    })
}

/// Speed factor to ask the TTS for, given the speech length at normal speed.
pub fn speed_for(speech_s: f64, target_s: f64, max_speed: f32) -> f32 {
    if speech_s <= target_s || target_s <= 0.0 {
        1.0
    } else {
        // 5 % margin: rate changes do not scale duration exactly.
        ((speech_s / target_s * 1.05) as f32)
            .min(max_speed)
            .max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(secs: f32, rate: u32) -> Vec<f32> {
        let n = (secs * rate as f32) as usize;
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * 200.0 * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn short_speech_is_padded_exactly() {
        let s = tone(2.0, 22050);
        let f = fit_to_duration(&s, 22050, 96000, 16000, 1.5).unwrap();
        assert_eq!(f.samples.len(), 96000);
        assert!(!f.cut);
        assert_eq!(f.compression, 1.0);
        assert!(
            f.samples[40000..].iter().all(|v| *v == 0.0),
            "padding is silence"
        );
        assert!(livedub_audio::rms(&f.samples[..30000]) > 0.2);
    }

    #[test]
    fn long_speech_is_compressed_within_limit() {
        let s = tone(8.0, 22050); // 8 s into 6 s: factor 1.333 <= 1.5
        let f = fit_to_duration(&s, 22050, 96000, 16000, 1.5).unwrap();
        assert_eq!(f.samples.len(), 96000);
        assert!(!f.cut);
        assert!(
            (f.compression - 8.0 / 6.0).abs() < 0.01,
            "{}",
            f.compression
        );
        assert!(
            livedub_audio::rms(&f.samples[90000..95000]) > 0.2,
            "speech reaches the end"
        );
    }

    #[test]
    fn too_long_speech_is_cut_and_flagged() {
        let s = tone(12.0, 22050); // needs 2.0 > 1.5
        let f = fit_to_duration(&s, 22050, 96000, 16000, 1.5).unwrap();
        assert_eq!(f.samples.len(), 96000);
        assert!(f.cut);
        assert_eq!(f.compression, 1.5);
        assert_eq!(*f.samples.last().unwrap(), 0.0, "faded out");
    }

    #[test]
    fn edge_silence_does_not_count() {
        let mut s = vec![0.0; 22050 * 3];
        s.extend(tone(5.0, 22050));
        s.extend(vec![0.0; 22050 * 3]); // 11 s total, 5 s of speech
        assert!((speech_seconds(&s, 22050) - 5.0).abs() < 0.01);
        let f = fit_to_duration(&s, 22050, 96000, 16000, 1.5).unwrap();
        assert!(!f.cut);
        assert_eq!(f.compression, 1.0);
    }

    #[test]
    fn silence_gives_silence() {
        let f = fit_to_duration(&[0.0; 1000], 22050, 48000, 48000, 1.5).unwrap();
        assert_eq!(f.samples.len(), 48000);
        assert!(f.samples.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn speed_choice() {
        assert_eq!(speed_for(4.0, 6.0, 1.5), 1.0);
        assert!((speed_for(7.0, 6.0, 1.5) - 1.225).abs() < 0.01);
        assert_eq!(speed_for(20.0, 6.0, 1.5), 1.5);
    }
}
