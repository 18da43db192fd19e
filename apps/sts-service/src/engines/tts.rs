//! Speech synthesis: espeak-ng on its own thread (offline default) or an OpenAI-compatible
//! `/v1/audio/speech` server (Coqui, Piper, Kokoro and OpenAI speak it).

use super::espeak_ffi::Espeak;
use super::http_error;
use tokio::sync::{mpsc, oneshot};

/// Errors of TTS.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// The provider failed.
    #[error("{provider} TTS failed: {reason}")]
    Failed {
        /// Provider name.
        provider: &'static str,
        /// Why.
        reason: String,
    },
}

/// Synthesised mono speech.
#[derive(Debug, Clone)]
pub struct Speech {
    /// Mono samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Sample rate.
    pub sample_rate: u32,
}

/// A queued synthesis request (internal to the espeak thread).
pub struct Job {
    text: String,
    voice: String,
    wpm: u32,
    reply: oneshot::Sender<Result<Speech, TtsError>>,
}

/// A TTS provider.
#[derive(Clone)]
pub enum Tts {
    /// espeak-ng via libespeak-ng, one dedicated thread.
    Espeak {
        /// Job queue of the espeak thread.
        tx: mpsc::Sender<Job>,
        /// Normal rate (wpm).
        base_wpm: u32,
    },
    /// OpenAI-compatible HTTP server.
    Http {
        /// Provider label.
        provider: &'static str,
        /// Client.
        client: reqwest::Client,
        /// Base URL.
        url: String,
        /// Bearer key.
        key: Option<String>,
        /// `model` field.
        model: String,
    },
}

/// libespeak-ng keeps process-wide state: two initialisations from different threads
/// crash it (seen when several servers run in one test process). So there is exactly one
/// espeak thread per process, started on first use and shared by every [`Tts::Espeak`].
static ESPEAK_THREAD: std::sync::OnceLock<Result<mpsc::Sender<Job>, String>> =
    std::sync::OnceLock::new();

fn espeak_thread() -> Result<mpsc::Sender<Job>, TtsError> {
    let fail = |reason: String| TtsError::Failed {
        provider: "espeak",
        reason,
    };
    ESPEAK_THREAD
        .get_or_init(|| {
            let (tx, mut rx) = mpsc::channel::<Job>(64);
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("tts-espeak".into())
                .spawn(move || {
                    let mut es = match Espeak::init() {
                        Ok(e) => {
                            let _ = ready_tx.send(Ok(()));
                            e
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    while let Some(job) = rx.blocking_recv() {
                        if job.reply.is_closed() {
                            continue;
                        }
                        let res = es
                            .set_voice(&job.voice)
                            .and_then(|_| es.synth(&job.text, job.wpm))
                            .map(|s| Speech {
                                samples: livedub_audio::i16_to_f32(&s),
                                sample_rate: es.sample_rate(),
                            })
                            .map_err(|e| TtsError::Failed {
                                provider: "espeak",
                                reason: e.to_string(),
                            });
                        let _ = job.reply.send(res);
                    }
                })
                .map_err(|e| e.to_string())?;
            ready_rx
                .recv()
                .map_err(|_| "espeak thread died during initialisation".to_string())??;
            Ok(tx)
        })
        .clone()
        .map_err(fail)
}

impl Tts {
    /// Starts the espeak thread and checks that `warm_voice` exists (blocking).
    pub fn start_espeak(base_wpm: u32, warm_voice: &str) -> Result<Self, TtsError> {
        let tx = espeak_thread()?;
        let tts = Self::Espeak { tx, base_wpm };
        // Warm-up: proves the voice and data files exist.
        let (reply, rx) = oneshot::channel();
        if let Self::Espeak { tx, .. } = &tts {
            tx.blocking_send(Job {
                text: "Hola.".into(),
                voice: warm_voice.into(),
                wpm: base_wpm,
                reply,
            })
            .map_err(|_| TtsError::Failed {
                provider: "espeak",
                reason: "thread died".into(),
            })?;
        }
        rx.blocking_recv().map_err(|_| TtsError::Failed {
            provider: "espeak",
            reason: "thread died".into(),
        })??;
        Ok(tts)
    }

    /// Provider name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Espeak { .. } => "espeak",
            Self::Http { provider, .. } => provider,
        }
    }

    /// Synthesises `text` with `voice`, `speed` times faster than normal (1.0 = normal).
    pub async fn synth(&self, text: &str, voice: &str, speed: f32) -> Result<Speech, TtsError> {
        match self {
            Self::Espeak { tx, base_wpm } => {
                let (reply, rx) = oneshot::channel();
                let wpm = (*base_wpm as f32 * speed).round() as u32;
                tx.send(Job {
                    text: text.into(),
                    voice: voice.into(),
                    wpm,
                    reply,
                })
                .await
                .map_err(|_| TtsError::Failed {
                    provider: "espeak",
                    reason: "thread stopped".into(),
                })?;
                rx.await.map_err(|_| TtsError::Failed {
                    provider: "espeak",
                    reason: "thread stopped".into(),
                })?
            }
            Self::Http {
                provider,
                client,
                url,
                key,
                model,
            } => {
                let fail = |reason: String| TtsError::Failed { provider, reason };
                let mut req = client
                    .post(format!("{}/v1/audio/speech", url.trim_end_matches('/')))
                    .json(&serde_json::json!({
                        "model": model, "input": text, "voice": voice,
                        "response_format": "wav", "speed": speed,
                    }));
                if let Some(k) = key {
                    req = req.bearer_auth(k);
                }
                let resp = req.send().await.map_err(|e| fail(http_error(e)))?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| fail(http_error(e)))?;
                if !status.is_success() {
                    return Err(fail(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )));
                }
                let wav = livedub_audio::read_wav_bytes(&body)
                    .map_err(|e| fail(format!("answer is not WAV: {e}")))?;
                Ok(Speech {
                    samples: livedub_audio::deinterleave_mix(
                        &wav.samples,
                        usize::from(wav.channels),
                    ),
                    sample_rate: wav.sample_rate,
                })
            }
        }
    }
}
