//! The worker's STS link over Socket.IO: one connection per stream, `stream:init` on every
//! (re)connection, answers forwarded as [`DubEvent`]s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use sts_client::{ClientEvent, StsClient, StsClientConfig};
use sts_protocol::{FragmentData, StreamInit, StreamInitAck};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::worker::{DubEvent, Dubber};

/// A [`Dubber`] backed by the STS service.
pub struct StsDubber {
    client: StsClient,
    ready: Arc<AtomicBool>,
    stream_id: String,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl StsDubber {
    /// Connects in the background (retrying with backoff) and opens `init.stream_id` on
    /// every connection. Events for the worker arrive on the returned receiver.
    pub fn start(cfg: StsClientConfig, init: StreamInit) -> (Arc<Self>, mpsc::Receiver<DubEvent>) {
        let (client, mut rx) = StsClient::spawn(cfg);
        let (tx, out) = mpsc::channel(64);
        let ready = Arc::new(AtomicBool::new(false));
        let me = Arc::new(Self {
            client: client.clone(),
            ready: ready.clone(),
            stream_id: init.stream_id.clone(),
            task: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(async move {
            let mut sessions = 0u64;
            while let Some(ev) = rx.recv().await {
                match ev {
                    ClientEvent::Connected { generation } => {
                        ready.store(false, Ordering::Relaxed);
                        // Retry init a few times: right after a server restart it may still
                        // be loading; each failure is logged with the server's reason.
                        for attempt in 1..=5u32 {
                            match client.init_stream(&init).await {
                                Ok(StreamInitAck::Ready {
                                    session_id,
                                    max_inflight,
                                    ..
                                }) => {
                                    sessions += 1;
                                    info!(stream = %init.stream_id, %session_id, max_inflight, generation, "STS session ready");
                                    ready.store(true, Ordering::Relaxed);
                                    let _ = tx
                                        .send(DubEvent::Ready {
                                            ready: true,
                                            reconnect: sessions > 1,
                                        })
                                        .await;
                                    break;
                                }
                                Ok(StreamInitAck::Rejected { error }) => {
                                    warn!(stream = %init.stream_id, code = error.code.as_str(), message = %error.message, "stream:init rejected");
                                }
                                Err(e) => {
                                    warn!(stream = %init.stream_id, attempt, error = %e, "stream:init failed")
                                }
                            }
                            if !client.is_connected() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(500 * attempt as u64)).await;
                        }
                    }
                    ClientEvent::Disconnected { reason } => {
                        if ready.swap(false, Ordering::Relaxed) {
                            warn!(stream = %init.stream_id, %reason, "STS connection lost");
                            let _ = tx
                                .send(DubEvent::Ready {
                                    ready: false,
                                    reconnect: false,
                                })
                                .await;
                        }
                    }
                    ClientEvent::Processed(p) => {
                        if p.stream_id == init.stream_id {
                            let _ = tx.send(DubEvent::Processed(p)).await;
                        }
                    }
                    ClientEvent::Backpressure(b) => {
                        if b.stream_id == init.stream_id {
                            let _ = tx.send(DubEvent::Backpressure(b)).await;
                        }
                    }
                    ClientEvent::Complete(c) => {
                        info!(stream = %c.stream_id, totals = ?c.totals, "STS stream complete")
                    }
                    ClientEvent::ServerError(e) => {
                        warn!(stream = %init.stream_id, code = e.code.as_str(), message = %e.message, fragment = ?e.fragment_id, "STS reported an error")
                    }
                    ClientEvent::Malformed {
                        event,
                        payload,
                        error,
                    } => {
                        let sequence = payload.get("sequence_number").and_then(|v| v.as_u64());
                        let _ = tx
                            .send(DubEvent::Malformed {
                                sequence,
                                error: format!("{event}: {error}"),
                            })
                            .await;
                    }
                }
            }
        });
        *me.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        (me, out)
    }

    /// Ends the stream on the STS (best effort) and closes the connection.
    pub async fn shutdown(&self) {
        if self.client.is_connected() {
            if let Err(e) = self.client.end_stream(&self.stream_id).await {
                warn!(stream = %self.stream_id, error = %e, "stream:end failed");
            }
        }
        self.client.close().await;
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

impl Dubber for StsDubber {
    fn submit(&self, fragment: FragmentData) -> BoxFuture<'static, Result<(), String>> {
        let client = self.client.clone();
        async move {
            client
                .send_fragment(&fragment)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.client.is_connected()
    }
}
