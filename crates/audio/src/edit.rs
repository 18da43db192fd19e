//! Fades and length editing.

/// Applies a linear fade-in over the first `len` samples (clamped to the buffer).
pub fn fade_in(samples: &mut [f32], len: usize) {
    let len = len.min(samples.len());
    for (i, s) in samples[..len].iter_mut().enumerate() {
        *s *= i as f32 / len as f32;
    }
}

/// Applies a linear fade-out over the last `len` samples (clamped to the buffer).
pub fn fade_out(samples: &mut [f32], len: usize) {
    let n = samples.len();
    let len = len.min(n);
    for i in 0..len {
        samples[n - len + i] *= (len - i - 1) as f32 / len as f32;
    }
}

/// Pads with silence or cuts to exactly `target` samples. Returns whether it cut.
/// A cut ends with a fade-out of `fade` samples so it does not click.
pub fn pad_or_cut(samples: &mut Vec<f32>, target: usize, fade: usize) -> bool {
    if samples.len() <= target {
        samples.resize(target, 0.0);
        false
    } else {
        samples.truncate(target);
        fade_out(samples, fade);
        true
    }
}

/// Pads or cuts so that speech of `samples` fits `target` samples, trimming leading and
/// trailing near-silence first (below `floor` absolute amplitude) so a cut removes as
/// little speech as possible. Returns whether speech was cut.
pub fn fit_length(samples: &mut Vec<f32>, target: usize, fade: usize, floor: f32) -> bool {
    if samples.len() > target {
        let end = samples
            .iter()
            .rposition(|s| s.abs() > floor)
            .map_or(0, |p| p + 1);
        samples.truncate(end);
        if samples.len() > target {
            let start = samples.iter().position(|s| s.abs() > floor).unwrap_or(0);
            // Keep a few ms of lead-in so the onset is not clipped.
            let start = start.saturating_sub(fade);
            samples.drain(..start.min(samples.len() - target));
        }
    }
    pad_or_cut(samples, target, fade)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fades_reach_zero() {
        let mut s = vec![1.0; 10];
        fade_in(&mut s, 5);
        assert_eq!(s[0], 0.0);
        assert_eq!(s[5], 1.0);
        fade_out(&mut s, 4);
        assert_eq!(s[9], 0.0);
        assert!(s[6] > s[7] && s[7] > s[8]);
    }

    #[test]
    fn pad_and_cut_exact() {
        let mut s = vec![0.5; 10];
        assert!(!pad_or_cut(&mut s, 15, 3));
        assert_eq!(s.len(), 15);
        assert_eq!(s[14], 0.0);
        let mut s = vec![0.5; 20];
        assert!(pad_or_cut(&mut s, 12, 3));
        assert_eq!(s.len(), 12);
        assert_eq!(s[11], 0.0);
    }

    #[test]
    fn fit_trims_silence_before_cutting() {
        // 5 silent, 10 speech, 10 silent = 25 -> fits 12 without cutting speech.
        let mut s = vec![0.0; 5];
        s.extend(vec![0.5; 10]);
        s.extend(vec![0.0; 10]);
        assert!(!fit_length(&mut s, 12, 1, 0.01));
        assert_eq!(s.len(), 12);
        assert_eq!(s.iter().filter(|v| **v > 0.4).count(), 10);
        // Real overflow: 20 speech into 12.
        let mut s = vec![0.5; 20];
        assert!(fit_length(&mut s, 12, 2, 0.01));
        assert_eq!(s.len(), 12);
    }
}
