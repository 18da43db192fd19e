//! Interoperability with a standard non-Rust Socket.IO client (python-socketio), driven
//! from here. Needs LIVEDUB_PYTHON: a Python with `python-socketio[client]` (the Makefile
//! creates /var/cache/livedub/venv). Fails — never skips — when it is missing.

mod common;
use common::*;

/// LIVEDUB_PYTHON, checked to have python-socketio[client].
fn python() -> String {
    let python = std::env::var("LIVEDUB_PYTHON").unwrap_or_else(|_| {
        panic!("LIVEDUB_PYTHON is not set: point it at a Python with python-socketio[client] (e.g. /var/cache/livedub/venv/bin/python, created by `make python` / scripts/install-python.sh)")
    });
    let probe = std::process::Command::new(&python)
        .args(["-c", "import socketio, websocket"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "LIVEDUB_PYTHON={python} lacks python-socketio[client]: {}; install it with `{python} -m pip install 'python-socketio[client]'`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("LIVEDUB_PYTHON={python} cannot run: {e}"),
    }
    python
}

/// Runs `python` with `args` off the async threads.
async fn run_python(python: String, args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || std::process::Command::new(python).args(args).output())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client_dubs_a_fragment() {
    let python = python();
    let srv = start_server(&["--sts-auth-token", "interop-token"]).await;
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("count.wav");
    let speech = spoken_words(&["one", "two", "three", "four", "five", "six"]);
    livedub_audio::write_wav(&wav, &livedub_audio::i16_to_f32(&speech), 16000, 1).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/py_client.py");
    let addr = srv.addr;
    let out = run_python(
        python,
        vec![
            script.into(),
            format!("http://{addr}"),
            wav.display().to_string(),
            "--token".into(),
            "interop-token".into(),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(v["init_ack"]["status"], "ready");
    assert_eq!(v["fragment_ack"]["status"], "accepted");
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["dubbed_bytes"], 192000);
    assert_eq!(v["complete"]["totals"]["success"], 1);
    assert_eq!(v["error_codes"], serde_json::json!(["MALFORMED_JSON"]));
    let t = v["transcript"].as_str().unwrap();
    assert!(t.contains('1') || t.to_lowercase().contains("one"), "{t}");
    srv.shutdown();
    srv.wait().await.unwrap();
}

/// What a standard client sees when the server is full: python-socketio's `connect()`
/// raises, and its `connect_error` handler gets the message naming the code and MAX_SESSIONS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_client_is_told_the_server_is_full() {
    let python = python();
    let srv = start_server(&["--mode", "echo", "--max-sessions", "1"]).await;
    let holder = connect(srv.addr, None).await.expect("first connection");
    let url = format!("http://{}", srv.addr);
    let code = r#"
import socketio, sys
c = socketio.Client(reconnection=False)
@c.event
def connect_error(data):
    print("connect_error", data["message"])
try:
    c.connect(sys.argv[1], transports=["websocket"], wait_timeout=5)
    print("connected")
except socketio.exceptions.ConnectionError as e:
    print("refused", e)
"#;
    let out = run_python(python, vec!["-c".into(), code.into(), url]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("connect_error TOO_MANY_SESSIONS: ")
            && stdout.contains("(MAX_SESSIONS=1)")
            && stdout.contains("refused"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(holder);
    srv.shutdown();
    srv.wait().await.unwrap();
}
