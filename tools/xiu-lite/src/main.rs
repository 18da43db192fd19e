//! `xiu-lite`: the local media server livedub uses where MediaMTX cannot run.
//!
//! It wires xiu's published engine crates together (the stream hub, the RTSP
//! server, the RTMP server and the RTSP->RTMP remuxer) and skips the parts of
//! the full `xiu` program we do not need (HLS, S3 upload, WebRTC, HTTP-FLV),
//! which make up most of its build time. Next to xiu's own statistics API it
//! answers `GET /v3/paths/list` in MediaMTX's shape, so the media-service's
//! stream discovery and the e2e health checks work unchanged on both servers.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context;
use axum::{extract::State, routing::get, Json, Router};
use clap::Parser;
use rtmp::remuxer::rtsp2rtmp::Rtsp2RtmpRemuxerSession;
use serde_json::{json, Value};
use streamhub::define::{BroadcastEvent, StreamHubEvent, StreamHubEventSender};
use streamhub::stream::StreamIdentifier;
use streamhub::StreamsHub;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Command-line configuration (each flag also reads an environment variable).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// RTSP listen port (publish and read, TCP interleaved).
    #[arg(long, env = "XIU_RTSP_PORT", default_value_t = 8554)]
    rtsp_port: u16,
    /// RTMP listen port (publish and play).
    #[arg(long, env = "XIU_RTMP_PORT", default_value_t = 1935)]
    rtmp_port: u16,
    /// HTTP API port (`/v3/paths/list`, `/api/query_whole_streams`).
    #[arg(long, env = "XIU_API_PORT", default_value_t = 9997)]
    api_port: u16,
    /// GOPs kept for late RTMP players.
    #[arg(long, env = "XIU_GOP_NUM", default_value_t = 1)]
    gop_num: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();

    let (event_producer, event_consumer) = mpsc::unbounded_channel();
    let mut hub = StreamsHub::new(None, event_producer, event_consumer);
    let producer = hub.get_hub_event_sender();

    let mut rtmp_server = rtmp::rtmp::RtmpServer::new(
        format!("0.0.0.0:{}", args.rtmp_port),
        producer.clone(),
        args.gop_num,
        None,
        None,
    );
    tokio::spawn(async move {
        if let Err(err) = rtmp_server.run().await {
            log::error!("rtmp server stopped: {err}");
        }
    });

    let mut rtsp_server = xrtsp::rtsp::RtspServer::new(
        format!("0.0.0.0:{}", args.rtsp_port),
        producer.clone(),
        None,
    );
    tokio::spawn(async move {
        if let Err(err) = rtsp_server.run().await {
            log::error!("rtsp server stopped: {err}");
        }
    });

    // An RTSP publication is mirrored to RTMP (app = first path element).
    let mut publications = hub.get_client_event_consumer();
    hub.set_rtmp_remuxer_enabled(true);
    let mirror_producer = producer.clone();
    tokio::spawn(async move {
        loop {
            match publications.recv().await {
                Ok(BroadcastEvent::Publish {
                    identifier: StreamIdentifier::Rtsp { stream_path },
                }) => {
                    tokio::spawn(mirror_to_rtmp(stream_path, mirror_producer.clone()));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::warn!("rtsp->rtmp mirror missed {n} hub events")
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });

    tokio::spawn(async move { hub.run().await });

    let app = Router::new()
        .route("/v3/paths/list", get(paths_list))
        .route("/api/query_whole_streams", get(whole_streams))
        .with_state(producer);
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.api_port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP API on {addr}"))?;
    log::info!(
        "xiu-lite ready: rtsp :{} rtmp :{} api :{}",
        args.rtsp_port,
        args.rtmp_port,
        args.api_port
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// How long a new RTSP publication waits for the RTMP mirror of the previous publication
/// on the same path to go away.
const MIRROR_HANDOVER: std::time::Duration = std::time::Duration::from_secs(5);

/// Mirrors an RTSP publication to RTMP (xiu's remuxer session), and survives a quick
/// republication: xiu's own remuxer gives up at once ("exists") when a publisher comes back
/// on the same path before the previous publication's RTMP mirror has been removed (measured:
/// a reconnect within ~0.5 s), leaving the new publication without a mirror, never counted as
/// receiving, so never listed as ready. Here the mirror is tried again every 100 ms for up to
/// [`MIRROR_HANDOVER`].
async fn mirror_to_rtmp(stream_path: String, producer: StreamHubEventSender) {
    let started = std::time::Instant::now();
    loop {
        let mut session = Rtsp2RtmpRemuxerSession::new(stream_path.clone(), producer.clone());
        match session.run().await {
            Ok(()) => return,
            Err(err)
                if err.to_string().contains("exists") && started.elapsed() < MIRROR_HANDOVER =>
            {
                log::info!("rtsp->rtmp mirror of {stream_path}: the previous publication's mirror is still there; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(err) => {
                log::error!("rtsp->rtmp mirror of {stream_path} stopped: {err}");
                return;
            }
        }
    }
}

/// Asks the hub for the statistics of every stream (xiu's own JSON).
async fn statistics(producer: &StreamHubEventSender) -> Value {
    let (result_sender, result_receiver) = oneshot::channel();
    let event = StreamHubEvent::ApiStatistic {
        top_n: None,
        identifier: None,
        uuid: None,
        result_sender,
    };
    if producer.send(event).is_err() {
        return json!([]);
    }
    // The hub answers `{}` when there is no stream at all.
    match tokio::time::timeout(std::time::Duration::from_secs(3), result_receiver).await {
        Ok(Ok(Value::Array(items))) => Value::Array(items),
        _ => json!([]),
    }
}

async fn whole_streams(State(producer): State<StreamHubEventSender>) -> Json<Value> {
    Json(json!({"error_code": 0, "desp": "succ", "data": statistics(&producer).await}))
}

/// MediaMTX-compatible listing: `{itemCount, pageCount, items: [{name, ready, source}]}`.
async fn paths_list(State(producer): State<StreamHubEventSender>) -> Json<Value> {
    Json(paths_from_statistics(&statistics(&producer).await))
}

/// Builds the MediaMTX-style listing from xiu's statistics.
///
/// xiu mirrors an RTSP publication to RTMP under the same path, so one path shows up
/// twice in its statistics; MediaMTX lists a path once, with the publisher's own
/// source, so the RTSP session wins over its RTMP mirror and the list is sorted by name.
///
/// `ready` means what it means in MediaMTX: the publisher is publishing. xiu lists an RTSP
/// path from the publisher's ANNOUNCE on, before it has set up its tracks; a reader that
/// joins in that window gets only the tracks set up so far (seen: a reader without the
/// audio track, so its dubbed output never started). Media flows only after the publisher's
/// RECORD, i.e. after every SETUP, so a path is ready once media has arrived for it (xiu
/// counts received bytes on the RTMP side: the publisher's own, or the RTSP mirror's).
fn paths_from_statistics(stats: &Value) -> Value {
    let mut paths: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for stream in stats.as_array().into_iter().flatten() {
        let Some((kind, name)) = stream
            .get("publisher")
            .and_then(|p| p.get("identifier"))
            .and_then(path_name)
        else {
            continue;
        };
        let receiving = stream
            .get("total_recv_bytes")
            .and_then(Value::as_u64)
            .is_some_and(|b| b > 0);
        let ready = receiving || paths.get(&name).is_some_and(|p| p["ready"] == true);
        let mut item = json!({
            "name": name,
            "ready": ready,
            "source": {"type": kind},
            "readers": [],
            "subscriberCount": stream.get("subscriber_count").cloned().unwrap_or(json!(0)),
        });
        match paths.get_mut(&name) {
            Some(existing) if existing["source"]["type"] == "rtspSession" => {
                existing["ready"] = json!(ready);
            }
            Some(existing) if kind == "rtspSession" => {
                // The publisher's own entry replaces its mirror, keeping what the mirror saw.
                item["ready"] = json!(ready || existing["ready"] == true);
                *existing = item;
            }
            _ => {
                paths.insert(name, item);
            }
        }
    }
    let items: Vec<Value> = paths.into_values().collect();
    json!({"itemCount": items.len(), "pageCount": 1, "items": items})
}

/// Maps xiu's stream identifier JSON to a MediaMTX path name (`live/<name>/in`).
fn path_name(identifier: &Value) -> Option<(&'static str, String)> {
    if let Some(rtsp) = identifier.get("rtsp") {
        let path = rtsp.get("stream_path")?.as_str()?;
        return Some(("rtspSession", path.trim_start_matches('/').to_string()));
    }
    if let Some(rtmp) = identifier.get("rtmp") {
        let app = rtmp.get("app_name")?.as_str()?;
        let stream = rtmp.get("stream_name")?.as_str()?;
        return Some(("rtmpConn", format!("{app}/{stream}")));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtsp_publication_and_its_rtmp_mirror_are_one_path() {
        let stats = json!([
            {"publisher": {"identifier": {"rtmp": {"app_name": "live", "stream_name": "x/in"}}}, "subscriber_count": 0, "total_recv_bytes": 100},
            {"publisher": {"identifier": {"rtsp": {"stream_path": "/live/x/in"}}}, "subscriber_count": 1, "total_recv_bytes": 0},
            {"publisher": {"identifier": {"rtmp": {"app_name": "live", "stream_name": "a/out"}}}, "total_recv_bytes": 5},
            {"publisher": {"identifier": {"webrtc": {}}}},
        ]);
        let list = paths_from_statistics(&stats);
        assert_eq!(list["itemCount"], 2);
        assert_eq!(list["items"][0]["name"], "live/a/out");
        assert_eq!(list["items"][0]["source"]["type"], "rtmpConn");
        assert_eq!(list["items"][1]["name"], "live/x/in");
        assert_eq!(list["items"][1]["source"]["type"], "rtspSession");
        assert_eq!(list["items"][1]["subscriberCount"], 1);
        // Media arrived (counted on the mirror): both paths are ready.
        assert_eq!(list["items"][0]["ready"], true);
        assert_eq!(list["items"][1]["ready"], true);
    }

    #[test]
    fn a_path_is_ready_only_once_media_arrives() {
        // Announced, tracks being set up: listed, not ready (in either order of entries).
        let announced = json!([
            {"publisher": {"identifier": {"rtsp": {"stream_path": "live/x/in"}}}, "total_recv_bytes": 0},
            {"publisher": {"identifier": {"rtmp": {"app_name": "live", "stream_name": "x/in"}}}, "total_recv_bytes": 0},
        ]);
        let list = paths_from_statistics(&announced);
        assert_eq!(list["itemCount"], 1);
        assert_eq!(list["items"][0]["ready"], false);
        let mut flowing = announced.clone();
        flowing[1]["total_recv_bytes"] = json!(19119);
        assert_eq!(paths_from_statistics(&flowing)["items"][0]["ready"], true);
        let reversed = json!([flowing[1].clone(), flowing[0].clone()]);
        let list = paths_from_statistics(&reversed);
        assert_eq!(list["items"][0]["ready"], true);
        assert_eq!(list["items"][0]["source"]["type"], "rtspSession");
    }

    /// An RTSP server on a thread of its own (its own runtime, never joined: a session that
    /// spins cannot hang the test), on a free port.
    fn rtsp_server_on_its_own_thread() -> u16 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (event_producer, event_consumer) = mpsc::unbounded_channel();
                let mut hub = StreamsHub::new(None, event_producer, event_consumer);
                let producer = hub.get_hub_event_sender();
                tokio::spawn(async move { hub.run().await });
                let mut server =
                    xrtsp::rtsp::RtspServer::new(format!("127.0.0.1:{port}"), producer, None);
                let _ = server.run().await;
            });
        });
        port
    }

    /// A connection to the RTSP server on `port` once it listens (5 s read timeout).
    fn connect_when_listening(port: u16) -> std::net::TcpStream {
        for _ in 0..50 {
            if let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                return conn;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the RTSP server does not listen on {port}");
    }

    /// Reads into `answers` until it holds an answer for each of `cseqs`.
    fn read_until(conn: &mut std::net::TcpStream, answers: &mut String, cseqs: &[&str]) {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while !cseqs
            .iter()
            .all(|c| answers.contains(&format!("CSeq: {c}\r\n")))
        {
            match conn.read(&mut buf) {
                Ok(0) => panic!("the server closed the session; answers so far: {answers:?}"),
                Ok(n) => answers.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e) => {
                    panic!("no answer for CSeq {cseqs:?} ({e}); answers so far: {answers:?}")
                }
            }
        }
    }

    /// The patched xrtsp (patches/xrtsp, PATCH.md): a request that arrives in two TCP reads
    /// is answered, and two requests in one read get two answers. Upstream spun forever on
    /// the first case (no answer, a runtime thread lost) and dropped the second request.
    #[test]
    fn rtsp_requests_split_or_joined_across_reads_are_answered() {
        use std::io::Write;
        let port = rtsp_server_on_its_own_thread();
        let mut conn = connect_when_listening(port);
        let mut answers = String::new();
        let options = |cseq: u32| {
            format!("OPTIONS rtsp://127.0.0.1:{port}/live/x/in RTSP/1.0\r\nCSeq: {cseq}\r\n\r\n")
        };
        // Split inside the headers, the second part after a pause.
        let first = options(1);
        let (a, b) = first.split_at(first.len() - 3);
        conn.write_all(a.as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        conn.write_all(b.as_bytes()).unwrap();
        read_until(&mut conn, &mut answers, &["1"]);
        // Two requests in one write.
        conn.write_all(format!("{}{}", options(2), options(3)).as_bytes())
            .unwrap();
        read_until(&mut conn, &mut answers, &["2", "3"]);
        assert_eq!(answers.matches("RTSP/1.0 200 OK").count(), 3, "{answers}");
    }

    /// ANNOUNCEs `path` on a new connection and SETs UP its one track; the Session header
    /// of the answer.
    fn announce_and_setup(port: u16, path: &str) -> String {
        use std::io::Write;
        let mut conn = connect_when_listening(port);
        let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                   a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z01AH9oBQBbsBEAAAAMAQAAADwPGDKg=,aO88gA==; profile-level-id=4D401F\r\n\
                   a=control:streamid=0\r\n";
        let url = format!("rtsp://127.0.0.1:{port}/{path}");
        let requests = [
            format!("ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()),
            format!("SETUP {url}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n"),
        ];
        let mut answers = String::new();
        for (cseq, request) in ["1", "2"].iter().zip(&requests) {
            conn.write_all(request.as_bytes()).unwrap();
            read_until(&mut conn, &mut answers, &[cseq]);
        }
        answers
            .lines()
            .find_map(|l| l.strip_prefix("Session: "))
            .unwrap_or_else(|| panic!("no Session header: {answers:?}"))
            .trim()
            .to_string()
    }

    /// The patched xrtsp (PATCH.md): sessions that set up in the same second get ids of
    /// their own. Upstream's id was the second alone, and the hub files readers by id, so a
    /// second reader of a path replaced the first one's feed.
    #[test]
    fn sessions_set_up_in_the_same_second_have_ids_of_their_own() {
        let port = rtsp_server_on_its_own_thread();
        // Until both fall in one second (the case upstream got wrong), a few tries at most.
        for i in 0..5 {
            let a = announce_and_setup(port, &format!("live/a{i}/in"));
            let b = announce_and_setup(port, &format!("live/b{i}/in"));
            if a.get(..10) == b.get(..10) {
                assert_ne!(a, b, "two sessions of one second share the id {a}");
                return;
            }
        }
        panic!("no two set-ups fell in the same second in five tries");
    }

    #[test]
    fn no_streams_is_an_empty_list() {
        let list = paths_from_statistics(&json!({}));
        assert_eq!(list["itemCount"], 0);
        assert_eq!(list["items"], json!([]));
    }
}
