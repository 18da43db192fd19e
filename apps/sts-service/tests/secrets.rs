//! Secrets never leave the process: translation and TTS providers that fail, configured
//! with a marker key, answering errors that echo the key and a URL. The marker must appear
//! in no `fragment:processed` event, no log line (captured at LOG_LEVEL=TRACE) and no
//! `/metrics` text. Full pipeline (Whisper tiny.en, espeak-ng), real Socket.IO client.

mod common;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MARKER: &str = "SECRET-MARKER-7f3a";

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test process, with the filter LOG_LEVEL=TRACE gives the service.
fn capture_logs() -> LogBuffer {
    let buf = LogBuffer::default();
    let w = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(sts_service::log_filter(
            "trace",
        )))
        .with_ansi(false)
        .with_writer(move || w.clone())
        .try_init()
        .expect("the test installs the only subscriber");
    buf
}

/// A handler that fails with `status`, quoting the `header` it got (and a URL) via `text`.
fn leaky(
    header: &'static str,
    status: StatusCode,
    text: fn(&str) -> String,
) -> axum::routing::MethodRouter {
    axum::routing::post(move |headers: HeaderMap| async move {
        let got = headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        (status, text(&got))
    })
}

/// Providers that leak what they can: translation (LibreTranslate `/translate`) works,
/// Google and TTS (`/v1/audio/speech`) fail quoting the key they got and a URL.
async fn leaky_providers() -> String {
    let app = axum::Router::new()
        .route(
            "/translate",
            axum::routing::post(|| async { axum::Json(json!({"translatedText": "uno dos tres"})) }),
        )
        .route(
            "/google/v2",
            leaky("x-goog-api-key", StatusCode::FORBIDDEN, |key| {
                json!({"error": {"message": format!(
                    "API key not valid: {key}; see https://console.example/apis?key={key}"
                )}})
                .to_string()
            }),
        )
        .route(
            "/v1/audio/speech",
            leaky("authorization", StatusCode::INTERNAL_SERVER_ERROR, |auth| {
                format!("invalid credentials {auth} for http://tts.example/v1?api_key={auth}")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Runs one spoken fragment through a server with the provider flags `args` (and
/// STS_AUTH_TOKEN `auth`); checks it failed with `code`; returns the event as JSON text
/// and the server's /metrics text.
async fn failed_fragment(
    args: &[&str],
    auth: &str,
    speech: &[i16],
    code: &str,
) -> (String, String) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--sts-auth-token", auth]);
    let srv = start_server(&all).await;
    let c = connect(srv.addr, Some(json!({ "token": auth })))
        .await
        .expect("connect");
    let ack = c.call("stream:init", init_payload("sec", 16000, 1)).await;
    assert_eq!(ack["status"], "ready", "{ack}");
    let ack = c
        .call(
            "fragment:data",
            fragment_payload("sec", 0, 16000, 1, speech),
        )
        .await;
    assert_eq!(ack["status"], "accepted", "{ack}");
    let ev = c
        .wait_for("fragment:processed", Duration::from_secs(120), |_| true)
        .await;
    assert_eq!(ev["status"], "failed", "{ev}");
    assert_eq!(ev["error"]["code"], code, "{ev}");
    let metrics = metrics_text(srv.addr).await;
    srv.shutdown();
    srv.wait().await.unwrap();
    (ev.to_string(), metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_reach_no_event_log_or_metric() {
    let logs = capture_logs();
    let base = leaky_providers().await;
    let speech = spoken_words(&["one", "two", "three", "four", "five", "six"]);
    let auth = format!("{MARKER}-handshake");
    let (google_key, libre_key, tts_key) = (
        format!("{MARKER}-google"),
        format!("{MARKER}-libre"),
        format!("{MARKER}-tts"),
    );
    let google_url = format!("{base}/google/v2");

    // Google answers 403 quoting the key: the fragment fails at translation.
    let google = [
        "--translation-provider",
        "google",
        "--google-api-key",
        &google_key,
        "--google-translate-url",
        &google_url,
    ];
    let (google_event, metrics_google) =
        failed_fragment(&google, &auth, &speech, "TRANSLATION_FAILED").await;
    assert!(
        google_event.contains("403"),
        "the error still says what happened: {google_event}"
    );

    // LibreTranslate (with a key) translates; the TTS server answers 500 quoting its key.
    let libre_and_tts = [
        "--translation-provider",
        "libretranslate",
        "--libretranslate-url",
        &base,
        "--libretranslate-api-key",
        &libre_key,
        "--tts-provider",
        "openai",
        "--tts-url",
        &base,
        "--tts-api-key",
        &tts_key,
    ];
    let (tts_event, metrics_tts) =
        failed_fragment(&libre_and_tts, &auth, &speech, "TTS_FAILED").await;
    assert!(tts_event.contains("500"), "{tts_event}");

    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(
        log_text.contains("fragment not dubbed"),
        "the failures were logged (the capture works)"
    );
    for (what, text) in [
        ("google fragment:processed", &google_event),
        ("tts fragment:processed", &tts_event),
        ("logs", &log_text),
        ("google /metrics", &metrics_google),
        ("tts /metrics", &metrics_tts),
    ] {
        if let Some(at) = text.find(MARKER) {
            let from = at.saturating_sub(200);
            panic!(
                "{what} contains the secret marker: ...{}...",
                &text[from..(at + 60).min(text.len())]
            );
        }
    }
    for (what, text) in [("google", &google_event), ("tts", &tts_event)] {
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{what} event names a URL: {text}"
        );
    }
    eprintln!(
        "google error: {}",
        serde_json::from_str::<Value>(&google_event).unwrap()["error"]["message"]
    );
    eprintln!(
        "tts error: {}",
        serde_json::from_str::<Value>(&tts_event).unwrap()["error"]["message"]
    );
}
