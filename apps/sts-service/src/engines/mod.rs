//! Inference engines: ASR (Whisper/CTranslate2), MT (Apertium, LibreTranslate, Google) and
//! TTS (espeak-ng, OpenAI-compatible HTTP). Every blocking engine owns a dedicated thread.

pub mod asr;
pub mod espeak_ffi;
pub mod mel;
pub mod translate;
pub mod tts;

/// A reqwest error as text without its URL (the URL may name hosts or, for providers that
/// take keys in the query, secrets; the provider name says where it went), with the causes
/// that say what happened (e.g. "Connection refused").
pub(crate) fn http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
