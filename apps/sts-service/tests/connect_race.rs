//! A client that emits the moment its namespace connection is confirmed (the usual
//! `socket.on("connect", () => socket.emit(...))` pattern) must never lose that event: the
//! server registers its handlers before it sends CONNECT.

mod common;

use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use tokio::sync::mpsc;

/// How many fresh connections try it; each is one chance for the race to lose the event.
const ATTEMPTS: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_init_emitted_on_connect_is_always_acknowledged() {
    let srv = common::start_server(&["--mode", "echo"]).await;
    let mut lost = Vec::new();
    for i in 0..ATTEMPTS {
        let (tx, mut rx) = mpsc::channel::<String>(1);
        let stream_id = format!("on-connect-{i}");
        let init = common::init_payload(&stream_id, 16000, 1);
        let client = ClientBuilder::new(format!("http://{}", srv.addr))
            .transport_type(TransportType::Websocket)
            .reconnect(false)
            .on(Event::Connect, move |_p: Payload, c: Client| {
                let tx = tx.clone();
                let init = init.clone();
                async move {
                    let ack = move |p: Payload, _c: Client| {
                        let tx = tx.clone();
                        async move {
                            let _ = tx.send(format!("{p:?}")).await;
                        }
                        .boxed()
                    };
                    c.emit_with_ack("stream:init", init, Duration::from_secs(10), ack)
                        .await
                        .expect("emit on connect");
                }
                .boxed()
            })
            .connect()
            .await
            .expect("connects");
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(ack)) => assert!(ack.contains("ready"), "attempt {i}: {ack}"),
            _ => lost.push(i),
        }
        let _ = client.disconnect().await;
    }
    assert!(
        lost.is_empty(),
        "stream:init sent on connect got no ack on attempts {lost:?} of {ATTEMPTS}"
    );
    srv.shutdown();
    srv.wait().await.unwrap();
}
