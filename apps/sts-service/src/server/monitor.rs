//! `monitor:subscribe`: observers of a stream's answers.

use super::{check_small, room, AppState};
use crate::admission::Limit;
use crate::config::MonitorPolicy;
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use std::sync::Arc;
use sts_protocol::{parse_payload, ControlAck, ErrorBody, ErrorCode, StreamControl};

/// `monitor:subscribe`: join the observers of a stream, as far as MONITOR allows (and at
/// most MAX_STREAMS_PER_SESSION subscriptions per connection).
pub(super) fn on_monitor_subscribe(st: &Arc<AppState>, s: SocketRef, v: Value, ack: AckSender) {
    let reject = |ack: AckSender, body: ErrorBody, stream: Option<String>| {
        tracing::warn!(sid = %s.id, stream = ?stream, code = %body.code, msg = %body.message, "monitor:subscribe rejected");
        st.emit_error(&s, &body, stream, None);
        let _ = ack.send(&ControlAck::Rejected { error: body });
    };
    let c = match check_small(&v)
        .and_then(|_| parse_payload::<StreamControl>(v))
        .and_then(|c| c.validate().map(|_| c))
    {
        Ok(c) => c,
        Err(e) => return reject(ack, e.to_body(), None),
    };
    let has_token = st
        .cfg
        .sts_auth_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    let refusal = match st.cfg.monitor {
        MonitorPolicy::Open => None,
        MonitorPolicy::Token if has_token => None,
        MonitorPolicy::Token => Some(
            "monitoring needs STS_AUTH_TOKEN (MONITOR=token) and this server has none; set STS_AUTH_TOKEN, or MONITOR=open on a trusted network",
        ),
        MonitorPolicy::Off => Some("monitoring is disabled on this server (MONITOR=off)"),
    };
    if let Some(why) = refusal {
        return reject(
            ack,
            ErrorBody::new(ErrorCode::MonitorNotAllowed, why),
            Some(c.stream_id),
        );
    }
    let room = room(&c.stream_id);
    let rooms = s.rooms();
    let limit = st.cfg.max_streams_per_session as usize;
    if !rooms.iter().any(|r| r.as_ref() == room.as_str()) && rooms.len() >= limit {
        st.metrics.count_refusal(Limit::StreamsPerSession);
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::TooManyStreams,
                format!("this connection already watches {} streams (MAX_STREAMS_PER_SESSION={limit}, which also bounds monitor subscriptions)", rooms.len()),
            ),
            Some(c.stream_id),
        );
    }
    s.join(room);
    tracing::info!(sid = %s.id, stream = %c.stream_id, "monitor subscribed");
    let _ = ack.send(&ControlAck::Ok);
}
