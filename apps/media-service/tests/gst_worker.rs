//! GStreamer-level tests: the fragmenter on a generated source, and the worker's placement
//! of dubbed audio and fallback substitution (file in, file out, fake STS).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use media_service::fragmenter::Fragmenter;
use media_service::metrics::Metrics;
use media_service::mix::{MixConfig, MixMode};
use media_service::pipeline::internal_caps;
use media_service::worker::{
    run_worker, DubEvent, Dubber, FragmentRecord, Outcome, WorkerConfig, WorkerEnd,
};
use sts_protocol::{
    AudioFormat, AudioPayload, FragmentData, FragmentProcessed, FragmentStatus, StageMs,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[test]
fn fragmenter_on_audiotestsrc_exact_count_durations_and_pts() {
    gst::init().unwrap();
    // 5.5 s of audio at 44.1 kHz mono, converted to the internal format like the worker does.
    let pipeline = gst::parse::launch(
        "audiotestsrc num-buffers=55 samplesperbuffer=4410 ! audio/x-raw,rate=44100,channels=1 ! audioconvert ! audioresample ! capsfilter name=cf ! appsink name=sink sync=false",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("cf")
        .unwrap()
        .set_property("caps", internal_caps());
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gstreamer_app::AppSink>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frag = Fragmenter::new(1000, 40);
    let mut out = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        let buf = sample.buffer().unwrap();
        let seg = sample
            .segment()
            .unwrap()
            .downcast_ref::<gst::ClockTime>()
            .unwrap()
            .clone();
        let rt = seg.to_running_time(buf.pts().unwrap()).unwrap().nseconds();
        let map = buf.map_readable().unwrap();
        let s: Vec<i16> = map
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        out.extend(frag.push(rt, &s));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    out.extend(frag.flush());
    assert_eq!(out.len(), 6, "5 whole fragments and one partial");
    for (i, f) in out.iter().enumerate().take(5) {
        assert_eq!(f.sequence, i as u64);
        assert_eq!(f.frames(), 48_000, "fragment {i} length");
        assert_eq!(f.start_ns, i as u64 * 1_000_000_000, "fragment {i} PTS");
        assert_eq!(f.duration_ns, 1_000_000_000);
        assert!(!f.partial);
    }
    let last = &out[5];
    assert!(last.partial);
    assert_eq!(last.start_ns, 5_000_000_000);
    // Resampling 44.1k -> 48k may leave a few frames of filter tail either way.
    assert!(
        (last.frames() as i64 - 24_000).abs() < 64,
        "last fragment has {} frames",
        last.frames()
    );
    assert_eq!(
        frag.stats().gap_frames_filled + frag.stats().overlap_frames_dropped,
        0,
        "a clean source needs no resync"
    );
}

/// Fake STS: answers even fragments with a 1 kHz tone after 100 ms, never answers odd
/// fragments except 3, which gets audio in the wrong format (malformed -> failed).
struct FakeSts {
    tx: mpsc::Sender<DubEvent>,
    ready: AtomicBool,
    /// This fragment is answered `no_speech` (no audio).
    no_speech_seq: Option<u64>,
}

fn tone16(freq: f64, samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 16_000.0).sin()) as i16)
        .collect()
}

impl Dubber for FakeSts {
    fn submit(&self, f: FragmentData) -> BoxFuture<'static, Result<(), String>> {
        let tx = self.tx.clone();
        let no_speech_seq = self.no_speech_seq;
        async move {
            let seq = f.sequence_number;
            let n = (f.duration_ms as usize) * 16;
            let no_speech = no_speech_seq == Some(seq);
            let reply = if no_speech {
                None
            } else if seq.is_multiple_of(2) {
                Some(AudioPayload::from_samples(
                    &AudioFormat::pcm_s16le(16_000, 1),
                    &tone16(1000.0, n),
                ))
            } else if seq == 3 {
                Some(AudioPayload::from_samples(
                    &AudioFormat::pcm_s16le(22_050, 1),
                    &tone16(1000.0, n),
                ))
            } else {
                None
            };
            if reply.is_some() || no_speech {
                let status = if no_speech {
                    FragmentStatus::NoSpeech
                } else {
                    FragmentStatus::Success
                };
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let p = FragmentProcessed {
                        fragment_id: f.fragment_id,
                        stream_id: f.stream_id,
                        sequence_number: seq,
                        status,
                        dubbed_audio: reply,
                        transcript: format!("text {seq}"),
                        translated_text: format!("texto {seq}"),
                        processing_time_ms: 100,
                        stage_ms: StageMs::default(),
                        error: None,
                    };
                    let _ = tx.send(DubEvent::Processed(Box::new(p))).await;
                });
            }
            Ok(())
        }
        .boxed()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dubbed_audio_is_placed_at_fragment_timestamps_and_missing_answers_fall_back() {
    gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    common::make_clip(&input, 8, 440);
    let output = dir.path().join("out.mkv");
    let (tx, rx) = mpsc::channel(16);
    let sts = Arc::new(FakeSts {
        tx,
        ready: AtomicBool::new(true),
        no_speech_seq: None,
    });
    let cfg = WorkerConfig {
        aac_bitrate: 128_000,
        segment_dir: Some(dir.path().join("seg")),
        // Placement is checked on the dubbed signal alone; voice-over has its own test.
        mix: MixConfig {
            mode: MixMode::Replace,
            ..MixConfig::default()
        },
        ..common::worker_config("placement", &input, &output)
    };
    let metrics = Arc::new(Metrics::new());
    let records: Arc<Mutex<Vec<FragmentRecord>>> = Arc::default();
    let r2 = records.clone();
    let hook = Arc::new(move |r: &FragmentRecord| r2.lock().unwrap().push(r.clone()));
    let end = tokio::time::timeout(
        Duration::from_secs(40),
        run_worker(
            cfg,
            sts,
            rx,
            metrics.clone(),
            Arc::default(),
            CancellationToken::new(),
            Some(hook),
        ),
    )
    .await
    .expect("worker finishes")
    .expect("worker succeeds");
    assert_eq!(end, WorkerEnd::Finished);

    let recs = records.lock().unwrap().clone();
    let statuses: Vec<Outcome> = recs.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            Outcome::Processed,
            Outcome::Fallback,
            Outcome::Processed,
            Outcome::Failed
        ],
        "0,2 dubbed; 1 unanswered -> fallback at its deadline; 3 malformed -> failed"
    );
    assert_eq!(recs[0].transcript, "text 0");
    let m = metrics.render();
    assert_eq!(
        common::metric(
            &m,
            "worker_audio_fragments_total",
            &["status=\"processed\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        common::metric(&m, "worker_audio_fragments_total", &["status=\"fallback\""]),
        Some(1.0)
    );
    assert_eq!(
        common::metric(&m, "worker_audio_fragments_total", &["status=\"failed\""]),
        Some(1.0)
    );

    // The output has H.264 + AAC, same length as the input, A/V aligned.
    let (v, a) = common::probe(&output);
    let (v, a) = (v.expect("video stream"), a.expect("audio stream"));
    assert_eq!(v.codec, "h264");
    assert_eq!(a.codec, "aac");
    assert!(
        (v.last_end - 8.0).abs() < 0.2,
        "video ends at {}",
        v.last_end
    );
    assert!(
        (a.last_end - v.last_end).abs() < 0.12,
        "audio ends at {}, video at {}",
        a.last_end,
        v.last_end
    );
    assert!(
        (a.first_pts - v.first_pts).abs() < 0.12,
        "audio starts at {}, video at {}",
        a.first_pts,
        v.first_pts
    );

    // Each 2 s window carries the right audio: 1 kHz where dubbed, 440 Hz where original.
    let pcm = common::decode_audio_16k(&output);
    let expect_dubbed = [true, false, true, false];
    for (k, dubbed) in expect_dubbed.iter().enumerate() {
        let w = &pcm[k * 32_000 + 3_200..(k + 1) * 32_000 - 3_200];
        let p1k = common::tone_power(w, 1000.0);
        let p440 = common::tone_power(w, 440.0);
        if *dubbed {
            assert!(
                p1k > 20.0 * p440,
                "fragment {k} should be dubbed (1 kHz): {p1k} vs {p440}"
            );
        } else {
            assert!(
                p440 > 20.0 * p1k,
                "fragment {k} should be original (440 Hz): {p440} vs {p1k}"
            );
        }
    }
    // The seam between dubbed fragment 0 and original fragment 1 is at 2.000 s (within 40 ms).
    let seam = (1_800..2_200)
        .step_by(10)
        .map(|ms| {
            let s = ms * 16;
            let w = &pcm[s..s + 160];
            (
                ms,
                common::tone_power(w, 440.0) > common::tone_power(w, 1000.0),
            )
        })
        .find(|(_, is440)| *is440)
        .map(|(ms, _)| ms)
        .expect("440 Hz starts near 2 s");
    assert!((seam as i64 - 2000).abs() <= 40, "seam at {seam} ms");

    // Artifacts: original WAVs for all, dubbed for the answered ones, one JSON line each.
    let seg = dir.path().join("seg/placement");
    assert!(seg.join("000000-original.wav").is_file());
    assert!(seg.join("000000-dubbed.wav").is_file());
    assert!(!seg.join("000001-dubbed.wav").exists());
    let lines = std::fs::read_to_string(seg.join("fragments.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_over_ducks_the_original_under_the_dub_and_no_speech_keeps_it() {
    gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    common::make_clip(&input, 6, 440);
    let output = dir.path().join("out.mkv");
    let (tx, rx) = mpsc::channel(16);
    let sts = Arc::new(FakeSts {
        tx,
        ready: AtomicBool::new(true),
        no_speech_seq: Some(1),
    });
    let cfg = WorkerConfig {
        aac_bitrate: 128_000,
        segment_dir: Some(dir.path().join("seg")),
        mix: MixConfig {
            mode: MixMode::VoiceOver,
            duck_db: -15.0,
        },
        ..common::worker_config("voiceover", &input, &output)
    };
    let metrics = Arc::new(Metrics::new());
    let records: Arc<Mutex<Vec<FragmentRecord>>> = Arc::default();
    let r2 = records.clone();
    let hook = Arc::new(move |r: &FragmentRecord| r2.lock().unwrap().push(r.clone()));
    let end = tokio::time::timeout(
        Duration::from_secs(40),
        run_worker(
            cfg,
            sts,
            rx,
            metrics.clone(),
            Arc::default(),
            CancellationToken::new(),
            Some(hook),
        ),
    )
    .await
    .expect("worker finishes")
    .expect("worker succeeds");
    assert_eq!(end, WorkerEnd::Finished);
    let statuses: Vec<Outcome> = records.lock().unwrap().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [Outcome::Processed, Outcome::NoSpeech, Outcome::Processed]
    );
    let m = metrics.render();
    assert_eq!(
        common::metric(
            &m,
            "worker_audio_fragments_total",
            &["status=\"no_speech\""]
        ),
        Some(1.0),
        "{m}"
    );
    let log = std::fs::read_to_string(dir.path().join("seg/voiceover/fragments.jsonl")).unwrap();
    assert!(
        log.lines()
            .nth(1)
            .is_some_and(|l| l.contains("\"status\":\"no_speech\"")),
        "{log}"
    );

    // The 440 Hz original is in every fragment: ducked by 15 dB (±2) under the dubbed 1 kHz,
    // at full level in the no-speech fragment, which carries no dub at all.
    let pcm = common::decode_audio_16k(&output);
    let win = |k: usize| &pcm[k * 32_000 + 3_200..(k + 1) * 32_000 - 3_200];
    let db = |p: f64| 10.0 * p.log10();
    let full = db(common::tone_power(win(1), 440.0));
    assert!(
        common::tone_power(win(1), 440.0) > 1000.0 * common::tone_power(win(1), 1000.0),
        "no_speech fragment is the original"
    );
    for k in [0, 2] {
        let ducked = db(common::tone_power(win(k), 440.0));
        eprintln!(
            "voice-over: fragment {k}: original 440 Hz {:.2} dB vs the no-speech fragment",
            ducked - full
        );
        assert!(
            (ducked - full + 15.0).abs() < 2.0,
            "fragment {k}: 440 Hz at {ducked:.1} dB vs {full:.1} dB unducked"
        );
        assert!(
            common::tone_power(win(k), 1000.0) > common::tone_power(win(k), 440.0),
            "fragment {k}: the dub is on top"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_unavailable_means_every_fragment_goes_out_original() {
    gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    common::make_clip(&input, 5, 440);
    let output = dir.path().join("out.flv");
    let (tx, rx) = mpsc::channel(16);
    let sts = Arc::new(FakeSts {
        tx,
        ready: AtomicBool::new(false),
        no_speech_seq: None,
    });
    let cfg = common::worker_config("down", &input, &output);
    let metrics = Arc::new(Metrics::new());
    let end = tokio::time::timeout(
        Duration::from_secs(30),
        run_worker(
            cfg,
            sts,
            rx,
            metrics.clone(),
            Arc::default(),
            CancellationToken::new(),
            None,
        ),
    )
    .await
    .expect("finishes")
    .expect("succeeds");
    assert_eq!(end, WorkerEnd::Finished);
    let m = metrics.render();
    assert_eq!(
        common::metric(&m, "worker_audio_fragments_total", &["status=\"fallback\""]),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        common::metric(
            &m,
            "worker_audio_fragments_total",
            &["status=\"processed\""]
        ),
        None
    );
    let pcm = common::decode_audio_16k(&output);
    assert!(
        pcm.len() > 16_000 * 4,
        "output audio is {} samples",
        pcm.len()
    );
    let w = &pcm[16_000..48_000];
    assert!(
        common::tone_power(w, 440.0) > 100.0 * common::tone_power(w, 1000.0),
        "original audio passes through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_worker_promptly() {
    gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.mp4");
    common::make_clip(&input, 20, 440);
    let (tx, rx) = mpsc::channel(16);
    let sts = Arc::new(FakeSts {
        tx,
        ready: AtomicBool::new(true),
        no_speech_seq: None,
    });
    let cfg = common::worker_config("cancel", &input, &dir.path().join("o.mp4"));
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        c2.cancel();
    });
    let t0 = std::time::Instant::now();
    let metrics = Arc::new(Metrics::new());
    let end = tokio::time::timeout(
        Duration::from_secs(15),
        run_worker(cfg, sts, rx, metrics.clone(), Arc::default(), cancel, None),
    )
    .await
    .expect("cancel is honoured")
    .expect("no error");
    assert_eq!(end, WorkerEnd::Cancelled);
    assert!(t0.elapsed() < Duration::from_secs(8));
    // The partial mp4 was finished (index written): it plays.
    let (v, a) = common::probe(&dir.path().join("o.mp4"));
    assert!(
        v.is_some_and(|v| v.packets > 0),
        "video in the partial file"
    );
    assert!(a.is_some(), "audio in the partial file");

    assert_eq!(
        common::metric(&metrics.render(), "worker_active_workers", &[]),
        Some(0.0)
    );
}
