//! The worker's STS link over Socket.IO: one connection per stream, `stream:init` on every
//! (re)connection, answers forwarded as [`DubEvent`]s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use std::time::Instant;
use sts_client::{ClientEvent, StsClient, StsClientConfig};
use sts_protocol::{FragmentData, StreamInit, StreamInitAck};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::worker::{sleep_until_opt, DubEvent, Dubber};

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
        let backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
        let (client, rx) = StsClient::spawn(cfg);
        let (tx, out) = mpsc::channel(64);
        let ready = Arc::new(AtomicBool::new(false));
        let me = Arc::new(Self {
            client: client.clone(),
            ready: ready.clone(),
            stream_id: init.stream_id.clone(),
            task: std::sync::Mutex::new(None),
        });
        let link = SessionLink {
            client,
            init,
            ready,
            tx,
            backoff,
            state: Session::Down,
            sessions: 0,
        };
        let task = tokio::spawn(link.run(rx));
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

/// The stream's STS session as this worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// No connection: nothing to do until the client reconnects.
    Down,
    /// Connected, `stream:init` not yet accepted: the next try is at `retry_at`. An STS that
    /// is still loading its model refuses init; we keep asking, with backoff, for as long as
    /// the connection lives (no attempt cap: a slow model load must not end dubbing).
    Opening { attempt: u32, retry_at: Instant },
    /// `stream:init` accepted: fragments go out.
    Ready,
}

/// Doubling delay between `stream:init` tries, from `min` up to `max`.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
        }
    }

    /// Delay after failed try number `attempt` (1-based).
    fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// Drives one stream's session over the client's connection events.
struct SessionLink {
    client: StsClient,
    init: StreamInit,
    ready: Arc<AtomicBool>,
    tx: mpsc::Sender<DubEvent>,
    backoff: Backoff,
    state: Session,
    sessions: u64,
}

impl SessionLink {
    async fn run(mut self, mut rx: mpsc::Receiver<ClientEvent>) {
        loop {
            let retry_at = match self.state {
                Session::Opening { retry_at, .. } => Some(retry_at),
                _ => None,
            };
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => break,
                },
                _ = sleep_until_opt(retry_at) => self.try_init().await,
            }
        }
    }

    async fn try_init(&mut self) {
        let Session::Opening { attempt, .. } = self.state else {
            return;
        };
        if !self.client.is_connected() {
            self.state = Session::Down;
            return;
        }
        let stream = &self.init.stream_id;
        match self.client.init_stream(&self.init).await {
            Ok(StreamInitAck::Ready {
                session_id,
                max_inflight,
                ..
            }) => {
                self.sessions += 1;
                info!(stream = %stream, %session_id, max_inflight, attempt, "STS session ready");
                self.state = Session::Ready;
                self.ready.store(true, Ordering::Relaxed);
                let _ = self
                    .tx
                    .send(DubEvent::Ready {
                        ready: true,
                        reconnect: self.sessions > 1,
                    })
                    .await;
                return;
            }
            Ok(StreamInitAck::Rejected { error }) => {
                warn!(stream = %stream, attempt, code = error.code.as_str(), message = %error.message, "stream:init rejected; asking again")
            }
            Err(e) => {
                warn!(stream = %stream, attempt, error = %e, "stream:init failed; asking again")
            }
        }
        self.state = Session::Opening {
            attempt: attempt + 1,
            retry_at: Instant::now() + self.backoff.delay(attempt),
        };
    }

    async fn on_event(&mut self, ev: ClientEvent) {
        let stream = self.init.stream_id.as_str();
        match ev {
            ClientEvent::Connected { generation } => {
                info!(stream = %stream, generation, "STS connected; opening the stream");
                self.ready.store(false, Ordering::Relaxed);
                self.state = Session::Opening {
                    attempt: 1,
                    retry_at: Instant::now(),
                };
            }
            ClientEvent::Disconnected { reason } => {
                self.state = Session::Down;
                if self.ready.swap(false, Ordering::Relaxed) {
                    warn!(stream = %stream, %reason, "STS connection lost");
                    let _ = self
                        .tx
                        .send(DubEvent::Ready {
                            ready: false,
                            reconnect: false,
                        })
                        .await;
                }
            }
            ClientEvent::Processed(p) => {
                if p.stream_id == stream {
                    let _ = self.tx.send(DubEvent::Processed(p)).await;
                }
            }
            ClientEvent::Backpressure(b) => {
                if b.stream_id == stream {
                    let _ = self.tx.send(DubEvent::Backpressure(b)).await;
                }
            }
            ClientEvent::Complete(c) => {
                info!(stream = %c.stream_id, totals = ?c.totals, "STS stream complete")
            }
            ClientEvent::ServerError(e) => {
                warn!(stream = %stream, code = e.code.as_str(), message = %e.message, fragment = ?e.fragment_id, "STS reported an error")
            }
            ClientEvent::Malformed {
                event,
                payload,
                error,
            } => {
                let sequence = payload.get("sequence_number").and_then(|v| v.as_u64());
                let _ = self
                    .tx
                    .send(DubEvent::Malformed {
                        sequence,
                        error: format!("{event}: {error}"),
                    })
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_backoff_doubles_up_to_the_cap_and_never_gives_up() {
        let b = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        let d: Vec<u64> = [1, 2, 3, 4, 5, 100, u32::MAX]
            .iter()
            .map(|&a| b.delay(a).as_millis() as u64)
            .collect();
        assert_eq!(d, vec![500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }

    #[test]
    fn a_cap_below_the_start_is_raised_to_it() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.delay(3), Duration::from_secs(2));
    }
}
