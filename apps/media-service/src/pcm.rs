//! PCM helpers: the fixed internal format, 48 kHz <-> 16 kHz conversion, channel mixing,
//! length fitting and WAV artifacts.
//!
//! The worker decodes every input to [`INTERNAL_RATE`] stereo S16 so that the STS format
//! (16 kHz mono) is an exact integer ratio (3:1) away: conversion (the resampler both
//! services share, `livedub_audio::resample`) is sample-exact and centred, with no drift or
//! shift between the original and the dubbed timelines.

use std::path::Path;

/// Sample rate of the audio the worker handles internally (decoded input, appsrc output).
pub const INTERNAL_RATE: u32 = 48_000;
/// Channels of the internal audio.
pub const INTERNAL_CHANNELS: u16 = 2;
/// Sample rate sent to the STS.
pub const STS_RATE: u32 = 16_000;
/// Channels sent to the STS.
pub const STS_CHANNELS: u16 = 1;
/// Interleaved stereo 48 kHz -> mono 16 kHz (average of the channels, then the shared
/// band-limited resampler of `livedub_audio`, the one the STS uses). The output has exactly
/// `frames / 3` samples (`frames` rounded down to a multiple of 3).
pub fn internal_to_sts(stereo48: &[i16]) -> Vec<i16> {
    let f = livedub_audio::i16_to_f32(stereo48);
    let mono = livedub_audio::deinterleave_mix(&f, INTERNAL_CHANNELS as usize);
    let frames = mono.len() / (INTERNAL_RATE / STS_RATE) as usize;
    let mut out = resample_or_silence(&mono, INTERNAL_RATE, STS_RATE);
    out.resize(frames, 0.0);
    livedub_audio::f32_to_i16(&out)
}

/// Mono 16 kHz -> interleaved stereo 48 kHz (the shared resampler, then the same signal on
/// both channels). The output has exactly `3 * mono16.len()` frames.
pub fn sts_to_internal(mono16: &[i16]) -> Vec<i16> {
    let f = livedub_audio::i16_to_f32(mono16);
    let mut up = resample_or_silence(&f, STS_RATE, INTERNAL_RATE);
    up.resize(mono16.len() * (INTERNAL_RATE / STS_RATE) as usize, 0.0);
    livedub_audio::f32_to_i16(&livedub_audio::upmix(&up, INTERNAL_CHANNELS as usize))
}

/// The two fixed rates above always resample; silence keeps lengths if that ever changed.
fn resample_or_silence(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    livedub_audio::resample(x, from, to).unwrap_or_else(|_| Vec::new())
}

/// Convert interleaved audio of any channel count to mono by averaging.
pub fn to_mono(samples: &[i16], channels: u16) -> Vec<i16> {
    let ch = channels.max(1) as usize;
    samples
        .chunks_exact(ch)
        .map(|f| (f.iter().map(|&s| s as i32).sum::<i32>() / ch as i32) as i16)
        .collect()
}

/// Pads with silence or cuts so that `samples` is exactly `len` long. Returns how many
/// samples were added (positive) or removed (negative), for the logs.
pub fn fit_len(samples: &mut Vec<i16>, len: usize) -> isize {
    let diff = len as isize - samples.len() as isize;
    samples.resize(len, 0);
    diff
}

/// Writes interleaved S16 PCM as a WAV file.
pub fn write_wav(
    path: &Path,
    samples: &[i16],
    rate: u32,
    channels: u16,
) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    {
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w16.write_sample(s);
        }
        w16.flush()?;
    }
    w.finalize()
}

/// Root-mean-square level of interleaved samples (0 for empty input).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / samples.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine48_stereo(freq: f64, frames: usize, amp: f64) -> Vec<i16> {
        (0..frames)
            .flat_map(|i| {
                let v =
                    (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 48_000.0).sin()) as i16;
                [v, v]
            })
            .collect()
    }

    #[test]
    fn down_then_up_keeps_lengths_exact() {
        let x = sine48_stereo(440.0, 48_000 * 6, 10_000.0);
        let d = internal_to_sts(&x);
        assert_eq!(d.len(), 16_000 * 6);
        let u = sts_to_internal(&d);
        assert_eq!(u.len(), x.len());
    }

    #[test]
    fn passband_tone_survives_and_stopband_tone_is_removed() {
        let pass = internal_to_sts(&sine48_stereo(1000.0, 48_000, 10_000.0));
        let stop = internal_to_sts(&sine48_stereo(12_000.0, 48_000, 10_000.0));
        // 10000 amplitude sine has RMS ~7071.
        let p = rms(&pass[200..pass.len() - 200]);
        let s = rms(&stop[200..stop.len() - 200]);
        assert!((p - 7071.0).abs() < 300.0, "pass-band RMS {p}");
        assert!(
            s < 200.0,
            "12 kHz must be filtered before decimation, RMS {s}"
        );
    }

    #[test]
    fn upsampled_tone_keeps_level_and_has_no_delay() {
        let x = sine48_stereo(500.0, 48_000, 8_000.0);
        let back = sts_to_internal(&internal_to_sts(&x));
        let mid = 24_000 * 2;
        // Same phase at the same index: the filters are centred, no timeline shift.
        for i in (mid..mid + 200).step_by(2) {
            assert!(
                (back[i] as i32 - x[i] as i32).abs() < 400,
                "sample {i}: {} vs {}",
                back[i],
                x[i]
            );
        }
    }

    #[test]
    fn fit_len_pads_and_cuts() {
        let mut v = vec![1i16; 10];
        assert_eq!(fit_len(&mut v, 12), 2);
        assert_eq!(v, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
        assert_eq!(fit_len(&mut v, 4), -8);
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn wav_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        write_wav(&p, &[1, -2, 3, -4], 16_000, 2).unwrap();
        let r = hound::WavReader::open(&p).unwrap();
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.spec().sample_rate, 16_000);
        let s: Vec<i16> = r.into_samples::<i16>().map(|s| s.unwrap()).collect();
        assert_eq!(s, [1, -2, 3, -4]);
    }
}
