//! `stream:init`: opens (or re-opens, or takes over) a stream.

use super::fragment::slot_dispatcher;
use super::stream_state::StreamState;
use super::{check_small, field, lock, AppState, StreamEntry};
use crate::admission::{Claim, Limit, OpenRefused, ResumeToken, TakeOver};
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use sts_protocol::{
    parse_payload, resume_token_of, ErrorBody, ErrorCode, StreamInit, StreamInitAck,
    PROTOCOL_VERSION,
};

/// `stream:init`: opens the stream, re-opens it for its owner, or takes it over (see
/// [`crate::admission::Claim`]); the ready ack carries a fresh resume token.
pub(super) fn on_stream_init(st: &Arc<AppState>, s: SocketRef, v: Value, ack: AckSender) {
    let sid_hint = field(&v, "stream_id");
    let reject = |ack: AckSender, body: ErrorBody| {
        tracing::warn!(sid = %s.id, stream = ?sid_hint, code = %body.code, msg = %body.message, "stream:init rejected");
        st.emit_error(&s, &body, sid_hint.clone(), None);
        let _ = ack.send(&StreamInitAck::Rejected { error: body });
    };
    if st.shutting_down.load(Ordering::SeqCst) {
        return reject(
            ack,
            ErrorBody::new(ErrorCode::ShuttingDown, "the service is shutting down"),
        );
    }
    if let Err(e) = check_small(&v) {
        return reject(ack, e.to_body());
    }
    let presented = resume_token_of(&v);
    let init: StreamInit =
        match parse_payload::<StreamInit>(v).and_then(|i| i.validate().map(|_| i)) {
            Ok(i) => i,
            Err(e) => return reject(ack, e.to_body()),
        };
    let Some(pipeline) = st.pipeline() else {
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::ServiceNotReady,
                "models are still loading; retry when GET /health answers 200",
            ),
        );
    };
    if let Err(body) = pipeline.check_languages(&init.source_language, &init.target_language) {
        return reject(ack, body);
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let resume_token = ResumeToken::generate();
    let opened = lock(&st.streams).open(
        &init.stream_id,
        s.id,
        presented.as_deref(),
        st.cfg.max_streams_per_session as usize,
        || {
            Arc::new(StreamEntry {
                init: init.clone(),
                session_id: session_id.clone(),
                owner: s.clone(),
                resume_token: resume_token.clone(),
                slots: slot_dispatcher(st.cfg.max_inflight as usize, st.metrics.busy_slots.clone()),
                state: Mutex::new(StreamState::new(st.cfg.max_inflight)),
            })
        },
    );
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            let code = match e {
                OpenRefused::OwnedByAnother { .. } => ErrorCode::StreamAlreadyExists,
                OpenRefused::TooManyStreams { .. } => {
                    st.metrics.count_refusal(Limit::StreamsPerSession);
                    ErrorCode::TooManyStreams
                }
            };
            return reject(ack, ErrorBody::new(code, e.to_string()));
        }
    };
    match (opened.claim, opened.replaced) {
        (claim, Some(old)) => {
            lock(&old.state).close();
            if let Claim::TakeOver(how) = claim {
                let how = match how {
                    TakeOver::OwnerGone => "its old connection is closed",
                    TakeOver::ResumeToken => "the new connection presented the resume token",
                };
                tracing::warn!(stream = %init.stream_id, old = %old.owner.id, new = %s.id, how, "stream taken over by a new connection (reconnect)");
                if old.owner.connected() {
                    let body = ErrorBody::new(
                        ErrorCode::NotStreamOwner,
                        format!(
                            "stream {:?} was taken over by another connection ({how}); results of its earlier fragments are discarded",
                            init.stream_id
                        ),
                    );
                    st.emit_error(&old.owner, &body, Some(init.stream_id.clone()), None);
                }
            }
        }
        (_, None) => st.metrics.sessions.inc(),
    }
    tracing::info!(stream = %init.stream_id, session = %session_id, rate = init.audio.sample_rate_hz, channels = init.audio.channels, src = %init.source_language, tgt = %init.target_language, "stream opened");
    let _ = ack.send(&StreamInitAck::Ready {
        session_id,
        resume_token: Some(resume_token.expose().to_string()),
        max_inflight: st.cfg.max_inflight,
        max_fragment_bytes: st.cfg.max_fragment_bytes,
        protocol_version: PROTOCOL_VERSION.into(),
    });
}
