//! Band-limited resampling of mono audio with a Blackman-windowed sinc kernel.
//!
//! The ratio is reduced to `up/down` (by the gcd of the rates) and the kernel is tabulated
//! for the `up` phases, so the cost is one short dot product per output sample. When
//! downsampling the cutoff moves to the new Nyquist frequency (anti-aliasing).

/// Zero crossings of the sinc on each side, at the (lower) cutoff. 16 gives > 60 dB
/// stop-band with a Blackman window, plenty for speech.
const ZERO_CROSSINGS: usize = 16;

/// Errors of [`resample`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// A rate of zero.
    #[error("sample rate must be positive (got {from} Hz -> {to} Hz)")]
    ZeroRate {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
    },
    /// Phase table would be unreasonably large (rates with a tiny gcd).
    #[error("unsupported resampling ratio {from} Hz -> {to} Hz (gcd too small)")]
    Ratio {
        /// Input rate.
        from: u32,
        /// Output rate.
        to: u32,
    },
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Resamples mono audio from `from` Hz to `to` Hz. The output has
/// `round(len * to / from)` samples.
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    if from == 0 || to == 0 {
        return Err(ResampleError::ZeroRate { from, to });
    }
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let g = gcd(u64::from(from), u64::from(to));
    let up = (u64::from(to) / g) as usize;
    let down = (u64::from(from) / g) as usize;
    if up > 8192 {
        return Err(ResampleError::Ratio { from, to });
    }
    // Cutoff relative to the input Nyquist.
    let fc = (to as f64 / from as f64).min(1.0);
    let half = (ZERO_CROSSINGS as f64 / fc).ceil() as usize;
    let taps = 2 * half;
    // table[phase][k] weights input sample (base - half + 1 + k) for output position
    // base + phase/up.
    let mut table = vec![0f32; up * taps];
    for phase in 0..up {
        let frac = phase as f64 / up as f64;
        let row = &mut table[phase * taps..(phase + 1) * taps];
        let mut sum = 0.0;
        for (k, w) in row.iter_mut().enumerate() {
            let d = (k as f64 - half as f64 + 1.0) - frac; // distance in input samples
            let x = d / half as f64; // -1..1 over the kernel
            let win = if x.abs() >= 1.0 {
                0.0
            } else {
                let t = std::f64::consts::PI * (x + 1.0);
                0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos()
            };
            let v = fc * sinc(fc * d) * win;
            sum += v;
            *w = v as f32;
        }
        // Normalise DC gain to exactly 1 per phase (no ripple from truncation).
        if sum.abs() > 1e-9 {
            for w in row.iter_mut() {
                *w = (f64::from(*w) / sum) as f32;
            }
        }
    }
    let out_len = ((input.len() as u64 * up as u64 + down as u64 / 2) / down as u64) as usize;
    let n = input.len() as isize;
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let pos = i * down; // in units of 1/up input samples
        let base = (pos / up) as isize;
        let phase = pos % up;
        let row = &table[phase * taps..(phase + 1) * taps];
        let start = base - half as isize + 1;
        let mut acc = 0f32;
        if start >= 0 && start + taps as isize <= n {
            let seg = &input[start as usize..start as usize + taps];
            for (a, b) in seg.iter().zip(row) {
                acc += a * b;
            }
        } else {
            for (k, w) in row.iter().enumerate() {
                let j = start + k as isize;
                if (0..n).contains(&j) {
                    acc += input[j as usize] * w;
                }
            }
        }
        out.push(acc);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::rms;

    fn sine(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    #[test]
    fn length_and_identity() {
        let s = sine(440.0, 22050, 1.0);
        assert_eq!(resample(&s, 22050, 16000).unwrap().len(), 16000);
        assert_eq!(resample(&s, 22050, 48000).unwrap().len(), 48000);
        assert_eq!(resample(&s, 22050, 22050).unwrap(), s);
        assert!(resample(&s, 0, 16000).is_err());
    }

    #[test]
    fn passband_tone_keeps_level_and_frequency() {
        let s = sine(1000.0, 22050, 1.0);
        let r = resample(&s, 22050, 16000).unwrap();
        let mid = &r[2000..14000];
        let expected = 0.5 / 2f32.sqrt();
        assert!((rms(mid) - expected).abs() < 0.01, "rms {}", rms(mid));
        // Compare with an ideal 1 kHz tone at 16 kHz.
        let ideal = sine(1000.0, 16000, 1.0);
        let err: f32 = mid
            .iter()
            .zip(&ideal[2000..14000])
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            / mid.len() as f32;
        assert!(err.sqrt() < 0.01, "rms error {}", err.sqrt());
    }

    #[test]
    fn stopband_tone_is_removed_when_downsampling() {
        // 10 kHz cannot exist at 16 kHz (Nyquist 8 kHz): it must be filtered, not aliased.
        let s = sine(10_000.0, 48000, 1.0);
        let r = resample(&s, 48000, 16000).unwrap();
        assert!(
            rms(&r[1000..15000]) < 0.01,
            "alias rms {}",
            rms(&r[1000..15000])
        );
    }
}
