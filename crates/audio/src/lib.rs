//! Shared DSP for livedub: PCM conversion, WAV I/O, resampling, levels and a speech gate,
//! pitch-preserving time compression (WSOLA), fades and pad/cut, and the voice-over mix
//! (a bed ducked under a voice).
//!
//! Everything works on `f32` samples in `[-1, 1]`; [`pcm`] converts to and from the `s16`
//! wire format. Functions are pure and allocation-light so they can run on any blocking
//! thread.

pub mod duck;
pub mod edit;
pub mod level;
pub mod pcm;
pub mod resample;
pub mod wav;
pub mod wsola;

pub use duck::{voice_over, DuckParams};
pub use edit::{fade_in, fade_out, fit_length, pad_or_cut};
pub use level::{peak, rms, rms_dbfs, SpeechGate};
pub use pcm::{deinterleave_mix, f32_to_i16, i16_to_f32, upmix};
pub use resample::{resample, ResampleError};
pub use wav::{read_wav, read_wav_bytes, write_wav, WavAudio, WavError};
pub use wsola::{time_compress, WsolaError};
