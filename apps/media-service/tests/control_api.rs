//! The control API's access modes, request policy and worker cap, through the real router
//! (`tower::ServiceExt::oneshot`, no socket) and the real manager. Accepted streams start
//! real workers on an input nobody serves: they keep retrying (and so hold their slot)
//! until the test stops them.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use clap::Parser;
use media_service::access::ControlAccess;
use media_service::api::{router, AppState};
use media_service::config::Cli;
use media_service::manager::Manager;
use media_service::metrics::Metrics;
use media_service::policy::StreamPolicy;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

mod common;
use common::free_port;

const TOKEN: &str = "test-token-0123456789abcdef";

/// Log lines of every test in this binary (for "warned once" checks).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("media_service=info")
            .with_ansi(false)
            .with_writer(move || Writer(b.clone()))
            .try_init();
        buf
    })
}

struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Service {
    app: Router,
    manager: Arc<Manager>,
    _dirs: tempfile::TempDir,
    out_dir: std::path::PathBuf,
}

/// A service with these settings (as flags) on a media server nobody runs.
fn service(args: &[&str]) -> Service {
    logs();
    gstreamer::init().unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let out_dir = dirs.path().join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let (rtsp, rtmp, api, sts) = (
        free_port().to_string(),
        free_port().to_string(),
        free_port().to_string(),
        format!("http://127.0.0.1:{}", free_port()),
    );
    let defaults = [
        ("--mediamtx-host", "127.0.0.1"),
        ("--mediamtx-rtsp-port", rtsp.as_str()),
        ("--mediamtx-rtmp-port", rtmp.as_str()),
        ("--mediamtx-api-port", api.as_str()),
        ("--sts-service-url", sts.as_str()),
        ("--segment-artifacts", "false"),
        ("--discovery", "false"),
    ];
    let out = out_dir.display().to_string();
    let mut argv = vec!["media-service".to_string()];
    for (flag, value) in defaults {
        if !args.contains(&flag) {
            argv.extend([flag.to_string(), value.to_string()]);
        }
    }
    argv.extend(args.iter().map(|a| a.replace("{OUT}", &out)));
    let settings = Cli::try_parse_from(argv).unwrap().settings;
    let access = ControlAccess::decide(
        settings.control_api,
        settings.media_service_token.clone(),
        &settings.media_service_host,
    )
    .unwrap();
    let policy = StreamPolicy::from_settings(&settings).unwrap();
    let metrics = Arc::new(Metrics::new());
    let manager = Manager::new(settings, metrics.clone(), CancellationToken::new());
    let app = router(AppState {
        manager: manager.clone(),
        metrics,
        access: Arc::new(access),
        policy: Arc::new(policy),
    });
    Service {
        app,
        manager,
        _dirs: dirs,
        out_dir,
    }
}

struct Answer {
    code: StatusCode,
    challenge: Option<String>,
    body: String,
}

impl Service {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        authorization: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let code = resp.status();
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            code,
            challenge,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn post(&self, json: &str, authorization: Option<&str>) -> Answer {
        self.send("POST", "/v1/streams", Some(json), authorization)
            .await
    }

    async fn get_ok(&self) {
        for path in ["/health", "/metrics", "/v1/streams"] {
            let a = self.send("GET", path, None, None).await;
            assert_eq!(a.code, StatusCode::OK, "GET {path} stays open: {}", a.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_mode_needs_the_bearer_token_for_changes_only() {
    let s = service(&[
        "--media-service-host",
        "0.0.0.0",
        "--media-service-token",
        TOKEN,
    ]);
    let a = s.post(r#"{"name":"tok1"}"#, None).await;
    assert_eq!(a.code, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(
        a.challenge.as_deref(),
        Some(r#"Bearer realm="media-service""#)
    );
    assert!(a.body.contains("Authorization: Bearer"), "{}", a.body);
    let a = s
        .post(
            r#"{"name":"tok1"}"#,
            Some("Bearer wrong-token-0123456789ab"),
        )
        .await;
    assert_eq!(a.code, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(a.challenge.unwrap().contains("invalid_token"));
    assert!(!a.body.contains(TOKEN), "{}", a.body);
    let a = s
        .post(r#"{"name":"tok1"}"#, Some(&format!("Basic {TOKEN}")))
        .await;
    assert_eq!(a.code, StatusCode::UNAUTHORIZED, "{}", a.body);
    // Refused before the body is read: an unauthenticated client learns nothing from it.
    let a = s.post("not json", None).await;
    assert_eq!(a.code, StatusCode::UNAUTHORIZED, "{}", a.body);
    s.get_ok().await;

    let bearer = format!("Bearer {TOKEN}");
    let a = s.post(r#"{"name":"tok1"}"#, Some(&bearer)).await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    let a = s.send("DELETE", "/v1/streams/tok1", None, None).await;
    assert_eq!(a.code, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(s.manager.list().len(), 1, "a refused DELETE stops nothing");
    let a = s
        .send("DELETE", "/v1/streams/tok1", None, Some(&bearer))
        .await;
    assert_eq!(a.code, StatusCode::NO_CONTENT, "{}", a.body);
    s.manager.stop_all().await;
    let logged = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(!logged.contains(TOKEN), "the token is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_service_on_all_interfaces_is_closed_to_changes() {
    let s = service(&["--media-service-host", "0.0.0.0"]);
    let a = s.post(r#"{"name":"closed1"}"#, None).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(
        a.body.contains("MEDIA_SERVICE_TOKEN") && a.body.contains("CONTROL_API=open"),
        "{}",
        a.body
    );
    // A token does not open a service that has none configured.
    let a = s
        .post(r#"{"name":"closed1"}"#, Some(&format!("Bearer {TOKEN}")))
        .await;
    assert_eq!(a.code, StatusCode::FORBIDDEN, "{}", a.body);
    let a = s.send("DELETE", "/v1/streams/x", None, None).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN, "{}", a.body);
    s.get_ok().await;
    assert!(s.manager.list().is_empty());

    let s = service(&[
        "--media-service-host",
        "127.0.0.1",
        "--control-api",
        "closed",
    ]);
    let a = s.post(r#"{"name":"closed2"}"#, None).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN, "{}", a.body);
    assert!(a.body.contains("CONTROL_API=closed"), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_bind_and_control_api_open_need_no_token() {
    for args in [
        &["--media-service-host", "127.0.0.1"][..],
        &["--media-service-host", "::1"][..],
        &["--media-service-host", "0.0.0.0", "--control-api", "open"][..],
    ] {
        let s = service(args);
        let a = s.post(r#"{"name":"open1"}"#, None).await;
        assert_eq!(a.code, StatusCode::CREATED, "{args:?}: {}", a.body);
        let a = s.send("DELETE", "/v1/streams/open1", None, None).await;
        assert_eq!(a.code, StatusCode::NO_CONTENT, "{args:?}: {}", a.body);
        s.manager.stop_all().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_inputs_and_outputs_name_the_setting() {
    let s = service(&["--media-service-host", "127.0.0.1"]);
    for (body, needle) in [
        (
            r#"{"name":"p1","input":"http://internal-host/x.mp4"}"#,
            "ALLOWED_INPUT_HOSTS",
        ),
        (
            r#"{"name":"p1","input":"file:///etc/passwd"}"#,
            "INPUT_DIR is not set",
        ),
        (
            r#"{"name":"p1","input":"/etc/passwd"}"#,
            "INPUT_DIR is not set",
        ),
        (
            r#"{"name":"p1","input":"udp://0.0.0.0:5000"}"#,
            "accepted: rtsp://",
        ),
        (
            r#"{"name":"p1","output":"rtmp://evil.example/live/x"}"#,
            "ALLOWED_OUTPUT_HOSTS",
        ),
        (
            r#"{"name":"p1","output":"/tmp/x.mp4"}"#,
            "OUTPUT_DIR is not set",
        ),
    ] {
        let a = s.post(body, None).await;
        assert_eq!(a.code, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert!(a.body.contains(needle), "{body}: {}", a.body);
    }
    assert!(s.manager.list().is_empty(), "nothing was started");

    let s = service(&[
        "--media-service-host",
        "127.0.0.1",
        "--output-dir",
        "{OUT}",
        "--allowed-output-hosts",
        "live.example.com",
    ]);
    for (body, needle) in [
        (r#"{"name":"p2","output":"../x.mp4"}"#, "'..'"),
        (
            r#"{"name":"p2","output":"/etc/x.mkv"}"#,
            "outside OUTPUT_DIR",
        ),
        (
            r#"{"name":"p2","output":"rtmp://other.example/a/b"}"#,
            "live.example.com",
        ),
    ] {
        let a = s.post(body, None).await;
        assert_eq!(a.code, StatusCode::BAD_REQUEST, "{body}: {}", a.body);
        assert!(a.body.contains(needle), "{body}: {}", a.body);
    }
    let a = s.post(r#"{"name":"p2","output":"p2.mkv"}"#, None).await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    let resolved = std::fs::canonicalize(&s.out_dir).unwrap().join("p2.mkv");
    assert!(
        a.body.contains(&resolved.display().to_string()),
        "the output is the resolved path: {}",
        a.body
    );
    let a = s
        .post(
            r#"{"name":"p3","output":"rtmp://live.example.com/app/key"}"#,
            None,
        )
        .await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    s.manager.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_streams_answers_429_until_a_slot_is_free() {
    let s = service(&["--media-service-host", "127.0.0.1", "--max-streams", "2"]);
    for n in ["cap1", "cap2"] {
        let a = s.post(&format!(r#"{{"name":"{n}"}}"#), None).await;
        assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    }
    let a = s.post(r#"{"name":"cap3"}"#, None).await;
    assert_eq!(a.code, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.body.contains("MAX_STREAMS=2"), "{}", a.body);
    // The running ones are untouched.
    let a = s.send("GET", "/v1/streams", None, None).await;
    assert!(a.body.contains("cap1") && a.body.contains("cap2") && !a.body.contains("cap3"));
    let a = s.send("DELETE", "/v1/streams/cap1", None, None).await;
    assert_eq!(a.code, StatusCode::NO_CONTENT);
    let a = s.post(r#"{"name":"cap3"}"#, None).await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    s.manager.stop_all().await;
}

/// A stand-in media server API listing `live/<n>/in` for each name.
async fn fake_media_server(names: &[&str]) -> u16 {
    let items: Vec<serde_json::Value> = names
        .iter()
        .map(|n| serde_json::json!({ "name": format!("live/{n}/in"), "ready": true }))
        .collect();
    let body = serde_json::json!({ "items": items });
    let app = Router::new().route(
        "/v3/paths/list",
        axum::routing::get(move || {
            let b = body.clone();
            async move { axum::Json(b) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_beyond_max_streams_warns_once_and_waits_for_a_slot() {
    let api = fake_media_server(&["disc-a", "disc-b"]).await.to_string();
    let s = service(&[
        "--media-service-host",
        "0.0.0.0",
        "--mediamtx-api-port",
        &api,
        "--discovery-interval-ms",
        "200",
        "--max-streams",
        "1",
    ]);
    tokio::spawn(s.manager.clone().discovery_loop());
    let names = || -> Vec<String> { s.manager.list().into_iter().map(|v| v.name).collect() };
    let t0 = std::time::Instant::now();
    while names().is_empty() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several polls at the cap: still one worker, one warning for the other path.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let running = names();
    assert_eq!(running.len(), 1, "{running:?}");
    let waiting = if running[0] == "disc-a" {
        "disc-b"
    } else {
        "disc-a"
    };
    let warned = |n: &str| {
        String::from_utf8_lossy(&logs().lock().unwrap())
            .lines()
            .filter(|l| l.contains(&format!("discovered live/{n}/in not started")))
            .count()
    };
    assert_eq!(warned(waiting), 1, "one warning per path");
    // A freed slot goes to the waiting path.
    s.manager.stop(&running[0]).await.unwrap();
    let t0 = std::time::Instant::now();
    while !names().contains(&waiting.to_string()) && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names(), [waiting.to_string()]);
    s.manager.stop_all().await;
}
