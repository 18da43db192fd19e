use super::*;
use serde_json::json;

fn init_json() -> serde_json::Value {
    json!({
        "stream_id": "live/demo-1",
        "source_language": "en",
        "target_language": "es",
        "fragment_duration_ms": 6000,
        "audio": {"format": "pcm_s16le", "sample_rate_hz": 16000, "channels": 1}
    })
}

fn fragment(duration_ms: u32, samples: usize) -> FragmentData {
    let fmt = AudioFormat::pcm_s16le(16000, 1);
    FragmentData {
        fragment_id: "f-0".into(),
        stream_id: "live/demo-1".into(),
        sequence_number: 0,
        pts_ms: 0,
        duration_ms,
        audio: AudioPayload::from_samples(&fmt, &vec![7i16; samples]),
        answer_within_ms: None,
    }
}

#[test]
fn stream_init_roundtrip_and_validate() {
    let init: StreamInit = parse_payload(init_json()).unwrap();
    assert_eq!(init.audio.sample_rate_hz, 16000);
    assert_eq!(init.voice, None);
    init.validate().unwrap();
    let back = serde_json::to_value(&init).unwrap();
    assert_eq!(back, init_json());
}

#[test]
fn stream_init_from_json_string_is_accepted() {
    let s = init_json().to_string();
    let init: StreamInit = parse_payload(serde_json::Value::String(s)).unwrap();
    assert_eq!(init.stream_id, "live/demo-1");
}

#[test]
fn malformed_json_is_classified() {
    let e = parse_payload::<StreamInit>(json!("{not json")).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedJson);
    let e = parse_payload::<StreamInit>(json!([1, 2])).unwrap_err();
    assert_eq!(e.code(), ErrorCode::MalformedJson);
    assert!(e.to_string().contains("an array"), "{e}");
}

#[test]
fn missing_field_is_named() {
    let mut v = init_json();
    v.as_object_mut().unwrap().remove("audio");
    let e = parse_payload::<StreamInit>(v).unwrap_err();
    assert_eq!(e, ProtocolError::MissingField("audio".into()));
    assert_eq!(e.code(), ErrorCode::MissingField);
}

#[test]
fn wrong_type_is_classified() {
    let mut v = init_json();
    v["fragment_duration_ms"] = json!("six seconds");
    let e = parse_payload::<StreamInit>(v).unwrap_err();
    assert_eq!(e.code(), ErrorCode::WrongType);
}

#[test]
fn invalid_ids_are_rejected() {
    for bad in ["", "has space", "ümlaut", &"x".repeat(129)] {
        let e = validate_id("stream_id", bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidField, "{bad:?}");
        assert!(e.to_string().contains("stream_id"));
    }
    validate_id("stream_id", "live/cam-1_a.b:c").unwrap();
    validate_id("stream_id", &"x".repeat(128)).unwrap();
}

#[test]
fn audio_params_are_checked() {
    let mut init: StreamInit = parse_payload(init_json()).unwrap();
    init.audio.sample_rate_hz = 11025;
    let e = init.validate().unwrap_err();
    assert_eq!(e.code(), ErrorCode::UnsupportedAudioParams);
    assert!(
        e.to_string().contains("16000"),
        "names accepted values: {e}"
    );
    init.audio.sample_rate_hz = 48000;
    init.audio.channels = 6;
    assert_eq!(
        init.validate().unwrap_err().code(),
        ErrorCode::UnsupportedAudioParams
    );
    init.audio.channels = 2;
    init.audio.format = "f32le".into();
    assert_eq!(
        init.validate().unwrap_err().code(),
        ErrorCode::UnsupportedAudioFormat
    );
    init.audio.format = PCM_S16LE.into();
    init.fragment_duration_ms = 0;
    assert_eq!(init.validate().unwrap_err().code(), ErrorCode::InvalidField);
    init.fragment_duration_ms = 6000;
    init.target_language = "e s".into();
    assert_eq!(init.validate().unwrap_err().code(), ErrorCode::InvalidField);
}

#[test]
fn fragment_length_must_match_duration_within_one_frame() {
    let fmt = AudioFormat::pcm_s16le(16000, 1);
    let ok = fragment(6000, 96000);
    assert_eq!(
        ok.validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
            .unwrap()
            .len(),
        96000
    );
    fragment(6000, 95999)
        .validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap();
    fragment(6000, 96001)
        .validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap();
    for n in [95998, 96002, 48000, 0] {
        let e = fragment(6000, n)
            .validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::AudioLengthMismatch, "{n}");
        assert!(e.to_string().contains("192000"), "{e}");
    }
}

#[test]
fn stereo_fragment_needs_whole_frames() {
    let fmt = AudioFormat::pcm_s16le(48000, 2);
    let mut f = fragment(10, 960);
    f.audio = AudioPayload::from_samples(&fmt, &[1i16; 960]);
    f.validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap();
    f.audio = AudioPayload::from_samples(&fmt, &[1i16; 961]);
    let e = f
        .validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AudioLengthMismatch);
}

#[test]
fn fragment_format_must_match_stream() {
    let declared = AudioFormat::pcm_s16le(48000, 2);
    let e = fragment(6000, 96000)
        .validate_and_decode(&declared, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AudioFormatMismatch);
    assert!(e.to_string().contains("48000"), "{e}");
}

#[test]
fn bad_base64_is_rejected() {
    let fmt = AudioFormat::pcm_s16le(16000, 1);
    let mut f = fragment(6000, 96000);
    f.audio.data = "!!!not base64!!!".into();
    let e = f
        .validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidBase64);
    // Three bytes: valid base64, but not whole 16-bit samples.
    f.audio.data = "AAAA".into();
    let e = f
        .validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidBase64);
}

#[test]
fn oversize_is_rejected_before_decoding() {
    let fmt = AudioFormat::pcm_s16le(16000, 1);
    let mut f = fragment(6000, 96000);
    let e = f.validate_and_decode(&fmt, 100_000).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PayloadTooLarge);
    // Garbage that is too long must be called too large, not bad base64.
    f.audio.data = "!".repeat(1_000_000);
    let e = f.validate_and_decode(&fmt, 100_000).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PayloadTooLarge);
    // The header check alone says the same without decoding, and bounds what decoding
    // can produce.
    let e = f.check_header(&fmt, 100_000).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PayloadTooLarge);
    let ok = fragment(6000, 96000);
    let bound = ok.check_header(&fmt, DEFAULT_MAX_FRAGMENT_BYTES).unwrap();
    let decoded = ok
        .validate_and_decode(&fmt, DEFAULT_MAX_FRAGMENT_BYTES)
        .unwrap();
    assert!(decoded.len() * 2 <= bound && bound <= decoded.len() * 2 + 3);
}

#[test]
fn pcm_base64_roundtrip() {
    let samples: Vec<i16> = vec![0, 1, -1, i16::MAX, i16::MIN, 1234, -4321];
    let b64 = encode_pcm_base64(&samples);
    assert_eq!(decode_pcm_base64(&b64).unwrap(), samples);
    // Little-endian on the wire: 1 -> 01 00.
    assert_eq!(encode_pcm_base64(&[1]), "AQA=");
}

#[test]
fn acks_serialise_with_status_tag() {
    let ready = StreamInitAck::Ready {
        session_id: "s1".into(),
        resume_token: None,
        max_inflight: 3,
        max_fragment_bytes: 1000,
        protocol_version: PROTOCOL_VERSION.into(),
    };
    let v = serde_json::to_value(&ready).unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["protocol_version"], "1.3");
    assert!(v.get("resume_token").is_none(), "absent when None: {v}");
    // A 1.1 server's ack (no resume_token) still parses.
    let old: StreamInitAck = serde_json::from_value(json!({"status": "ready", "session_id": "s",
        "max_inflight": 3, "max_fragment_bytes": 1000, "protocol_version": "1.1"}))
    .unwrap();
    assert!(matches!(
        old,
        StreamInitAck::Ready {
            resume_token: None,
            ..
        }
    ));
    let rej = FragmentAck::Rejected {
        error: ErrorBody::new(ErrorCode::Backpressure, "queue full"),
    };
    let v = serde_json::to_value(&rej).unwrap();
    assert_eq!(
        v,
        json!({"status": "rejected", "error": {"code": "BACKPRESSURE", "message": "queue full"}})
    );
    assert_eq!(
        serde_json::to_value(FragmentAck::Accepted).unwrap(),
        json!({"status": "accepted"})
    );
    let back: FragmentAck = serde_json::from_value(v).unwrap();
    assert_eq!(back, rej);
}

#[test]
fn error_codes_are_screaming_snake_and_match_as_str() {
    for code in [
        ErrorCode::MalformedJson,
        ErrorCode::AudioLengthMismatch,
        ErrorCode::StreamNotInitialized,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ProcessingTimeout,
        ErrorCode::Unauthorized,
        ErrorCode::TooManySessions,
        ErrorCode::TooManyStreams,
        ErrorCode::SessionQueueFull,
        ErrorCode::MonitorNotAllowed,
        ErrorCode::StreamAlreadyExists,
    ] {
        let v = serde_json::to_value(code).unwrap();
        assert_eq!(v, json!(code.as_str()));
        assert!(code
            .as_str()
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_'));
    }
    let unknown: ErrorCode = serde_json::from_value(json!("SOMETHING_NEW")).unwrap();
    assert_eq!(unknown, ErrorCode::Unknown);
}

#[test]
fn processed_event_shape() {
    let fmt = AudioFormat::pcm_s16le(16000, 1);
    let ev = FragmentProcessed {
        fragment_id: "f-1".into(),
        stream_id: "s".into(),
        sequence_number: 1,
        status: FragmentStatus::Success,
        dubbed_audio: Some(AudioPayload::from_samples(&fmt, &[0; 4])),
        transcript: "1, 2.".into(),
        translated_text: "1, 2.".into(),
        processing_time_ms: 420,
        stage_ms: StageMs {
            asr: 300,
            translation: 3,
            tts: 20,
            fit: 5,
        },
        error: None,
    };
    let v = serde_json::to_value(&ev).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["dubbed_audio"]["sample_rate_hz"], 16000);
    assert_eq!(v["stage_ms"]["asr"], 300);
    assert!(v.get("error").is_none());
    let back: FragmentProcessed = serde_json::from_value(v).unwrap();
    assert_eq!(back, ev);
}

#[test]
fn backpressure_and_complete_shapes() {
    let bp = Backpressure {
        stream_id: "s".into(),
        inflight: 3,
        max_inflight: 3,
        action: BackpressureAction::SlowDown,
    };
    assert_eq!(serde_json::to_value(&bp).unwrap()["action"], "slow_down");
    let mut totals = Totals::default();
    totals.add(FragmentStatus::Success);
    totals.add(FragmentStatus::Timeout);
    assert_eq!(totals.total(), 2);
    let c = StreamComplete {
        stream_id: "s".into(),
        totals,
    };
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        json!({"stream_id": "s", "totals": {"success": 1, "partial": 0, "failed": 0, "timeout": 1, "no_speech": 0}})
    );
    // A 1.0 server's totals (no `no_speech`) still parse.
    let old: Totals =
        serde_json::from_value(json!({"success": 1, "partial": 0, "failed": 0, "timeout": 1}))
            .unwrap();
    assert_eq!(old.no_speech, 0);
    assert_eq!(old.total(), 2);
}

#[test]
fn no_speech_answer_has_no_audio_and_round_trips() {
    let v = json!({"fragment_id": "f-2", "stream_id": "s", "sequence_number": 2,
        "status": "no_speech", "transcript": "", "translated_text": "",
        "processing_time_ms": 40, "stage_ms": {"asr": 30, "translation": 0, "tts": 0, "fit": 0}});
    let ev: FragmentProcessed = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(ev.status, FragmentStatus::NoSpeech);
    assert_eq!(ev.status.as_str(), "no_speech");
    assert!(ev.dubbed_audio.is_none());
    assert_eq!(serde_json::to_value(&ev).unwrap(), v);
    let mut totals = Totals::default();
    totals.add(FragmentStatus::NoSpeech);
    assert_eq!((totals.no_speech, totals.total()), (1, 1));
}

#[test]
fn frames_for_ms_rounds() {
    let f = AudioFormat::pcm_s16le(44100, 2);
    assert_eq!(f.frames_for_ms(1000), 44100);
    assert_eq!(f.frames_for_ms(1), 44);
    assert_eq!(f.samples_for_ms(1000), 88200);
    assert_eq!(AudioFormat::pcm_s16le(22050, 1).frames_for_ms(6000), 132300);
}

#[test]
fn errors_quote_a_hostile_value_only_in_part() {
    let long = "x".repeat(10_000);
    let mut f = AudioFormat::pcm_s16le(48_000, 2);
    f.format = long.clone();
    let text = f.validate().unwrap_err().to_string();
    assert!(text.len() < 200, "{} bytes: {text:.120}", text.len());
    assert!(text.contains("10000 bytes"), "{text}");
    // serde's own messages quote the value too.
    let e = parse_payload::<StreamControl>(serde_json::json!({ "stream_id": long })).map(drop);
    let e = e.err().map(|e| e.to_string()).unwrap_or_default();
    // A 10 000-character id parses (then fails validate_id); a wrong type is quoted by serde.
    let wrong = parse_payload::<StreamInit>(serde_json::json!({
        "stream_id": "s", "source_language": "en", "target_language": "es",
        "fragment_duration_ms": "9".repeat(10_000),
        "audio": {"format": "pcm_s16le", "sample_rate_hz": 48000, "channels": 2}
    }))
    .unwrap_err()
    .to_string();
    assert!(
        wrong.chars().count() < 400,
        "{} chars",
        wrong.chars().count()
    );
    assert!(e.len() < 400);
    // Short values are quoted whole.
    assert_eq!(clip("pcm_f32"), "pcm_f32");
}

#[test]
fn init_request_carries_the_resume_token_beside_the_init_fields() {
    let init = StreamInit {
        stream_id: "live/a".into(),
        source_language: "en".into(),
        target_language: "es".into(),
        voice: None,
        fragment_duration_ms: 6000,
        audio: AudioFormat::pcm_s16le(16000, 1),
    };
    let v = serde_json::to_value(StreamInitRequest {
        init: &init,
        resume_token: Some("tok"),
    })
    .unwrap();
    assert_eq!(v["stream_id"], "live/a");
    assert_eq!(v[RESUME_TOKEN_FIELD], "tok");
    // The server parses the same payload as a plain StreamInit (the extra field is ignored)
    // and reads the token apart, also from a pre-serialised string.
    assert_eq!(parse_payload::<StreamInit>(v.clone()).unwrap(), init);
    assert_eq!(resume_token_of(&v).as_deref(), Some("tok"));
    assert_eq!(
        resume_token_of(&json!(v.to_string())).as_deref(),
        Some("tok")
    );
    let without = serde_json::to_value(StreamInitRequest {
        init: &init,
        resume_token: None,
    })
    .unwrap();
    assert!(without.get(RESUME_TOKEN_FIELD).is_none());
    assert_eq!(resume_token_of(&without), None);
    // Wrong type, empty or oversize tokens are ignored.
    assert_eq!(resume_token_of(&json!({"resume_token": 5})), None);
    assert_eq!(resume_token_of(&json!({"resume_token": ""})), None);
    let long = "x".repeat(MAX_RESUME_TOKEN_LEN + 1);
    assert_eq!(resume_token_of(&json!({ "resume_token": long })), None);
}

#[test]
fn answer_within_ms_is_optional_both_ways() {
    // A 1.2 client's fragment (no field) parses, and a fragment without it is sent as 1.2
    // servers know it.
    let mut f = fragment(1000, 16000);
    let v = serde_json::to_value(&f).unwrap();
    assert!(v.get("answer_within_ms").is_none(), "{v}");
    let back: FragmentData = parse_payload(v.clone()).unwrap();
    assert_eq!(back.answer_within_ms, None);
    f.answer_within_ms = Some(2400);
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v["answer_within_ms"], 2400);
    let back: FragmentData = parse_payload(v).unwrap();
    assert_eq!(back.answer_within_ms, Some(2400));
}
