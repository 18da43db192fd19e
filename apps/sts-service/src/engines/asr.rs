//! Whisper ASR through CTranslate2 (`ct2rs::sys::Whisper`) on one dedicated thread.
//!
//! The high-level `ct2rs::Whisper` wants a `preprocessor_config.json` and always adds
//! language/task tokens (wrong for `.en` models), so this module computes its own log-mel
//! ([`super::mel`]) and builds the prompt itself. Inference uses a shorter input window than
//! Whisper's 30 s (default 10 s; 3x faster on CPU, measured) with a repetition penalty and a
//! length cap, which stops the loops short windows otherwise produce.

use super::mel::{LogMel, SAMPLE_RATE};
use crate::config::ComputeType;
use ct2rs::sys::{
    ComputeType as Ct2Compute, Config as Ct2Config, StorageView, Whisper, WhisperOptions,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Errors of the ASR engine.
#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    /// The model directory could not be loaded.
    #[error("cannot load Whisper model from {dir}: {reason}")]
    Load {
        /// Model directory.
        dir: String,
        /// CTranslate2's message.
        reason: String,
    },
    /// Inference failed.
    #[error("whisper inference failed: {0}")]
    Inference(String),
    /// The engine thread is gone.
    #[error("ASR engine thread stopped")]
    Stopped,
    /// The job's deadline had passed when the ASR thread reached it: not run.
    #[error("deadline passed {late_ms} ms before ASR could start")]
    PastDeadline {
        /// How long past its deadline the job was when its turn came.
        late_ms: u64,
    },
    /// The language is not supported by the model.
    #[error("language {lang:?} not supported by {model} (accepted: {accepted})")]
    Language {
        /// Requested language.
        lang: String,
        /// Model name.
        model: String,
        /// Accepted languages.
        accepted: String,
    },
}

/// Settings of the ASR engine.
#[derive(Debug, Clone)]
pub struct AsrSettings {
    /// CTranslate2 model directory.
    pub model_dir: PathBuf,
    /// Requested compute type.
    pub compute_type: ComputeType,
    /// Intra-op threads.
    pub threads: usize,
    /// Beam size.
    pub beam_size: usize,
    /// Input window in seconds.
    pub window_s: usize,
}

/// Result of one transcription.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AsrOutput {
    /// Transcript (empty when no speech).
    pub text: String,
    /// Whisper's probability that the window holds no speech (max over windows).
    pub no_speech_prob: f32,
    /// Length-normalised log probability of the best hypothesis (min over windows).
    pub avg_logprob: f32,
}

/// Static facts about the loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AsrInfo {
    /// Directory name of the model.
    pub model: String,
    /// Model path.
    pub path: String,
    /// Compute type actually in use.
    pub compute_type: String,
    /// Whether the model is multilingual (else English-only).
    pub multilingual: bool,
    /// Input window in seconds.
    pub window_s: usize,
    /// Beam size.
    pub beam_size: usize,
}

struct Job {
    audio: Vec<f32>,
    language: String,
    /// Past this the answer is of no use: the job is not run.
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<AsrOutput, AsrError>>,
}

/// Handle to the ASR thread. Cheap to clone.
#[derive(Clone)]
pub struct Asr {
    tx: mpsc::Sender<Job>,
    info: AsrInfo,
    languages: std::sync::Arc<HashSet<String>>,
}

impl Asr {
    /// Loads the model on a new dedicated thread (blocking; call from `spawn_blocking`).
    pub fn load(settings: AsrSettings) -> Result<Self, AsrError> {
        let (tx, rx) = mpsc::channel::<Job>(64);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("asr-whisper".into())
            .spawn(move || {
                let engine = match Engine::load(&settings) {
                    Ok(e) => e,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((engine.info.clone(), engine.languages.clone())));
                engine.run(rx);
            })
            .map_err(|e| AsrError::Inference(format!("cannot spawn ASR thread: {e}")))?;
        let (info, languages) = ready_rx.recv().map_err(|_| AsrError::Stopped)??;
        Ok(Self {
            tx,
            info,
            languages: std::sync::Arc::new(languages),
        })
    }

    /// Model facts.
    pub fn info(&self) -> &AsrInfo {
        &self.info
    }

    /// Checks that `lang` can be transcribed by this model.
    pub fn check_language(&self, lang: &str) -> Result<(), AsrError> {
        let base = lang
            .split(['-', '_'])
            .next()
            .unwrap_or(lang)
            .to_ascii_lowercase();
        if self.languages.contains(&base) {
            Ok(())
        } else {
            let mut acc: Vec<_> = self.languages.iter().cloned().collect();
            acc.sort();
            if acc.len() > 12 {
                acc.truncate(12);
                acc.push("...".into());
            }
            Err(AsrError::Language {
                lang: lang.into(),
                model: self.info.model.clone(),
                accepted: acc.join(", "),
            })
        }
    }

    /// Transcribes 16 kHz mono audio. Runs on the ASR thread; jobs from all streams are
    /// served in arrival order. A job whose caller gave up (timeout) is skipped, and one
    /// whose `deadline` has passed when its turn comes is answered
    /// [`AsrError::PastDeadline`] without running.
    pub async fn transcribe(
        &self,
        audio: Vec<f32>,
        language: &str,
        deadline: Option<Instant>,
    ) -> Result<AsrOutput, AsrError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                audio,
                language: language.to_string(),
                deadline,
                reply,
            })
            .await
            .map_err(|_| AsrError::Stopped)?;
        rx.await.map_err(|_| AsrError::Stopped)?
    }
}

struct Engine {
    whisper: Whisper,
    mel: LogMel,
    info: AsrInfo,
    languages: HashSet<String>,
    options: WhisperOptions,
}

impl Engine {
    fn load(s: &AsrSettings) -> Result<Self, AsrError> {
        let dir = s.model_dir.display().to_string();
        let load = |ct: Ct2Compute| {
            Whisper::new(
                &s.model_dir,
                Ct2Config {
                    compute_type: ct,
                    num_threads_per_replica: s.threads,
                    ..Default::default()
                },
            )
        };
        let (whisper, used) = match s.compute_type {
            ComputeType::Int8 => match load(Ct2Compute::INT8) {
                Ok(w) => (w, "int8"),
                Err(e) => {
                    tracing::warn!(error = %e, "int8 not available for this model; using its saved compute type");
                    (
                        load(Ct2Compute::DEFAULT).map_err(|e| AsrError::Load {
                            dir: dir.clone(),
                            reason: e.to_string(),
                        })?,
                        "default",
                    )
                }
            },
            ComputeType::Float32 => (
                load(Ct2Compute::FLOAT32).map_err(|e| AsrError::Load {
                    dir: dir.clone(),
                    reason: e.to_string(),
                })?,
                "float32",
            ),
            ComputeType::Default => (
                load(Ct2Compute::DEFAULT).map_err(|e| AsrError::Load {
                    dir: dir.clone(),
                    reason: e.to_string(),
                })?,
                "default",
            ),
        };
        let multilingual = whisper.is_multilingual();
        let languages = if multilingual {
            read_language_tokens(&s.model_dir)
        } else {
            HashSet::from(["en".to_string()])
        };
        let mel = LogMel::new(whisper.n_mels());
        let options = WhisperOptions {
            beam_size: s.beam_size,
            repetition_penalty: 1.1,
            // ~8 tokens/s of fast speech plus the prompt: bounds runaway repetition.
            max_length: (8 * s.window_s + 16).min(448),
            return_scores: true,
            return_no_speech_prob: true,
            ..Default::default()
        };
        let model = s
            .model_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.clone());
        Ok(Self {
            whisper,
            mel,
            info: AsrInfo {
                model,
                path: dir,
                compute_type: used.into(),
                multilingual,
                window_s: s.window_s,
                beam_size: s.beam_size,
            },
            languages,
            options,
        })
    }

    fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.blocking_recv() {
            if job.reply.is_closed() {
                continue; // the fragment already timed out
            }
            let now = Instant::now();
            if let Some(late) = job.deadline.and_then(|d| now.checked_duration_since(d)) {
                let _ = job.reply.send(Err(AsrError::PastDeadline {
                    late_ms: late.as_millis() as u64,
                }));
                continue;
            }
            let res = self.transcribe(&job.audio, &job.language);
            let _ = job.reply.send(res);
        }
    }

    fn prompt(&self, language: &str) -> Vec<String> {
        let mut p = vec!["<|startoftranscript|>".to_string()];
        if self.info.multilingual {
            let base = language
                .split(['-', '_'])
                .next()
                .unwrap_or(language)
                .to_ascii_lowercase();
            p.push(format!("<|{base}|>"));
            p.push("<|transcribe|>".into());
        }
        p.push("<|notimestamps|>".into());
        p
    }

    fn transcribe(&self, audio: &[f32], language: &str) -> Result<AsrOutput, AsrError> {
        let window = self.info.window_s * SAMPLE_RATE as usize;
        let prompt = self.prompt(language);
        let mut out = AsrOutput {
            text: String::new(),
            no_speech_prob: 0.0,
            avg_logprob: 0.0,
        };
        // Whisper tends to drop a word whose onset is the very first sample of its input
        // (a fragment cut on the live timeline often starts mid-breath): give it a short
        // silent lead-in, as a real recording would have.
        let mut padded = vec![0.0f32; LEAD_IN_SAMPLES];
        padded.extend_from_slice(audio);
        let mut parts = Vec::new();
        for chunk in padded.chunks(window) {
            let mut feats = self.mel.compute(chunk, window);
            let shape = [1, self.mel.n_mels(), window / 160];
            let view = StorageView::new(&shape, &mut feats, Default::default())
                .map_err(|e| AsrError::Inference(e.to_string()))?;
            let res = self
                .whisper
                .generate(&view, std::slice::from_ref(&prompt), &self.options)
                .map_err(|e| AsrError::Inference(e.to_string()))?;
            let Some(r) = res.into_iter().next() else {
                continue;
            };
            let score = r.scores.first().copied().unwrap_or(0.0);
            out.no_speech_prob = out.no_speech_prob.max(r.no_speech_prob);
            out.avg_logprob = out.avg_logprob.min(score);
            let text = r
                .sequences
                .first()
                .map(|t| decode_tokens(t))
                .unwrap_or_default();
            // Whisper's own rule: likely no speech *and* a low-confidence text.
            if r.no_speech_prob > 0.6 && score < -1.0 {
                continue;
            }
            let text = clean_transcript(&text);
            if !text.is_empty() {
                parts.push(text);
            }
        }
        out.text = parts.join(" ");
        Ok(out)
    }
}

/// Silence put before each fragment's audio for ASR (0.3 s at 16 kHz).
const LEAD_IN_SAMPLES: usize = SAMPLE_RATE as usize * 3 / 10;

fn read_language_tokens(dir: &Path) -> HashSet<String> {
    let vocab = std::fs::read_to_string(dir.join("vocabulary.txt")).unwrap_or_default();
    vocab
        .lines()
        .filter_map(|l| l.strip_prefix("<|")?.strip_suffix("|>").map(str::to_string))
        .filter(|t| (2..=3).contains(&t.len()) && t.chars().all(|c| c.is_ascii_lowercase()))
        .collect()
}

/// GPT-2 byte-level BPE: map the printable stand-in characters back to bytes.
fn byte_decoder() -> &'static std::collections::HashMap<char, u8> {
    static DEC: std::sync::OnceLock<std::collections::HashMap<char, u8>> =
        std::sync::OnceLock::new();
    DEC.get_or_init(|| {
        let mut bs: Vec<u32> = (u32::from('!')..=u32::from('~'))
            .chain(0xA1..=0xAC)
            .chain(0xAE..=0xFF)
            .collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        bs.iter()
            .zip(&cs)
            .filter_map(|(&b, &c)| Some((char::from_u32(c)?, b as u8)))
            .collect()
    })
}

/// Joins Whisper output tokens into text, dropping special tokens.
pub fn decode_tokens(tokens: &[String]) -> String {
    let dec = byte_decoder();
    let mut bytes = Vec::new();
    for t in tokens {
        if t.starts_with("<|") && t.ends_with("|>") {
            continue;
        }
        for c in t.chars() {
            if let Some(&b) = dec.get(&c) {
                bytes.push(b);
            }
        }
    }
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// Removes non-speech annotations Whisper emits on music/noise ("[Music]", "(upbeat music)",
/// "♪") and returns "" when nothing word-like remains.
pub fn clean_transcript(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth = (depth - 1).max(0),
            '♪' | '♫' | '🎵' => {}
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().any(char::is_alphanumeric) {
        out
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_decode() {
        let toks: Vec<String> = [
            "<|startoftranscript|>",
            "ĠOne",
            ",",
            "Ġtwo",
            ".",
            "<|endoftext|>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(decode_tokens(&toks), "One, two.");
        // "é" is two bytes, written as two stand-in characters.
        assert_eq!(decode_tokens(&["ĠcafÃ©".to_string()]), "café");
    }

    #[test]
    fn annotations_are_not_speech() {
        assert_eq!(clean_transcript("[Music]"), "");
        assert_eq!(clean_transcript(" (upbeat music) ♪ "), "");
        assert_eq!(clean_transcript("..."), "");
        assert_eq!(clean_transcript("1, 2, 3 [inaudible] 4."), "1, 2, 3 4.");
    }
}
