//! Inference engines: ASR (Whisper/CTranslate2), MT (Apertium, LibreTranslate, Google) and
//! TTS (espeak-ng, OpenAI-compatible HTTP). Every blocking engine owns a dedicated thread.

pub mod asr;
pub mod espeak_ffi;
pub mod mel;
pub mod translate;
pub mod tts;
