//! Fragment processing: ASR -> MT -> TTS -> duration fit (or echo).
//!
//! Every CPU-heavy step runs off the async threads: ASR, Apertium and espeak on their own
//! threads, DSP (resampling, gate, fit) in `spawn_blocking`.

use crate::config::{Config, Mode, TranslationProvider, TtsProvider};
use crate::engines::asr::{Asr, AsrError, AsrSettings};
use crate::engines::mel::SAMPLE_RATE as ASR_RATE;
use crate::engines::translate::{Apertium, Translator, APERTIUM_MODES_DIR};
use crate::engines::tts::Tts;
use crate::fit;
use crate::metrics::Metrics;
use crate::redact::Redactor;
use livedub_audio::SpeechGate;
use std::time::{Duration, Instant};
use sts_protocol::{
    AudioFormat, AudioPayload, ErrorBody, ErrorCode, FragmentProcessed, FragmentStatus, StageMs,
};

/// One accepted fragment, decoded.
#[derive(Debug, Clone)]
pub struct Job {
    /// Fragment id.
    pub fragment_id: String,
    /// Stream id.
    pub stream_id: String,
    /// Sequence number.
    pub sequence_number: u64,
    /// Declared duration.
    pub duration_ms: u32,
    /// Interleaved s16 samples in `format`.
    pub samples: Vec<i16>,
    /// The stream's format (also the answer's).
    pub format: AudioFormat,
    /// Source language.
    pub source_language: String,
    /// Target language.
    pub target_language: String,
    /// Requested voice.
    pub voice: Option<String>,
    /// When the client's answer stops being of use (from `answer_within_ms`): stages not
    /// started by then are not run.
    pub deadline: Option<Instant>,
}

/// Why a fragment's processing stopped before its answer was complete.
#[derive(Debug)]
enum Stop {
    /// A stage failed: answered `failed`.
    Failed(ErrorBody),
    /// The fragment's deadline passed before `stage` began: answered `timeout`, the rest of
    /// the work is not done.
    Shed {
        /// The stage that was not run (`asr` covers everything; `tts` means ASR ran).
        stage: &'static str,
        /// How far past the deadline the fragment was.
        late_ms: u64,
    },
}

impl From<ErrorBody> for Stop {
    fn from(e: ErrorBody) -> Self {
        Stop::Failed(e)
    }
}

/// A `success` answer for `job` with nothing in it yet.
fn empty_answer(job: &Job) -> FragmentProcessed {
    FragmentProcessed {
        fragment_id: job.fragment_id.clone(),
        stream_id: job.stream_id.clone(),
        sequence_number: job.sequence_number,
        status: FragmentStatus::Success,
        dubbed_audio: None,
        transcript: String::new(),
        translated_text: String::new(),
        processing_time_ms: 0,
        stage_ms: StageMs::default(),
        error: None,
    }
}

/// `Err(Stop::Shed)` once `job`'s deadline has passed.
fn check_deadline(job: &Job, stage: &'static str) -> Result<(), Stop> {
    match job
        .deadline
        .and_then(|d| Instant::now().checked_duration_since(d))
    {
        Some(late) => Err(Stop::Shed {
            stage,
            late_ms: late.as_millis() as u64,
        }),
        None => Ok(()),
    }
}

/// The loaded engines of full mode.
pub struct Engines {
    /// Whisper.
    pub asr: Asr,
    /// Translation provider.
    pub mt: Translator,
    /// TTS provider.
    pub tts: Tts,
}

/// Failure loading engines at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// ASR model.
    #[error("ASR_MODEL: {0}")]
    Asr(#[from] crate::engines::asr::AsrError),
    /// Translation.
    #[error("TRANSLATION_PROVIDER: {0}")]
    Mt(#[from] crate::engines::translate::TranslateError),
    /// TTS.
    #[error("TTS_PROVIDER: {0}")]
    Tts(#[from] crate::engines::tts::TtsError),
}

impl Engines {
    /// Loads every engine (blocking; seconds). Fails on anything the machine lacks.
    pub fn load(cfg: &Config) -> Result<Self, LoadError> {
        let model_dir = cfg.resolve_asr_model()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.processing_timeout.max(1.0)))
            .build()
            .map_err(|e| crate::engines::tts::TtsError::Failed {
                provider: "http",
                reason: e.to_string(),
            })?;
        let mt = match cfg.translation_provider {
            TranslationProvider::Apertium => {
                Translator::Apertium(Apertium::start(APERTIUM_MODES_DIR.into(), ("en", "es"))?)
            }
            TranslationProvider::Libretranslate => Translator::Libre {
                client: http.clone(),
                url: cfg.libretranslate_url.clone().unwrap_or_default(),
                key: cfg.libretranslate_api_key.clone(),
            },
            TranslationProvider::Google => Translator::Google {
                client: http.clone(),
                url: cfg.google_translate_url.clone(),
                key: cfg.google_api_key.clone().unwrap_or_default(),
            },
        };
        let tts = match cfg.tts_provider {
            TtsProvider::Espeak => Tts::start_espeak(u32::from(cfg.tts_rate_wpm), "es")?,
            p => Tts::Http {
                provider: match p {
                    TtsProvider::Coqui => "coqui",
                    TtsProvider::Piper => "piper",
                    TtsProvider::Kokoro => "kokoro",
                    _ => "openai",
                },
                client: http,
                url: cfg.tts_url.clone().unwrap_or_default(),
                key: cfg.tts_api_key.clone(),
                model: cfg.tts_model.clone(),
            },
        };
        let asr = Asr::load(AsrSettings {
            model_dir,
            compute_type: cfg.asr_compute_type,
            threads: usize::from(cfg.asr_threads),
            beam_size: usize::from(cfg.asr_beam_size),
            window_s: usize::from(cfg.asr_window_s),
        })?;
        Ok(Self { asr, mt, tts })
    }
}

/// Processes fragments in the configured mode.
pub struct Pipeline {
    mode: Mode,
    echo_delay: Duration,
    engines: Option<Engines>,
    stretch_max: f32,
    max_speed: f32,
    tts_model: String,
    gate: SpeechGate,
    metrics: Metrics,
    redactor: Redactor,
}

impl Pipeline {
    /// Echo-mode pipeline.
    pub fn echo(cfg: &Config, metrics: Metrics) -> Self {
        Self::build(cfg, None, metrics)
    }

    /// Full pipeline over loaded engines.
    pub fn with_engines(cfg: &Config, engines: Engines, metrics: Metrics) -> Self {
        Self::build(cfg, Some(engines), metrics)
    }

    fn build(cfg: &Config, engines: Option<Engines>, metrics: Metrics) -> Self {
        Self {
            mode: cfg.mode,
            echo_delay: Duration::from_millis(cfg.echo_delay_ms),
            engines,
            stretch_max: cfg.time_stretch_max,
            max_speed: f32::from(cfg.tts_max_rate_wpm) / f32::from(cfg.tts_rate_wpm),
            tts_model: cfg.tts_model.clone(),
            gate: SpeechGate::default(),
            metrics,
            redactor: Redactor::from_config(cfg),
        }
    }

    /// Engines (None in echo mode).
    pub fn engines(&self) -> Option<&Engines> {
        self.engines.as_ref()
    }

    /// Checks at `stream:init` that the language pair can be served.
    pub fn check_languages(&self, src: &str, tgt: &str) -> Result<(), ErrorBody> {
        let Some(e) = &self.engines else {
            return Ok(());
        };
        e.asr
            .check_language(src)
            .map_err(|err| ErrorBody::new(ErrorCode::UnsupportedLanguage, err.to_string()))?;
        e.mt.check_pair(src, tgt)
            .map_err(|err| ErrorBody::new(ErrorCode::UnsupportedLanguage, err.to_string()))
    }

    fn voice_for(&self, job: &Job) -> String {
        if let Some(v) = job.voice.as_deref().filter(|v| !v.is_empty()) {
            return v.to_string();
        }
        match &self.engines {
            Some(Engines {
                tts: Tts::Espeak { .. },
                ..
            }) if self.tts_model.starts_with("tts_models/") => {
                // The contract's default names a Coqui model; espeak speaks the target language.
                job.target_language
                    .split(['-', '_'])
                    .next()
                    .unwrap_or("es")
                    .to_string()
            }
            _ => self.tts_model.clone(),
        }
    }

    /// Processes one fragment. Never fails: errors become a `failed` answer.
    pub async fn process(&self, job: Job) -> FragmentProcessed {
        let start = Instant::now();
        let mut ev = empty_answer(&job);
        let outcome = if self.mode == Mode::Echo || self.engines.is_none() {
            self.run_echo(&job, &mut ev).await
        } else {
            self.run_full(&job, &mut ev).await
        };
        match outcome {
            Ok(()) => {}
            Err(Stop::Failed(mut body)) => {
                // Provider errors may quote what a provider answered (which may echo a key
                // or a URL); nothing configured as a secret leaves in an event or a log.
                body.message = self.redactor.clean(&body.message);
                ev.status = FragmentStatus::Failed;
                ev.dubbed_audio = None;
                ev.error = Some(body);
            }
            Err(Stop::Shed { stage, late_ms }) => self.shed(&mut ev, stage, late_ms),
        }
        ev.processing_time_ms = start.elapsed().as_millis() as u64;
        ev
    }

    /// The answer for a fragment whose deadline passed while it waited for its stream's
    /// processing slot: `timeout`, counted as shed before ASR, nothing run.
    pub fn shed_queued(&self, job: &Job) -> FragmentProcessed {
        let late_ms = job
            .deadline
            .and_then(|d| Instant::now().checked_duration_since(d))
            .map_or(0, |late| late.as_millis() as u64);
        let mut ev = empty_answer(job);
        self.shed(&mut ev, "asr", late_ms);
        ev
    }

    fn shed(&self, ev: &mut FragmentProcessed, stage: &'static str, late_ms: u64) {
        self.metrics.shed.with_label_values(&[stage]).inc();
        ev.status = FragmentStatus::Timeout;
        ev.dubbed_audio = None;
        ev.error = Some(ErrorBody::new(
            ErrorCode::ProcessingTimeout,
            format!("shed before {stage}: its answer_within_ms passed {late_ms} ms earlier, so the client no longer waits for it"),
        ));
    }

    async fn run_echo(&self, job: &Job, ev: &mut FragmentProcessed) -> Result<(), Stop> {
        check_deadline(job, "asr")?;
        tokio::time::sleep(self.echo_delay).await;
        ev.dubbed_audio = Some(AudioPayload::from_samples(&job.format, &job.samples));
        Ok(())
    }

    async fn run_full(&self, job: &Job, ev: &mut FragmentProcessed) -> Result<(), Stop> {
        let Some(engines) = &self.engines else {
            return Err(ErrorBody::new(ErrorCode::Internal, "no engines loaded").into());
        };
        // A fragment that waited past its deadline for a processing slot is not started.
        check_deadline(job, "asr")?;
        let fmt = job.format.clone();
        let target_frames = fmt.frames_for_ms(job.duration_ms);
        let internal =
            |e: tokio::task::JoinError| ErrorBody::new(ErrorCode::Internal, e.to_string());

        // --- ASR (incl. downmix, resample to 16 kHz and the speech gate) ---
        let t = Instant::now();
        let samples = job.samples.clone();
        let gate = self.gate;
        let (audio16, speechy) = tokio::task::spawn_blocking(move || {
            let f = livedub_audio::i16_to_f32(&samples);
            let mono = livedub_audio::deinterleave_mix(&f, usize::from(fmt.channels));
            let a =
                livedub_audio::resample(&mono, fmt.sample_rate_hz, ASR_RATE).unwrap_or_default();
            let passes = gate.passes(&a, ASR_RATE);
            (a, passes)
        })
        .await
        .map_err(internal)?;
        if speechy {
            let out = engines
                .asr
                .transcribe(audio16, &job.source_language, job.deadline)
                .await
                .map_err(|e| match e {
                    AsrError::PastDeadline { late_ms } => Stop::Shed {
                        stage: "asr",
                        late_ms,
                    },
                    e => ErrorBody::new(ErrorCode::AsrFailed, e.to_string()).into(),
                })?;
            tracing::debug!(stream = %job.stream_id, seq = job.sequence_number, no_speech = out.no_speech_prob, logprob = out.avg_logprob, text = %out.text, "asr");
            ev.transcript = out.text;
        }
        ev.stage_ms.asr = self.observe("asr", t);

        // --- Translation ---
        let t = Instant::now();
        if !ev.transcript.is_empty() {
            ev.translated_text = engines
                .mt
                .translate(&ev.transcript, &job.source_language, &job.target_language)
                .await
                .map_err(|e| ErrorBody::new(ErrorCode::TranslationFailed, e.to_string()))?;
        }
        ev.stage_ms.translation = self.observe("translation", t);
        if ev.translated_text.trim().is_empty() {
            // Nothing to say: no replacement audio. The client keeps the original (music,
            // ambience, a pause) instead of getting silence.
            ev.status = FragmentStatus::NoSpeech;
            ev.dubbed_audio = None;
            return Ok(());
        }

        // --- TTS: normal rate, then faster if it does not fit ---
        check_deadline(job, "tts")?;
        let t = Instant::now();
        let fmt = job.format.clone();
        let target_s = f64::from(job.duration_ms) / 1000.0;
        let speech = if ev.translated_text.trim().is_empty() {
            None
        } else {
            let voice = self.voice_for(job);
            let tts_err = |e: crate::engines::tts::TtsError| {
                ErrorBody::new(ErrorCode::TtsFailed, e.to_string())
            };
            let mut sp = engines
                .tts
                .synth(&ev.translated_text, &voice, 1.0)
                .await
                .map_err(tts_err)?;
            let secs = fit::speech_seconds(&sp.samples, sp.sample_rate);
            let speed = fit::speed_for(secs, target_s, self.max_speed);
            if speed > 1.0 {
                sp = engines
                    .tts
                    .synth(&ev.translated_text, &voice, speed)
                    .await
                    .map_err(tts_err)?;
            }
            Some(sp)
        };
        ev.stage_ms.tts = self.observe("tts", t);

        // --- Fit ---
        let t = Instant::now();
        let stretch_max = self.stretch_max;
        let fitted = tokio::task::spawn_blocking(move || match speech {
            None => Ok(fit::Fitted {
                samples: vec![0.0; target_frames],
                compression: 1.0,
                cut: false,
            }),
            Some(sp) => fit::fit_to_duration(
                &sp.samples,
                sp.sample_rate,
                target_frames,
                fmt.sample_rate_hz,
                stretch_max,
            ),
        })
        .await
        .map_err(internal)?
        .map_err(|e| ErrorBody::new(ErrorCode::TtsFailed, format!("duration fit: {e}")))?;
        let out = livedub_audio::upmix(&fitted.samples, usize::from(job.format.channels));
        ev.dubbed_audio = Some(AudioPayload::from_samples(
            &job.format,
            &livedub_audio::f32_to_i16(&out),
        ));
        if fitted.cut {
            ev.status = FragmentStatus::Partial;
            ev.error = Some(ErrorBody::new(
                ErrorCode::SpeechTruncated,
                format!(
                    "dubbed speech did not fit {} ms even at max speed and {}x compression; it was cut",
                    job.duration_ms, self.stretch_max
                ),
            ));
        }
        ev.stage_ms.fit = self.observe("fit", t);
        Ok(())
    }

    fn observe(&self, stage: &str, t: Instant) -> u64 {
        let e = t.elapsed();
        self.metrics
            .stage
            .with_label_values(&[stage])
            .observe(e.as_secs_f64());
        e.as_millis() as u64
    }
}
