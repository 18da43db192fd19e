//! `fragment:data`: validation, admission (session bytes, the stream's flow control),
//! processing slots in acceptance order, and the answer.

use super::stream_state::{Admission, Answered};
use super::{field, lock, AppState, StreamEntry, DECODE_INLINE_MAX};
use crate::admission::{Limit, QueuedBytes, Session};
use crate::pipeline::{Job, Pipeline};
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sts_protocol::{
    events, parse_payload, ErrorBody, ErrorCode, FragmentAck, FragmentData, FragmentProcessed,
    FragmentStatus, ProtocolError,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Per-stream slot dispatcher: fragments start in the order they were accepted, at most
/// `max_inflight` at once. (Tasks acquiring a semaphore themselves would start in whatever
/// order the scheduler first polls them.) A request whose fragment already timed out gets
/// its permit dropped at once. Each slot handed out is recorded in `busy` (slots of the
/// stream in use, this one included), so the limit shows as kept in the metrics. The task
/// ends when the stream's sender is dropped.
pub(super) fn slot_dispatcher(
    max_inflight: usize,
    busy: prometheus::Histogram,
) -> mpsc::UnboundedSender<oneshot::Sender<OwnedSemaphorePermit>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<OwnedSemaphorePermit>>();
    let sem = Arc::new(Semaphore::new(max_inflight));
    tokio::spawn(async move {
        while let Some(waiter) = rx.recv().await {
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            // Err: the fragment timed out while queued; the permit returns on drop.
            if waiter.send(permit).is_ok() {
                busy.observe((max_inflight - sem.available_permits()) as f64);
            }
        }
    });
    tx
}

/// Answers a refused `fragment:data` (ack, `error` event, log, metric), naming the ids
/// known so far.
struct FragmentRejecter<'a> {
    st: &'a AppState,
    s: &'a SocketRef,
    stream: Option<String>,
    fragment: Option<String>,
}

impl FragmentRejecter<'_> {
    fn reject(&self, ack: AckSender, body: ErrorBody) {
        self.st
            .metrics
            .rejected
            .with_label_values(&[body.code.as_str()])
            .inc();
        tracing::warn!(sid = %self.s.id, stream = ?self.stream, fragment = ?self.fragment, code = %body.code, msg = %body.message, "fragment rejected");
        self.st
            .emit_error(self.s, &body, self.stream.clone(), self.fragment.clone());
        let _ = ack.send(&FragmentAck::Rejected { error: body });
    }
}

/// Parses a `fragment:data` payload; a large pre-serialised (string) payload is parsed on
/// the blocking pool.
async fn parse_fragment(v: Value) -> Result<FragmentData, ProtocolError> {
    match v {
        Value::String(s) if s.len() > DECODE_INLINE_MAX => {
            tokio::task::spawn_blocking(move || parse_payload(Value::String(s)))
                .await
                .unwrap_or_else(|e| {
                    Err(ProtocolError::MalformedJson(format!(
                        "parsing stopped: {e}"
                    )))
                })
        }
        v => parse_payload(v),
    }
}

/// Validates and decodes the fragment's audio on the blocking pool; returns the fragment
/// without its base64 text, and the samples.
async fn decode_fragment(
    mut frag: FragmentData,
    format: sts_protocol::AudioFormat,
    max_bytes: usize,
) -> Result<(FragmentData, Vec<i16>), ProtocolError> {
    let run = move || {
        let samples = frag.validate_and_decode(&format, max_bytes);
        frag.audio.data = String::new();
        samples.map(|s| (frag, s))
    };
    tokio::task::spawn_blocking(run).await.unwrap_or_else(|e| {
        Err(ProtocolError::InvalidBase64(format!(
            "decoding stopped: {e}"
        )))
    })
}

/// `fragment:data`: checks, reserves its bytes, decodes, admits it to its stream and
/// starts its processing (answered later by `fragment:processed`).
pub(super) async fn on_fragment(
    st: Arc<AppState>,
    session: Arc<Session>,
    s: SocketRef,
    v: Value,
    ack: AckSender,
) {
    // `answer_within_ms` counts from receipt.
    let received = Instant::now();
    let mut to = FragmentRejecter {
        st: &st,
        s: &s,
        stream: field(&v, "stream_id"),
        fragment: field(&v, "fragment_id"),
    };
    if st.shutting_down.load(Ordering::SeqCst) {
        return to.reject(
            ack,
            ErrorBody::new(ErrorCode::ShuttingDown, "the service is shutting down"),
        );
    }
    let frag: FragmentData = match parse_fragment(v).await {
        Ok(f) => f,
        Err(e) => return to.reject(ack, e.to_body()),
    };
    to.stream = Some(frag.stream_id.clone());
    to.fragment = Some(frag.fragment_id.clone());
    let reject = |ack: AckSender, body: ErrorBody| to.reject(ack, body);
    let entry = {
        let streams = lock(&st.streams);
        match streams.get(&frag.stream_id) {
            Some(e) => e,
            None => {
                let owns_any = streams.owned_by(s.id) > 0;
                drop(streams);
                return reject(
                    ack,
                    if owns_any {
                        ErrorBody::new(
                            ErrorCode::UnknownStream,
                            format!(
                                "stream {:?} is not open; send stream:init first",
                                frag.stream_id
                            ),
                        )
                    } else {
                        ErrorBody::new(
                            ErrorCode::StreamNotInitialized,
                            format!(
                                "no stream:init on this connection before fragment for {:?}",
                                frag.stream_id
                            ),
                        )
                    },
                );
            }
        }
    };
    if let Err(body) = entry.check_owner(&s) {
        return reject(ack, body);
    }
    // Cheap checks first; then the bytes are reserved before any decoding, so a client
    // cannot make the server hold more than MAX_QUEUED_BYTES_PER_SESSION of its audio.
    let max_bytes = st.cfg.max_fragment_bytes;
    let bound = match frag.check_header(&entry.init.audio, max_bytes) {
        Ok(b) => b,
        Err(e) => return reject(ack, e.to_body()),
    };
    let refusal = lock(&entry.state).refusal();
    if let Some(body) = refusal {
        return reject(ack, body);
    }
    let mut queued: QueuedBytes = match session.reserve(bound) {
        Ok(q) => q,
        Err(e) => {
            st.metrics.count_refusal(Limit::QueuedBytesPerSession);
            return reject(
                ack,
                ErrorBody::new(ErrorCode::SessionQueueFull, e.to_string()),
            );
        }
    };
    let decoded = if frag.audio.data.len() > DECODE_INLINE_MAX {
        decode_fragment(frag, entry.init.audio.clone(), max_bytes).await
    } else {
        frag.validate_and_decode(&entry.init.audio, max_bytes)
            .map(|samples| (frag, samples))
    };
    let (frag, samples) = match decoded {
        Ok(x) => x,
        Err(e) => return reject(ack, e.to_body()),
    };
    queued.shrink_to(samples.len() * 2);
    let Some(pipeline) = st.pipeline() else {
        return reject(
            ack,
            ErrorBody::new(ErrorCode::ServiceNotReady, "models are still loading"),
        );
    };

    // The stream's flow control; ended, paused or closed are checked again (that may have
    // happened during the decode).
    let admission = lock(&entry.state).admit();
    let signal = match admission {
        Admission::Accepted { signal } => signal,
        Admission::Refused { error, signal } => {
            if let Some(pause) = signal {
                st.emit_backpressure(&entry, pause);
            }
            return reject(ack, error);
        }
    };
    st.metrics.inflight.inc();
    let _ = ack.send(&FragmentAck::Accepted);
    if let Some(signal) = signal {
        st.emit_backpressure(&entry, signal);
    }
    tracing::debug!(stream = %frag.stream_id, seq = frag.sequence_number, "fragment accepted");
    let job = Job {
        fragment_id: frag.fragment_id,
        stream_id: frag.stream_id,
        sequence_number: frag.sequence_number,
        duration_ms: frag.duration_ms,
        samples,
        format: entry.init.audio.clone(),
        source_language: entry.init.source_language.clone(),
        target_language: entry.init.target_language.clone(),
        voice: entry.init.voice.clone(),
        deadline: frag
            .answer_within_ms
            .map(|ms| received + Duration::from_millis(u64::from(ms))),
    };
    let st2 = st.clone();
    // Ask for a processing slot here, in the handler, so slots go out in acceptance order.
    let (slot_tx, slot_rx) = oneshot::channel();
    let _ = entry.slots.send(slot_tx);
    st.tracker.spawn(run_fragment(
        st2,
        entry,
        pipeline,
        job,
        Accepted {
            slot: slot_rx,
            at: Instant::now(),
            queued,
        },
    ));
}

/// What an accepted fragment holds until it is answered.
struct Accepted {
    /// Its processing slot, once granted.
    slot: oneshot::Receiver<OwnedSemaphorePermit>,
    /// When it was accepted (PROCESSING_TIMEOUT and processing_time_ms run from here).
    at: Instant,
    /// Its bytes, counted against its connection's MAX_QUEUED_BYTES_PER_SESSION.
    queued: QueuedBytes,
}

async fn run_fragment(
    st: Arc<AppState>,
    entry: Arc<StreamEntry>,
    pipeline: Arc<Pipeline>,
    job: Job,
    accepted: Accepted,
) {
    // `_queued` is released when this function returns: after the answer was handed to
    // the connection, or the fragment was discarded.
    let Accepted {
        slot: slot_rx,
        at: accepted,
        queued: _queued,
    } = accepted;
    // The whole wait for a slot counts against the timeout.
    let timeout = Duration::from_secs_f64(st.cfg.processing_timeout);
    let ids = (
        job.fragment_id.clone(),
        job.stream_id.clone(),
        job.sequence_number,
    );
    let entry2 = entry.clone();
    let deadline = job.deadline;
    let res = tokio::time::timeout(timeout, async move {
        // A fragment whose deadline passes while it waits for a slot is answered then, so
        // it stops holding a place in its stream's queue (and the slot goes to the next).
        let _permit = tokio::select! {
            permit = slot_rx => permit,
            () = sleep_until_opt(deadline) => return Some(pipeline.shed_queued(&job)),
        };
        // A stream whose connection dropped (or that was taken over) discards its results:
        // do not spend an engine on them, and free the audio now.
        if lock(&entry2.state).is_closed() {
            return None;
        }
        Some(pipeline.process(job).await)
    })
    .await;
    let res = match res {
        Ok(None) => {
            st.metrics.inflight.dec();
            lock(&entry.state).discarded();
            tracing::debug!(stream = %ids.1, seq = ids.2, "fragment skipped: its stream closed before processing began");
            return;
        }
        Ok(Some(ev)) => Ok(ev),
        Err(e) => Err(e),
    };
    let ev = match res {
        Ok(mut ev) => {
            // The protocol's processing_time_ms runs from acceptance (queue wait included).
            ev.processing_time_ms = accepted.elapsed().as_millis() as u64;
            ev
        }
        Err(_) => FragmentProcessed {
            fragment_id: ids.0,
            stream_id: ids.1,
            sequence_number: ids.2,
            status: FragmentStatus::Timeout,
            dubbed_audio: None,
            transcript: String::new(),
            translated_text: String::new(),
            processing_time_ms: accepted.elapsed().as_millis() as u64,
            stage_ms: Default::default(),
            error: Some(ErrorBody::new(
                ErrorCode::ProcessingTimeout,
                format!(
                    "not processed within PROCESSING_TIMEOUT={} s",
                    st.cfg.processing_timeout
                ),
            )),
        },
    };
    let status = ev.status.as_str();
    st.metrics.fragments.with_label_values(&[status]).inc();
    st.metrics
        .fragment
        .with_label_values(&[status])
        .observe(accepted.elapsed().as_secs_f64());
    st.metrics.inflight.dec();
    match ev.status {
        FragmentStatus::Success | FragmentStatus::Partial => tracing::info!(
            stream = %ev.stream_id, seq = ev.sequence_number, status, ms = ev.processing_time_ms,
            asr = ev.stage_ms.asr, mt = ev.stage_ms.translation, tts = ev.stage_ms.tts, fit = ev.stage_ms.fit,
            transcript = %ev.transcript, translation = %ev.translated_text, "fragment processed"),
        FragmentStatus::NoSpeech => tracing::info!(
            stream = %ev.stream_id, seq = ev.sequence_number, status, ms = ev.processing_time_ms,
            asr = ev.stage_ms.asr, "no speech in the fragment: nothing to dub, the client keeps its original audio"),
        _ => tracing::warn!(
            stream = %ev.stream_id, seq = ev.sequence_number, status, ms = ev.processing_time_ms,
            error = ?ev.error.as_ref().map(|e| &e.message), "fragment not dubbed; the client should use its original audio"),
    }
    let answered = lock(&entry.state).answered(ev.status);
    let Answered::Deliver { resume, complete } = answered else {
        tracing::debug!(stream = %ev.stream_id, seq = ev.sequence_number, "result discarded: stream closed");
        return;
    };
    st.emit_to_stream(&entry, events::FRAGMENT_PROCESSED, &ev)
        .await;
    if let Some(resume) = resume {
        st.emit_backpressure(&entry, resume);
    }
    if let Some(totals) = complete {
        st.finish_stream(&entry, totals).await;
    }
}

/// Sleeps until `t`, or forever without one (a `select!` arm).
async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets the dispatcher task run until it waits again.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    #[tokio::test]
    async fn slots_are_counted_as_handed_out_and_never_exceed_the_limit() {
        let busy = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("busy", "busy").buckets(vec![1.0, 2.0, 3.0]),
        )
        .unwrap();
        let tx = slot_dispatcher(2, busy.clone());
        let mut waiting = Vec::new();
        for _ in 0..4 {
            let (t, r) = oneshot::channel();
            tx.send(t).unwrap();
            waiting.push(r);
        }
        let first = waiting.remove(0).await.unwrap();
        let _second = waiting.remove(0).await.unwrap();
        settle().await;
        // 1 then 2 busy; the third waits.
        assert_eq!((busy.get_sample_count(), busy.get_sample_sum()), (2, 3.0));
        drop(first);
        let _third = waiting.remove(0).await.unwrap();
        settle().await;
        assert_eq!((busy.get_sample_count(), busy.get_sample_sum()), (3, 5.0));
        // The fourth gave up (its fragment timed out while queued): when a slot frees,
        // nothing starts and nothing is counted.
        drop(waiting.remove(0));
        drop(_third);
        settle().await;
        assert_eq!(busy.get_sample_count(), 3);
    }
}
