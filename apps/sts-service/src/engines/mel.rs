//! Whisper's log-mel front end, bit-for-bit in structure with openai/whisper `audio.py`:
//! 16 kHz, n_fft 400, hop 160, periodic Hann, centred STFT with reflect padding, power
//! spectrum without the last frame, Slaney mel filters (librosa defaults), log10 clamped to
//! 8 dB below the maximum, then `(x + 4) / 4`.

use rustfft::{num_complex::Complex, FftPlanner};
use std::sync::Arc;

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
const N_FFT: usize = 400;
const HOP: usize = 160;

/// Reusable log-mel extractor (FFT plan and filters computed once).
pub struct LogMel {
    n_mels: usize,
    filters: Vec<f32>, // n_mels x (N_FFT/2+1)
    window: Vec<f32>,
    fft: Arc<dyn rustfft::Fft<f32>>,
}

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Slaney-normalised mel filterbank (librosa.filters.mel with htk=False, norm="slaney").
fn mel_filters(n_mels: usize) -> Vec<f32> {
    let n_freqs = N_FFT / 2 + 1;
    let fftfreqs: Vec<f64> = (0..n_freqs)
        .map(|k| k as f64 * f64::from(SAMPLE_RATE) / N_FFT as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(f64::from(SAMPLE_RATE) / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0f32; n_mels * n_freqs];
    for i in 0..n_mels {
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i]);
            let upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1]);
            let v = lower.min(upper).max(0.0) * enorm;
            w[i * n_freqs + k] = v as f32;
        }
    }
    w
}

impl LogMel {
    /// Extractor for `n_mels` bands (80 for tiny/base/small, 128 for large-v3).
    pub fn new(n_mels: usize) -> Self {
        let window = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / N_FFT as f32).cos())
            .collect();
        Self {
            n_mels,
            filters: mel_filters(n_mels),
            window,
            fft: FftPlanner::new().plan_fft_forward(N_FFT),
        }
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Features of 16 kHz mono `audio` zero-padded (or cut) to `window_samples`:
    /// row-major `[n_mels, window_samples / 160]`.
    pub fn compute(&self, audio: &[f32], window_samples: usize) -> Vec<f32> {
        let mut x = vec![0f32; window_samples];
        let n = audio.len().min(window_samples);
        x[..n].copy_from_slice(&audio[..n]);
        let frames = window_samples / HOP; // the centred STFT has one more; Whisper drops it
        let pad = N_FFT / 2;
        // Reflect padding (numpy "reflect": excludes the edge sample).
        let get = |i: isize| -> f32 {
            let len = x.len() as isize;
            let mut j = i;
            if j < 0 {
                j = -j;
            }
            if j >= len {
                j = 2 * (len - 1) - j;
            }
            x[j.clamp(0, len - 1) as usize]
        };
        let n_freqs = N_FFT / 2 + 1;
        let mut power = vec![0f32; frames * n_freqs];
        let mut buf = vec![Complex::new(0f32, 0f32); N_FFT];
        let mut scratch = vec![Complex::new(0f32, 0f32); self.fft.get_inplace_scratch_len()];
        for t in 0..frames {
            let start = (t * HOP) as isize - pad as isize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = Complex::new(get(start + i as isize) * self.window[i], 0.0);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for k in 0..n_freqs {
                power[t * n_freqs + k] = buf[k].norm_sqr();
            }
        }
        let mut out = vec![0f32; self.n_mels * frames];
        let mut max = f32::NEG_INFINITY;
        for m in 0..self.n_mels {
            let f = &self.filters[m * n_freqs..(m + 1) * n_freqs];
            for t in 0..frames {
                let p = &power[t * n_freqs..(t + 1) * n_freqs];
                let v: f32 = f.iter().zip(p).map(|(a, b)| a * b).sum();
                let l = v.max(1e-10).log10();
                max = max.max(l);
                out[m * frames + t] = l;
            }
        }
        for v in &mut out {
            *v = ((*v).max(max - 8.0) + 4.0) / 4.0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filterbank_matches_librosa_shape() {
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        // Every band has some weight, and librosa's first slaney band peaks at ~0.0247
        // (bin 1) — a regression check of the normalisation.
        for m in 0..80 {
            assert!(
                f[m * 201..(m + 1) * 201].iter().any(|&v| v > 0.0),
                "band {m}"
            );
        }
        let peak0 = f[..201].iter().cloned().fold(0.0f32, f32::max);
        assert!((peak0 - 0.02466).abs() < 0.0005, "{peak0}");
    }

    #[test]
    fn tone_lands_in_the_right_band_and_values_are_normalised() {
        let lm = LogMel::new(80);
        let tone: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let feat = lm.compute(&tone, 160_000);
        let frames = 1000;
        assert_eq!(feat.len(), 80 * frames);
        // Frame 50 (0.5 s): loudest band near 440 Hz -> mel ~6.6 -> band ~ 6 of 80 linear-ish.
        let col: Vec<f32> = (0..80).map(|m| feat[m * frames + 50]).collect();
        let best = col
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        let center_hz = mel_to_hz(hz_to_mel(8000.0) * (best + 1) as f64 / 81.0);
        assert!(
            (center_hz - 440.0).abs() < 60.0,
            "band {best} at {center_hz} Hz"
        );
        let max = feat.iter().cloned().fold(f32::MIN, f32::max);
        let min = feat.iter().cloned().fold(f32::MAX, f32::min);
        assert!(
            max - min <= 2.0 + 1e-4,
            "dynamic range is clamped to 8 dB/4"
        );
    }
}
