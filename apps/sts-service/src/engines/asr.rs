//! Whisper ASR through CTranslate2 (`ct2rs::sys::Whisper`) on one dedicated thread, which
//! batches the fragments that queued while it was busy (earliest deadline first).
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
use std::time::{Duration, Instant};
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

    /// Transcribes 16 kHz mono audio. Runs on the ASR thread, where the jobs of all
    /// streams that queue while it is busy are served together, earliest deadline first,
    /// in batches of up to [`MAX_BATCH`]. A job whose caller gave up (timeout) is skipped,
    /// and one whose `deadline` has passed when its turn comes is answered
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

    /// Serves jobs until every [`Asr`] handle is gone. Whatever queued while the engine
    /// was busy is taken together: earliest deadline first, up to [`MAX_BATCH`] fragments
    /// in one Whisper call (see [`take_batch`]).
    fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut queue: Vec<Job> = Vec::new();
        loop {
            if queue.is_empty() {
                match rx.blocking_recv() {
                    Some(job) => queue.push(job),
                    None => return,
                }
                gather(&mut rx, &mut queue);
            }
            while let Ok(job) = rx.try_recv() {
                queue.push(job);
            }
            let batch = take_batch(&mut queue, Instant::now());
            if batch.is_empty() {
                continue;
            }
            let results = self.transcribe_batch(&batch);
            for (job, res) in batch.into_iter().zip(results) {
                let _ = job.reply.send(res);
            }
        }
    }

    /// Transcribes several fragments in one Whisper call (CTranslate2 batches natively:
    /// on 2 cores six fragments take about twice as long as one, not six times). If the
    /// batched call fails, each fragment is tried on its own, so one bad input fails
    /// only its own fragment.
    fn transcribe_batch(&self, jobs: &[Job]) -> Vec<Result<AsrOutput, AsrError>> {
        let inputs: Vec<(&[f32], &str)> = jobs
            .iter()
            .map(|j| (j.audio.as_slice(), j.language.as_str()))
            .collect();
        match self.transcribe_many(&inputs) {
            Ok(outs) => outs.into_iter().map(Ok).collect(),
            Err(_) if inputs.len() > 1 => inputs
                .iter()
                .map(|one| {
                    self.transcribe_many(std::slice::from_ref(one))
                        .map(|mut o| o.remove(0))
                })
                .collect(),
            Err(e) => vec![Err(e)],
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

    /// Transcribes each `(audio, language)` input: all their windows go through Whisper
    /// as one batch, and each input's answer joins its windows' texts.
    fn transcribe_many(&self, inputs: &[(&[f32], &str)]) -> Result<Vec<AsrOutput>, AsrError> {
        let started = Instant::now();
        let window = self.info.window_s * SAMPLE_RATE as usize;
        let frames = window / 160;
        let mut feats = Vec::new();
        let mut prompts = Vec::new();
        let mut owner = Vec::new();
        for (i, (audio, language)) in inputs.iter().enumerate() {
            // Whisper tends to drop a word whose onset is the very first sample of its
            // input (a fragment cut on the live timeline often starts mid-breath): give it
            // a short silent lead-in, as a real recording would have.
            let mut padded = vec![0.0f32; LEAD_IN_SAMPLES];
            padded.extend_from_slice(audio);
            let prompt = self.prompt(language);
            for chunk in padded.chunks(window) {
                feats.extend(self.mel.compute(chunk, window));
                prompts.push(prompt.clone());
                owner.push(i);
            }
        }
        let mut outs = vec![AsrOutput::default(); inputs.len()];
        let mut parts: Vec<Vec<String>> = vec![Vec::new(); inputs.len()];
        if prompts.is_empty() {
            return Ok(outs);
        }
        let shape = [prompts.len(), self.mel.n_mels(), frames];
        let view = StorageView::new(&shape, &mut feats, Default::default())
            .map_err(|e| AsrError::Inference(e.to_string()))?;
        let results = self
            .whisper
            .generate(&view, &prompts, &self.options)
            .map_err(|e| AsrError::Inference(e.to_string()))?;
        tracing::debug!(
            fragments = inputs.len(),
            windows = prompts.len(),
            ms = started.elapsed().as_millis() as u64,
            "whisper batch"
        );
        for (r, &i) in results.into_iter().zip(&owner) {
            let score = r.scores.first().copied().unwrap_or(0.0);
            let out = &mut outs[i];
            out.no_speech_prob = out.no_speech_prob.max(r.no_speech_prob);
            out.avg_logprob = out.avg_logprob.min(score);
            // Whisper's own rule: likely no speech *and* a low-confidence text.
            if r.no_speech_prob > 0.6 && score < -1.0 {
                continue;
            }
            let text = r
                .sequences
                .first()
                .map(|t| clean_transcript(&decode_tokens(t)))
                .unwrap_or_default();
            if !text.is_empty() {
                parts[i].push(text);
            }
        }
        for (out, p) in outs.iter_mut().zip(parts) {
            out.text = p.join(" ");
        }
        Ok(outs)
    }
}

/// Most fragments transcribed in one Whisper call: enough for the streams of one box
/// whose fragment boundaries line up, small enough that one batch ends well within a
/// fragment's budget.
pub const MAX_BATCH: usize = 8;

/// How long an idle engine that just got a job waits for more before it starts, in steps:
/// it keeps waiting while jobs keep coming, up to [`GATHER_MAX`]. Streams whose fragment
/// boundaries line up send their fragments within ~80 ms of each other, up to ~50 ms apart
/// (measured with six live streams); without the wait the first of them ran alone and the
/// others waited behind it (0.5-0.7 s more for five of six fragments). A lone stream's
/// fragment pays one step.
const GATHER_STEP: Duration = Duration::from_millis(60);
/// The longest an idle engine waits for a batch to gather.
const GATHER_MAX: Duration = Duration::from_millis(180);

/// Waits while jobs keep arriving (see [`GATHER_STEP`]), moving them into `queue`.
fn gather(rx: &mut mpsc::Receiver<Job>, queue: &mut Vec<Job>) {
    let start = Instant::now();
    while start.elapsed() + GATHER_STEP <= GATHER_MAX && queue.len() < MAX_BATCH {
        let before = queue.len();
        std::thread::sleep(GATHER_STEP);
        while let Ok(job) = rx.try_recv() {
            queue.push(job);
        }
        if queue.len() == before {
            break;
        }
    }
}

/// The next batch from `queue` at `now`: jobs whose caller gave up are dropped, jobs past
/// their deadline are answered [`AsrError::PastDeadline`] without running, and of the rest
/// the [`MAX_BATCH`] with the earliest deadlines are taken (jobs without a deadline last,
/// ties in arrival order); the others stay queued.
///
/// Tried and dropped: sizing the batch by a learnt cost so that it ends before the
/// earliest deadline. Under load a lone fragment's ASR slows down, the estimate then let
/// only one through at a time, and the engine went serial: bench-live dubbed 4 of 40
/// fragments of eight staggered streams with it, 40 of 40 without (docs/capacity.md).
fn take_batch(queue: &mut Vec<Job>, now: Instant) -> Vec<Job> {
    let mut live = Vec::with_capacity(queue.len());
    for job in queue.drain(..) {
        if job.reply.is_closed() {
            continue; // the fragment already timed out
        }
        match job.deadline.and_then(|d| now.checked_duration_since(d)) {
            Some(late) => {
                let _ = job.reply.send(Err(AsrError::PastDeadline {
                    late_ms: late.as_millis() as u64,
                }));
            }
            None => live.push(job),
        }
    }
    // Stable: equal deadlines keep their arrival order.
    live.sort_by_key(|j| (j.deadline.is_none(), j.deadline));
    let rest = live.split_off(live.len().min(MAX_BATCH));
    *queue = rest;
    live
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

    fn job(deadline: Option<Instant>) -> (Job, oneshot::Receiver<Result<AsrOutput, AsrError>>) {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            audio: Vec::new(),
            language: "en".into(),
            deadline,
            reply,
        };
        (job, rx)
    }

    #[test]
    fn batches_take_the_earliest_deadlines_and_shed_the_expired() {
        let now = Instant::now();
        let at = |ms: u64| Some(now + Duration::from_millis(ms));
        let (late, mut late_rx) = job(Some(now - Duration::from_millis(300)));
        let (gone, gone_rx) = job(at(100));
        drop(gone_rx);
        let (none, _none_rx) = job(None);
        let mut queue = vec![none, late, gone];
        let mut keep = Vec::new();
        // Arrival order: 2000, 500, 500, ... ; the two 500s must keep it.
        for (i, ms) in [2000u64, 500, 500, 900, 1200, 1300, 1400, 1500, 1600, 1700]
            .into_iter()
            .enumerate()
        {
            let (mut j, rx) = job(at(ms));
            j.language = format!("j{i}");
            queue.push(j);
            keep.push(rx);
        }
        let batch = take_batch(&mut queue, now);
        let order: Vec<&str> = batch.iter().map(|j| j.language.as_str()).collect();
        assert_eq!(order, ["j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8"]);
        assert_eq!(batch.len(), MAX_BATCH);
        // The rest stays queued, the job without a deadline after the others.
        let rest: Vec<&str> = queue.iter().map(|j| j.language.as_str()).collect();
        assert_eq!(rest, ["j9", "j0", "en"]);
        // The expired job was answered, not run; the abandoned one is gone.
        assert!(matches!(
            late_rx.try_recv(),
            Ok(Err(AsrError::PastDeadline { late_ms })) if late_ms >= 300
        ));
        let next = take_batch(&mut queue, now);
        assert_eq!(next.len(), 3);
        assert!(queue.is_empty());
        assert!(take_batch(&mut queue, now).is_empty());
    }

    #[test]
    fn annotations_are_not_speech() {
        assert_eq!(clean_transcript("[Music]"), "");
        assert_eq!(clean_transcript(" (upbeat music) ♪ "), "");
        assert_eq!(clean_transcript("..."), "");
        assert_eq!(clean_transcript("1, 2, 3 [inaudible] 4."), "1, 2, 3 4.");
    }
}
