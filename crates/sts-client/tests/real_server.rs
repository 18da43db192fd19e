//! The client against the real sts-service (echo mode): init, fragments with acks,
//! processed events, monitor:subscribe, auth, and reconnection after the server restarts.
//! Binary: STS_SERVICE_BIN (default $CARGO_TARGET_DIR/debug/sts-service).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sts_client::{AckError, ClientEvent, ConnectError, StsClient, StsClientConfig};
use sts_protocol::{AudioFormat, AudioPayload, FragmentData, StreamInit, StreamInitAck};
use tokio::sync::mpsc;

fn sts_bin() -> PathBuf {
    let default = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/livedub/target"))
        .join("debug/sts-service");
    let p = std::env::var_os("STS_SERVICE_BIN")
        .map(PathBuf::from)
        .unwrap_or(default);
    assert!(
        p.is_file(),
        "STS_SERVICE_BIN: {} not found; build it with `cargo build -p sts-service`",
        p.display()
    );
    p
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port for a server started by this test: not from the ephemeral range (see
/// `livedub_test_ports`).
fn free_port() -> u16 {
    livedub_test_ports::free_port(livedub_test_ports::TEST_SERVERS)
}

async fn start_server(port: u16, token: Option<&str>) -> Server {
    let mut cmd = Command::new(sts_bin());
    cmd.env("STS_MODE", "echo")
        .env("STS_PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "WARN");
    if let Some(t) = token {
        cmd.env("STS_AUTH_TOKEN", t);
    }
    // Wrapped at once so that Drop kills and reaps it on every path, panics included.
    let server = Server(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sts-service"),
    );
    for _ in 0..150 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("sts-service did not listen on {port}");
}

fn init(stream: &str) -> StreamInit {
    StreamInit {
        stream_id: stream.into(),
        source_language: "en".into(),
        target_language: "es".into(),
        voice: None,
        fragment_duration_ms: 1000,
        audio: AudioFormat::pcm_s16le(16_000, 1),
    }
}

fn fragment(stream: &str, seq: u64) -> FragmentData {
    let samples: Vec<i16> = (0..16_000).map(|i| ((i % 100) as i16 - 50) * 100).collect();
    FragmentData {
        fragment_id: format!("{stream}-{seq}"),
        stream_id: stream.into(),
        sequence_number: seq,
        pts_ms: seq as i64 * 1000,
        duration_ms: 1000,
        audio: AudioPayload::from_samples(&AudioFormat::pcm_s16le(16_000, 1), &samples),
        answer_within_ms: None,
    }
}

fn cfg(port: u16) -> StsClientConfig {
    let mut c = StsClientConfig::new(format!("http://127.0.0.1:{port}"));
    c.reconnect_min = Duration::from_millis(200);
    c.reconnect_max = Duration::from_millis(1000);
    c
}

async fn next_matching(
    rx: &mut mpsc::Receiver<ClientEvent>,
    what: &str,
    mut f: impl FnMut(&ClientEvent) -> bool,
) -> ClientEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if f(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_send_receive_and_monitor() {
    let port = free_port();
    let _srv = start_server(port, None).await;
    let (client, mut rx) = StsClient::connect(cfg(port)).await.expect("connects");
    next_matching(&mut rx, "Connected", |e| {
        matches!(e, ClientEvent::Connected { generation: 1 })
    })
    .await;
    let (monitor, mut mrx) = StsClient::connect(cfg(port))
        .await
        .expect("monitor connects");
    match client.init_stream(&init("c1")).await.expect("init ok") {
        StreamInitAck::Ready {
            max_inflight,
            protocol_version,
            ..
        } => {
            assert!(max_inflight >= 1);
            assert_eq!(protocol_version, sts_protocol::PROTOCOL_VERSION);
        }
        other => panic!("unexpected {other:?}"),
    }
    monitor.subscribe_monitor("c1").await.expect("subscribe");
    client
        .send_fragment(&fragment("c1", 0))
        .await
        .expect("accepted");
    let ev = next_matching(&mut rx, "fragment:processed", |e| {
        matches!(e, ClientEvent::Processed(_))
    })
    .await;
    let ClientEvent::Processed(p) = ev else {
        unreachable!()
    };
    assert_eq!(p.sequence_number, 0);
    assert_eq!(p.dubbed_audio.as_ref().unwrap().sample_rate_hz, 16_000);
    // The monitor receives a copy.
    let ev = next_matching(&mut mrx, "monitor copy", |e| {
        matches!(e, ClientEvent::Processed(_))
    })
    .await;
    let ClientEvent::Processed(p) = ev else {
        unreachable!()
    };
    assert_eq!(p.stream_id, "c1");
    // A fragment for an unknown stream is rejected with a reason, and the connection lives on.
    let err = client
        .send_fragment(&fragment("nope", 0))
        .await
        .unwrap_err();
    assert!(matches!(err, AckError::Rejected { .. }), "{err}");
    client
        .send_fragment(&fragment("c1", 1))
        .await
        .expect("still usable");
    client.end_stream("c1").await.expect("end");
    next_matching(&mut rx, "stream:complete", |e| {
        matches!(e, ClientEvent::Complete(_))
    })
    .await;
    client.close().await;
    monitor.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_client_cannot_take_a_live_stream() {
    let port = free_port();
    let _srv = start_server(port, None).await;
    let (owner, _rx) = StsClient::connect(cfg(port)).await.expect("connects");
    let (other, _orx) = StsClient::connect(cfg(port)).await.expect("connects");
    match owner.init_stream(&init("own1")).await.expect("init ok") {
        StreamInitAck::Ready { resume_token, .. } => {
            assert!(
                resume_token.is_some_and(|t| t.len() >= 32),
                "a 1.2 server sends a token"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    let err = other.init_stream(&init("own1")).await.unwrap_err();
    match &err {
        AckError::Rejected { code, message, .. } => {
            assert_eq!(code, "STREAM_ALREADY_EXISTS");
            assert!(message.contains("own1"), "{message}");
        }
        e => panic!("unexpected {e}"),
    }
    // The owner re-inits (with its stored token) and keeps the stream.
    owner.init_stream(&init("own1")).await.expect("re-init ok");
    owner
        .send_fragment(&fragment("own1", 0))
        .await
        .expect("owner sends");
    // Once the owner is gone, the other client may open the id.
    owner.close().await;
    let mut last = None;
    for _ in 0..50 {
        match other.init_stream(&init("own1")).await {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_none(), "{last:?}");
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_is_sent_and_a_wrong_one_is_refused() {
    let port = free_port();
    let _srv = start_server(port, Some("s3cret")).await;
    let mut bad = cfg(port);
    bad.auth_token = Some("wrong".into());
    let err = StsClient::connect(bad).await.err().expect("refused");
    assert!(matches!(err, ConnectError::Refused { .. }), "{err}");
    let mut good = cfg(port);
    good.auth_token = Some("s3cret".into());
    let (client, _rx) = StsClient::connect(good).await.expect("token accepted");
    client.init_stream(&init("auth1")).await.expect("init");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts() {
    let port = free_port();
    // Started before the server: the background loop keeps trying.
    let (client, mut rx) = StsClient::spawn(cfg(port));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!client.is_connected());
    let srv = start_server(port, None).await;
    next_matching(&mut rx, "first connection", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await;
    client.init_stream(&init("r1")).await.expect("init");
    client
        .send_fragment(&fragment("r1", 0))
        .await
        .expect("accepted");
    next_matching(&mut rx, "processed before restart", |e| {
        matches!(e, ClientEvent::Processed(_))
    })
    .await;

    drop(srv); // kill -9
    next_matching(&mut rx, "Disconnected", |e| {
        matches!(e, ClientEvent::Disconnected { .. })
    })
    .await;
    assert!(!client.is_connected());
    assert!(matches!(
        client.send_fragment(&fragment("r1", 1)).await,
        Err(AckError::NotConnected)
    ));

    let _srv2 = start_server(port, None).await;
    let ev = next_matching(&mut rx, "reconnection", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await;
    let ClientEvent::Connected { generation } = ev else {
        unreachable!()
    };
    assert!(generation >= 2, "generation {generation}");
    client
        .init_stream(&init("r1"))
        .await
        .expect("init after restart");
    client
        .send_fragment(&fragment("r1", 2))
        .await
        .expect("accepted after restart");
    let ev = next_matching(&mut rx, "processed after restart", |e| {
        matches!(e, ClientEvent::Processed(_))
    })
    .await;
    let ClientEvent::Processed(p) = ev else {
        unreachable!()
    };
    assert_eq!(p.sequence_number, 2);
    client.close().await;
}

/// `sts_connected_clients` of the server on `port`, read over plain HTTP.
async fn connected_clients(port: u16) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("metrics connection");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("metrics request");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("metrics answer");
    body.lines()
        .find_map(|l| l.strip_prefix("sts_connected_clients "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sts_connected_clients in /metrics: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_racing_the_first_connect_leaves_no_connection() {
    let port = free_port();
    let _srv = start_server(port, None).await;
    // Close at several points of the first connection's handshake, the window between
    // the transport connecting and the client being stored included.
    let mut clients = Vec::new();
    for delay_ms in [0u64, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 120] {
        let (client, rx) = StsClient::spawn(cfg(port));
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        client.close().await;
        clients.push((client, rx));
    }
    // Longer than the reconnect backoff (cfg: at most 1 s): a client left behind would
    // be connected (or reconnected) by now.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        connected_clients(port).await,
        0,
        "a closed client stayed connected"
    );
    for (client, _) in &clients {
        assert!(!client.is_connected());
    }
}

/// A TCP proxy in front of `upstream` that drops the first `refuse` WebSocket requests
/// (an STS that is still coming up, or a proxy having a bad moment) and passes everything
/// else through, byte for byte.
async fn proxy_refusing_websockets(upstream: u16, refuse: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("proxy listens");
    let port = listener.local_addr().expect("proxy address").port();
    tokio::spawn(async move {
        let mut refused = 0;
        while let Ok((mut down, _)) = listener.accept().await {
            // The request line arrives in the first read on loopback.
            let mut head = vec![0u8; 4096];
            let n = match down.read(&mut head).await {
                Ok(n) if n > 0 => n,
                _ => continue,
            };
            let first_line = String::from_utf8_lossy(&head[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            if first_line.contains("transport=websocket") && refused < refuse {
                refused += 1;
                continue; // dropped: the connection closes
            }
            tokio::spawn(async move {
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                if up.write_all(&head[..n]).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_websocket_never_leaves_the_client_on_long_polling() {
    // Regression (found by the soak): with a failed WebSocket attempt the client used to
    // fall back to HTTP long-polling, whose transport in rust_engineio 0.6 parses each
    // body chunk on its own; the first answer larger than a chunk (any dubbed fragment)
    // then dropped the connection: "EOF while parsing a string at line 1 column 8069".
    let port = free_port();
    let _srv = start_server(port, None).await;
    let proxy = proxy_refusing_websockets(port, 1).await;
    // The background loop retries the refused first attempt.
    let (client, mut rx) = StsClient::spawn(cfg(proxy));
    next_matching(
        &mut rx,
        "a connection once the WebSocket is let through",
        |e| matches!(e, ClientEvent::Connected { .. }),
    )
    .await;
    client.init_stream(&init("big1")).await.expect("init");
    // 1 s of 16 kHz audio: the echo answer carries ~43 KB of base64, several chunks.
    for seq in 0..3 {
        client
            .send_fragment(&fragment("big1", seq))
            .await
            .expect("accepted");
        let ev = next_matching(&mut rx, "the large answer, or a drop", |e| {
            matches!(
                e,
                ClientEvent::Processed(_)
                    | ClientEvent::Disconnected { .. }
                    | ClientEvent::Malformed { .. }
            )
        })
        .await;
        let ClientEvent::Processed(p) = ev else {
            panic!("answer {seq} was not delivered: {ev:?}");
        };
        assert_eq!(p.sequence_number, seq);
        let audio = p.dubbed_audio.expect("echo answers carry audio");
        let samples = audio.decode(1 << 20).expect("audio decodes");
        assert_eq!(
            samples.len(),
            16_000,
            "answer {seq}: the whole second came back"
        );
    }
    assert!(client.is_connected());
    client.close().await;
}
