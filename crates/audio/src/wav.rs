//! WAV read/write (16-bit integer or 32-bit float PCM) through `hound`.

use std::path::Path;

/// Errors of WAV I/O.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be read or written.
    #[error("WAV file {path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Underlying error.
        source: hound::Error,
    },
    /// The file uses a sample format this crate does not read.
    #[error("WAV file {path}: unsupported sample format ({bits}-bit {kind}); accepted: 16/24/32-bit int, 32-bit float")]
    Unsupported {
        /// File concerned.
        path: String,
        /// Bits per sample.
        bits: u16,
        /// int or float.
        kind: &'static str,
    },
}

/// Decoded WAV audio: interleaved `f32` samples.
#[derive(Debug, Clone, PartialEq)]
pub struct WavAudio {
    /// Interleaved samples in `[-1, 1]`.
    pub samples: Vec<f32>,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u16,
}

impl WavAudio {
    /// Duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.channels.max(1)) / f64::from(self.sample_rate)
    }
}

/// Reads a WAV file: 16/24/32-bit integer or 32-bit float samples.
pub fn read_wav(path: impl AsRef<Path>) -> Result<WavAudio, WavError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    match hound::WavReader::open(path) {
        Ok(reader) => decode(reader, name),
        Err(source) => Err(WavError::Io { path: name, source }),
    }
}

/// Decodes a WAV held in memory (e.g. an HTTP TTS answer); same formats as [`read_wav`].
pub fn read_wav_bytes(bytes: &[u8]) -> Result<WavAudio, WavError> {
    let name = "<memory>".to_string();
    match hound::WavReader::new(std::io::Cursor::new(bytes)) {
        Ok(reader) => decode(reader, name),
        Err(source) => Err(WavError::Io { path: name, source }),
    }
}

/// Converts every sample of `reader` to f32 in [-1, 1]; `name` labels errors.
fn decode<R: std::io::Read>(
    mut reader: hound::WavReader<R>,
    name: String,
) -> Result<WavAudio, WavError> {
    let io = |source| WavError::Io {
        path: name.clone(),
        source,
    };
    let spec = reader.spec();
    let samples = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .samples::<i16>()
            .map(|s| s.map(|v| f32::from(v) / 32768.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?,
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?,
        (hound::SampleFormat::Int, bits @ (24 | 32)) => {
            let scale = (1u64 << (bits - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 / scale))
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?
        }
        (fmt, bits) => {
            return Err(WavError::Unsupported {
                path: name,
                bits,
                kind: if fmt == hound::SampleFormat::Int {
                    "int"
                } else {
                    "float"
                },
            })
        }
    };
    Ok(WavAudio {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    })
}

/// Writes interleaved samples as a 16-bit integer WAV file.
pub fn write_wav(
    path: impl AsRef<Path>,
    samples: &[f32],
    sample_rate: u32,
    channels: u16,
) -> Result<(), WavError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io = |source| WavError::Io {
        path: name.clone(),
        source,
    };
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(io)?;
    for s in crate::pcm::f32_to_i16(samples) {
        writer.write_sample(s).map_err(io)?;
    }
    writer.finalize().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read() {
        let dir = std::env::temp_dir().join(format!("livedub-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.wav");
        let s: Vec<f32> = (0..1600).map(|i| ((i as f32) * 0.01).sin() * 0.5).collect();
        write_wav(&p, &s, 16000, 2).unwrap();
        let back = read_wav(&p).unwrap();
        assert_eq!(back.sample_rate, 16000);
        assert_eq!(back.channels, 2);
        assert_eq!(back.samples.len(), 1600);
        assert!((back.duration_s() - 0.05).abs() < 1e-9);
        for (a, b) in s.iter().zip(&back.samples) {
            assert!((a - b).abs() < 1.0 / 16000.0);
        }
        let err = read_wav(dir.join("missing.wav")).unwrap_err();
        assert!(err.to_string().contains("missing.wav"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn reads_24_bit_int() {
        let dir = std::env::temp_dir().join(format!("livedub-wav24-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t24.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for v in [0i32, 4_194_304, -8_388_608] {
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let a = read_wav(&p).unwrap();
        assert_eq!(a.samples, vec![0.0, 0.5, -1.0]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
