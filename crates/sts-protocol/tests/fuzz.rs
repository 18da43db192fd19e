//! Fuzzing the protocol decoder: every event a peer can send, mutated from valid payloads
//! and from raw bytes, must come back as a typed value that passed validation or as a
//! [`ProtocolError`] — never a panic, never more decoded audio than the limit allows.
//!
//! Bounded by `FUZZ_SECS` per target (default a few seconds in `cargo test`; `make fuzz`
//! runs longer). A failure prints `FUZZ_SEED=… FUZZ_CASE=…` to replay it.

use livedub_fuzzkit::{mutate_bytes, mutate_json, run, Rng};
use serde_json::{json, Value};
use sts_protocol::{
    decode_pcm_base64, encode_pcm_base64, parse_payload, AudioFormat, AudioPayload, ErrorEvent,
    FragmentAck, FragmentData, FragmentProcessed, FragmentStatus, ProtocolError, StageMs,
    StreamControl, StreamInit, StreamInitAck, ACCEPTED_SAMPLE_RATES,
};

/// A small decoded-size limit, so oversize cases are frequent.
const MAX_BYTES: usize = 64 * 1024;

fn valid_fragment(rng: &mut Rng) -> (AudioFormat, Value) {
    let rate = *rng.pick(ACCEPTED_SAMPLE_RATES);
    let channels = rng.range(1, 2) as u16;
    let format = AudioFormat::pcm_s16le(rate, channels);
    // Up to 300 ms: 57,600 bytes at 48 kHz stereo, under MAX_BYTES.
    let duration_ms = rng.range(1, 300) as u32;
    let samples: Vec<i16> = (0..format.samples_for_ms(duration_ms))
        .map(|_| rng.next_u64() as i16)
        .collect();
    let v = json!({
        "fragment_id": format!("f-{}", rng.below(1000)),
        "stream_id": "s1",
        "sequence_number": rng.below(10_000),
        "pts_ms": rng.below(1 << 40),
        "duration_ms": duration_ms,
        "audio": AudioPayload::from_samples(&format, &samples),
    });
    (format, v)
}

fn valid_init(rng: &mut Rng) -> Value {
    json!({
        "stream_id": format!("live/s{}", rng.below(100)),
        "source_language": "en",
        "target_language": "es",
        "voice": if rng.one_in(2) { Value::Null } else { json!("es-1") },
        "fragment_duration_ms": rng.range(1, 30_000),
        "audio": {"format": "pcm_s16le", "sample_rate_hz": 48000, "channels": 2},
    })
}

/// A mutated payload: as a JSON value, as the pre-serialised string form some clients
/// send, or as raw mutated bytes wrapped in a string.
fn hostile(rng: &mut Rng, mut v: Value) -> Value {
    match rng.below(3) {
        0 => {
            mutate_json(rng, &mut v);
            v
        }
        1 => {
            mutate_json(rng, &mut v);
            Value::String(v.to_string())
        }
        _ => {
            let mut bytes = v.to_string().into_bytes();
            mutate_bytes(rng, &mut bytes);
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// A refusal must say something a client can act on, in bounded size.
fn error_is_named(e: &ProtocolError) -> Result<(), String> {
    let text = e.to_string();
    if text.trim().is_empty() || text.chars().count() > 1024 {
        return Err(format!(
            "unhelpful error text ({} bytes): {text:.200}",
            text.len()
        ));
    }
    Ok(())
}

/// What a server does with a fragment: decoded audio within the limit and matching the
/// declared duration to one frame, or a named error.
fn check_fragment(format: &AudioFormat, payload: Value) -> Result<(), String> {
    let frag = match parse_payload::<FragmentData>(payload) {
        Ok(f) => f,
        Err(e) => return error_is_named(&e),
    };
    match frag.validate_and_decode(format, MAX_BYTES) {
        Ok(samples) => {
            if samples.len() * 2 > MAX_BYTES {
                return Err(format!(
                    "{} bytes decoded past the {MAX_BYTES} limit",
                    samples.len() * 2
                ));
            }
            let frames = (samples.len() / usize::from(format.channels)) as u64;
            let exact = u64::from(frag.duration_ms) * u64::from(format.sample_rate_hz);
            if (frames * 1000).abs_diff(exact) > 1000 {
                return Err(format!(
                    "{frames} frames accepted for {} ms",
                    frag.duration_ms
                ));
            }
            Ok(())
        }
        Err(e) => error_is_named(&e),
    }
}

#[test]
fn fuzz_fragment_data() {
    let report = run("protocol/fragment:data", |rng| {
        let (format, v) = valid_fragment(rng);
        // Now and then the unmutated payload, which must pass: a harness whose every case
        // is refused would test nothing.
        if rng.one_in(16) {
            let frag: FragmentData = parse_payload(v).map_err(|e| e.to_string())?;
            return frag
                .validate_and_decode(&format, MAX_BYTES)
                .map(drop)
                .map_err(|e| format!("a valid fragment was refused: {e}"));
        }
        check_fragment(&format, hostile(rng, v))
    });
    assert!(report.cases > 100, "only {} cases ran", report.cases);
}

#[test]
fn fuzz_stream_init_and_controls() {
    run("protocol/stream:init+controls", |rng| {
        let init = valid_init(rng);
        let v = hostile(rng, init);
        match parse_payload::<StreamInit>(v.clone()) {
            Ok(init) => {
                if let Err(e) = init.validate() {
                    error_is_named(&e)?;
                }
            }
            Err(e) => error_is_named(&e)?,
        }
        if let Ok(ctl) = parse_payload::<StreamControl>(v) {
            if let Err(e) = ctl.validate() {
                error_is_named(&e)?;
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_server_answers_read_by_the_client() {
    // What the media-service parses from the STS: a broken or hostile STS must not crash it.
    let seeds = [
        json!({"status": "ready", "session_id": "x", "max_inflight": 2,
               "max_fragment_bytes": 1024, "protocol_version": "1.1"}),
        json!({"status": "accepted"}),
        json!({"code": "PROCESSING_TIMEOUT", "message": "late", "stream_id": "s1"}),
        serde_json::to_value(FragmentProcessed {
            fragment_id: "f1".into(),
            stream_id: "s1".into(),
            sequence_number: 1,
            status: FragmentStatus::Success,
            dubbed_audio: Some(AudioPayload::from_samples(
                &AudioFormat::pcm_s16le(48_000, 2),
                &[0, 1, -1, 7],
            )),
            transcript: "one".into(),
            translated_text: "uno".into(),
            processing_time_ms: 5,
            stage_ms: StageMs::default(),
            error: None,
        })
        .expect("a FragmentProcessed serialises"),
    ];
    for seed in &seeds {
        assert!(
            parse_payload::<StreamInitAck>(seed.clone()).is_ok()
                || parse_payload::<FragmentAck>(seed.clone()).is_ok()
                || parse_payload::<ErrorEvent>(seed.clone()).is_ok()
                || parse_payload::<FragmentProcessed>(seed.clone()).is_ok(),
            "seed {seed} parses as nothing: the harness would test only refusals"
        );
    }
    run("protocol/server answers", |rng| {
        let seed = rng.pick(&seeds).clone();
        let v = hostile(rng, seed);
        let _ = parse_payload::<StreamInitAck>(v.clone());
        let _ = parse_payload::<FragmentAck>(v.clone());
        let _ = parse_payload::<ErrorEvent>(v.clone());
        if let Ok(p) = parse_payload::<FragmentProcessed>(v) {
            if let Some(audio) = p.dubbed_audio {
                if let Ok(samples) = audio.decode(MAX_BYTES) {
                    if samples.len() * 2 > MAX_BYTES {
                        return Err("dubbed audio decoded past the limit".into());
                    }
                }
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_base64_pcm_round_trip() {
    run("protocol/base64 pcm", |rng| {
        let samples: Vec<i16> = (0..rng.below(2048))
            .map(|_| rng.next_u64() as i16)
            .collect();
        let text = encode_pcm_base64(&samples);
        let back = decode_pcm_base64(&text).map_err(|e| e.to_string())?;
        if back != samples {
            return Err(format!("round trip changed {} samples", samples.len()));
        }
        let mut bytes = text.into_bytes();
        mutate_bytes(rng, &mut bytes);
        let _ = decode_pcm_base64(&String::from_utf8_lossy(&bytes));
        Ok(())
    });
}
