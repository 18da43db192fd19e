//! Levels (RMS, peak, dBFS) and an energy-based speech gate.

/// Root mean square of the samples (0 for an empty slice).
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt() as f32
}

/// Largest absolute sample value.
pub fn peak(samples: &[f32]) -> f32 {
    samples.iter().fold(0.0f32, |m, &s| m.max(s.abs()))
}

/// RMS in dB relative to full scale; -120 for digital silence.
pub fn rms_dbfs(samples: &[f32]) -> f32 {
    let r = rms(samples);
    if r <= 1e-6 {
        -120.0
    } else {
        20.0 * r.log10()
    }
}

/// Decides whether a fragment holds enough voiced energy to be worth transcribing.
///
/// The audio is cut into 20 ms frames; a frame is *active* when its RMS is above
/// `threshold_dbfs` and at least `relative_db` above the quietest tenth of frames (the
/// noise floor). The fragment passes when the active frames add up to `min_active_ms`.
/// This stops Whisper from hallucinating on silence and room noise; music is caught later
/// by the ASR's own no-speech probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechGate {
    /// Absolute level a frame must exceed (dBFS).
    pub threshold_dbfs: f32,
    /// Margin over the noise floor a frame must exceed (dB).
    pub relative_db: f32,
    /// Total active duration needed (ms).
    pub min_active_ms: u32,
}

impl Default for SpeechGate {
    fn default() -> Self {
        Self {
            threshold_dbfs: -45.0,
            relative_db: 10.0,
            min_active_ms: 150,
        }
    }
}

impl SpeechGate {
    /// Milliseconds of active frames in mono `samples` at `rate` Hz.
    pub fn active_ms(&self, samples: &[f32], rate: u32) -> u32 {
        let frame = (rate as usize / 50).max(1);
        let levels: Vec<f32> = samples.chunks(frame).map(rms_dbfs).collect();
        if levels.is_empty() {
            return 0;
        }
        let mut sorted = levels.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let floor = sorted[sorted.len() / 10];
        let active = levels
            .iter()
            .filter(|&&l| l > self.threshold_dbfs && l > floor + self.relative_db)
            .count();
        (active * 20) as u32
    }

    /// True when mono `samples` at `rate` Hz look like they may contain speech.
    pub fn passes(&self, samples: &[f32], rate: u32) -> bool {
        self.active_ms(samples, rate) >= self.min_active_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, amp: f32, seed: u32) -> Vec<f32> {
        let mut x = seed.max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * amp
            })
            .collect()
    }

    #[test]
    fn levels() {
        assert_eq!(rms(&[]), 0.0);
        assert!((rms(&[0.5, -0.5]) - 0.5).abs() < 1e-6);
        assert_eq!(peak(&[0.1, -0.7, 0.3]), 0.7);
        assert_eq!(rms_dbfs(&[0.0; 10]), -120.0);
        assert!((rms_dbfs(&[1.0, -1.0]) - 0.0).abs() < 1e-4);
    }

    #[test]
    fn gate_rejects_silence_and_faint_noise() {
        let g = SpeechGate::default();
        assert!(!g.passes(&vec![0.0; 96000], 16000));
        assert!(!g.passes(&noise(96000, 0.003, 7), 16000)); // about -55 dBFS hiss
    }

    #[test]
    fn gate_accepts_bursts_over_a_floor() {
        let g = SpeechGate::default();
        let mut s = noise(96000, 0.002, 3);
        // Six 300 ms "words" at about -15 dBFS.
        for w in 0..6 {
            let start = w * 16000;
            for (i, v) in s[start..start + 4800].iter_mut().enumerate() {
                *v += (i as f32 * 0.2).sin() * 0.25;
            }
        }
        assert!(g.active_ms(&s, 16000) >= 1500);
        assert!(g.passes(&s, 16000));
        // One 60 ms click is not speech.
        let mut c = vec![0.0; 96000];
        for v in &mut c[100..1060] {
            *v = 0.5;
        }
        assert!(!g.passes(&c, 16000));
    }
}
