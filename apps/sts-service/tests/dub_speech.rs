//! Real speech through the full pipeline (Whisper tiny.en, Apertium, espeak-ng) over a real
//! Socket.IO client.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

const SPANISH: [&str; 6] = ["uno", "dos", "tres", "cuatro", "cinco", "seis"];
const ENGLISH: [&str; 6] = ["one", "two", "three", "four", "five", "six"];

fn has_number(text: &str, n: usize, words: &[&str]) -> bool {
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    tokens.contains(&n.to_string().as_str()) || tokens.contains(&words[n - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_one_to_six_is_transcribed_translated_and_dubbed_to_exactly_six_seconds() {
    let srv = start_server(&[]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    let monitor = connect(srv.addr, None).await.expect("monitor connects");
    let sub = monitor
        .call("monitor:subscribe", json!({"stream_id": "count-1"}))
        .await;
    assert_eq!(sub["status"], "ok", "{sub}");

    let ack = c
        .call("stream:init", init_payload("count-1", 16000, 1))
        .await;
    assert_eq!(ack["status"], "ready", "{ack}");
    assert_eq!(ack["protocol_version"], sts_protocol::PROTOCOL_VERSION);

    let speech = spoken_words(&ENGLISH);
    assert_eq!(speech.len(), 96000);
    let ack = c
        .call(
            "fragment:data",
            fragment_payload("count-1", 0, 16000, 1, &speech),
        )
        .await;
    assert_eq!(ack, json!({"status": "accepted"}));
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(120), |_| true)
        .await;
    assert_eq!(ev["status"], "success", "{ev}");
    let transcript = ev["transcript"].as_str().unwrap();
    let translated = ev["translated_text"].as_str().unwrap();
    eprintln!(
        "transcript={transcript:?} translation={translated:?} stage_ms={}",
        ev["stage_ms"]
    );
    for n in 1..=6 {
        assert!(
            has_number(transcript, n, &ENGLISH),
            "transcript {transcript:?} lacks {n}"
        );
        assert!(
            has_number(translated, n, &SPANISH),
            "translation {translated:?} lacks {n}"
        );
    }
    let dubbed = dubbed_samples(&ev);
    assert_eq!(dubbed.len(), 96000, "exactly 6.000 s at 16 kHz");
    assert_eq!(ev["dubbed_audio"]["sample_rate_hz"], 16000);
    assert_eq!(ev["dubbed_audio"]["channels"], 1);
    let f = livedub_audio::i16_to_f32(&dubbed);
    assert!(
        livedub_audio::rms_dbfs(&f) > -35.0,
        "dubbed audio is not silent: {} dBFS",
        livedub_audio::rms_dbfs(&f)
    );
    // Dubbed speech is Spanish TTS, not an echo of the input.
    assert_ne!(dubbed, speech);
    for k in ["asr", "translation", "tts", "fit"] {
        assert!(ev["stage_ms"][k].is_u64(), "stage_ms.{k}");
    }

    // The monitor got a copy.
    let copy = monitor
        .wait_for("fragment:processed", Duration::from_secs(5), |_| true)
        .await;
    assert_eq!(copy["fragment_id"], ev["fragment_id"]);

    // Silence: empty transcript, `no_speech`, no dubbed audio (the client keeps its original).
    let silence = vec![0i16; 96000];
    let ack = c
        .call(
            "fragment:data",
            fragment_payload("count-1", 1, 16000, 1, &silence),
        )
        .await;
    assert_eq!(ack["status"], "accepted");
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(60), |v| {
            v["sequence_number"] == 1
        })
        .await;
    assert_eq!(ev["status"], "no_speech", "{ev}");
    assert_eq!(ev["transcript"], "");
    assert_eq!(ev["translated_text"], "");
    assert!(
        ev.get("dubbed_audio").is_none(),
        "no replacement audio: {ev}"
    );

    // End: stream:complete with totals, to the owner and the monitor.
    let ack = c.call("stream:end", json!({"stream_id": "count-1"})).await;
    assert_eq!(ack["status"], "ok");
    let done = c
        .wait_for("stream:complete", Duration::from_secs(10), |_| true)
        .await;
    assert_eq!(
        done["totals"],
        json!({"success": 1, "partial": 0, "failed": 0, "timeout": 0, "no_speech": 1})
    );
    monitor
        .wait_for("stream:complete", Duration::from_secs(5), |_| true)
        .await;

    // Metrics saw it.
    let m = reqwest::get(format!("http://{}/metrics", srv.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("sts_fragments_total{status=\"success\"} 1")
            && m.contains("sts_fragments_total{status=\"no_speech\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("sts_stage_duration_seconds_count{stage=\"asr\"} 2"),
        "{m}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stereo_48k_stream_gets_stereo_48k_answer_of_exact_length() {
    let srv = start_server(&[]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    let ack = c.call("stream:init", init_payload("st-48", 48000, 2)).await;
    assert_eq!(ack["status"], "ready", "{ack}");
    // "one two three" at 16 kHz -> 48 kHz stereo, 3 s.
    let mono16 = livedub_audio::i16_to_f32(&spoken_words(&ENGLISH[..3]));
    let mono48 = livedub_audio::resample(&mono16, 16000, 48000).unwrap();
    let stereo = livedub_audio::f32_to_i16(&livedub_audio::upmix(&mono48, 2));
    let ack = c
        .call(
            "fragment:data",
            fragment_payload("st-48", 0, 48000, 2, &stereo),
        )
        .await;
    assert_eq!(ack["status"], "accepted", "{ack}");
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(120), |_| true)
        .await;
    assert!(
        ev["status"] == "success" || ev["status"] == "partial",
        "{ev}"
    );
    assert_eq!(ev["dubbed_audio"]["sample_rate_hz"], 48000);
    assert_eq!(ev["dubbed_audio"]["channels"], 2);
    assert_eq!(dubbed_samples(&ev).len(), 3 * 48000 * 2);
    let t = ev["transcript"].as_str().unwrap();
    assert!(
        has_number(t, 1, &ENGLISH) && has_number(t, 3, &ENGLISH),
        "{t}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}

/// The value of one sample line of a Prometheus text exposition (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Three streams' fragments queue for the one ASR thread with 150 ms to live: the thread
/// does not transcribe the ones whose deadline passed while they waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_its_deadlines_is_shed_not_transcribed() {
    let srv = start_server(&[]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    let speech = spoken_words(&ENGLISH[..3]);
    let streams = ["shed-a", "shed-b", "shed-c"];
    for id in streams {
        let ack = c.call("stream:init", init_payload(id, 16000, 1)).await;
        assert_eq!(ack["status"], "ready", "{ack}");
    }
    // The first fragment (no deadline) occupies the ASR thread; the two sent once its
    // batch has started (its gather wait is at most 180 ms) queue behind it with 30 ms to
    // live, less than its ASR takes: they must be shed, not transcribed. (Fragments that
    // arrive together share one batch, see engines::asr.)
    let first = fragment_payload(streams[0], 0, 16000, 1, &speech);
    assert_eq!(c.call("fragment:data", first).await["status"], "accepted");
    tokio::time::sleep(Duration::from_millis(250)).await;
    for id in &streams[1..] {
        let mut f = fragment_payload(id, 0, 16000, 1, &speech);
        f["answer_within_ms"] = json!(30);
        assert_eq!(c.call("fragment:data", f).await["status"], "accepted");
    }
    for id in streams {
        let ev = c
            .wait_for("fragment:processed", Duration::from_secs(60), move |v| {
                v["stream_id"] == id
            })
            .await;
        if id == streams[0] {
            assert_eq!(ev["status"], "success", "{ev}");
            continue;
        }
        assert_eq!(ev["status"], "timeout", "{ev}");
        assert!(ev.get("dubbed_audio").is_none(), "{ev}");
    }
    let m = metrics_text(srv.addr).await;
    let before_asr = metric(&m, "sts_fragments_shed_total{stage=\"asr\"}");
    let before_tts = metric(&m, "sts_fragments_shed_total{stage=\"tts\"}");
    let transcribed = metric(&m, "sts_stage_duration_seconds_count{stage=\"asr\"}");
    eprintln!("shed before asr {before_asr}, before tts {before_tts}; transcribed {transcribed}");
    assert_eq!(before_asr, 2.0, "the queued ones were not transcribed: {m}");
    assert_eq!(before_tts, 0.0, "{m}");
    srv.shutdown();
    srv.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_language_pair_is_rejected_at_init() {
    let srv = start_server(&[]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    let mut p = init_payload("lang-1", 16000, 1);
    p["source_language"] = json!("de");
    let ack = c.call("stream:init", p).await;
    assert_eq!(ack["status"], "rejected");
    assert_eq!(ack["error"]["code"], "UNSUPPORTED_LANGUAGE", "{ack}");
    srv.shutdown();
    srv.wait().await.unwrap();
}

/// Music made by sox (installed with the Debian set-up), 16 kHz mono s16.
fn sox_music(args: &[&str]) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.wav");
    let mut cmd = std::process::Command::new("sox");
    cmd.args(["-n", "-r", "16000", "-c", "1", "-b", "16"])
        .arg(&p)
        .args(args);
    assert!(cmd.status().expect("sox is installed").success());
    let w = livedub_audio::read_wav(&p).unwrap();
    let mut s = livedub_audio::f32_to_i16(&w.samples);
    s.resize(96000, 0);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn music_only_fragments_give_no_text_and_silent_audio() {
    let srv = start_server(&[]).await;
    let c = connect(srv.addr, None).await.expect("connect");
    assert_eq!(
        c.call("stream:init", init_payload("music", 16000, 1)).await["status"],
        "ready"
    );
    let plucked = sox_music(&[
        "synth", "6", "pluck", "C4", "pluck", "E4", "pluck", "G4", "remix", "-", "tremolo", "3",
        "60",
    ]);
    let chords = sox_music(&[
        "synth", "1.5", "sine", "440", "sine", "554", "sine", "659", ":", "synth", "1.5", "sine",
        "392", "sine", "494", "sine", "587", ":", "synth", "3", "sine", "349", "sine", "440",
        "sine", "523", "remix", "-",
    ]);
    for (seq, m) in [plucked, chords].iter().enumerate() {
        let ack = c
            .call(
                "fragment:data",
                fragment_payload("music", seq as u64, 16000, 1, m),
            )
            .await;
        assert_eq!(ack["status"], "accepted", "{ack}");
        let ev = c
            .wait_for("fragment:processed", Duration::from_secs(60), |v| {
                v["sequence_number"] == seq
            })
            .await;
        assert_eq!(ev["status"], "no_speech", "{ev}");
        assert_eq!(ev["transcript"], "", "music #{seq} must not produce text");
        assert!(
            ev.get("dubbed_audio").is_none(),
            "music #{seq}: no replacement audio (the client keeps the music)"
        );
    }
    srv.shutdown();
    srv.wait().await.unwrap();
}
