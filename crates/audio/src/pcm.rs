//! Sample format conversion and channel mixing.

/// Converts s16 samples to `f32` in `[-1, 1)`.
pub fn i16_to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

/// Converts `f32` samples to s16 with rounding and clipping (no wrap-around).
pub fn f32_to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| {
            let v = (s * 32768.0).round();
            v.clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Mixes interleaved audio with `channels` channels down to mono (average).
/// A trailing partial frame is dropped. `channels == 0` gives an empty result.
pub fn deinterleave_mix(samples: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return if channels == 1 {
            samples.to_vec()
        } else {
            Vec::new()
        };
    }
    samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Copies mono audio into every channel of an interleaved buffer.
pub fn upmix(mono: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return mono.to_vec();
    }
    let mut out = Vec::with_capacity(mono.len() * channels);
    for &s in mono {
        out.extend(std::iter::repeat_n(s, channels));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_is_exact_for_i16() {
        let s: Vec<i16> = vec![i16::MIN, -1, 0, 1, 1000, i16::MAX];
        assert_eq!(f32_to_i16(&i16_to_f32(&s)), s);
    }

    #[test]
    fn clipping_saturates() {
        assert_eq!(f32_to_i16(&[2.0, -2.0, 0.5]), vec![32767, -32768, 16384]);
    }

    #[test]
    fn mix_and_upmix() {
        assert_eq!(
            deinterleave_mix(&[1.0, 0.0, 0.5, 0.5, 9.0], 2),
            vec![0.5, 0.5]
        );
        assert_eq!(upmix(&[0.25, -0.25], 2), vec![0.25, 0.25, -0.25, -0.25]);
        assert!(deinterleave_mix(&[1.0], 0).is_empty());
    }
}
