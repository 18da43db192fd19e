//! `stream:pause`, `stream:resume`, `stream:end`.

use super::{check_small, field, lock, AppState};
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use std::sync::Arc;
use sts_protocol::{events, parse_payload, ControlAck, ErrorBody, ErrorCode, StreamControl};

/// `stream:pause`, `stream:resume` and `stream:end` (`ev`) from the stream's owner.
pub(super) fn on_control(
    st: &Arc<AppState>,
    s: SocketRef,
    ev: &'static str,
    v: Value,
    ack: AckSender,
) {
    let hint = field(&v, "stream_id");
    let reject = |ack: AckSender, body: ErrorBody| {
        st.emit_error(&s, &body, hint.clone(), None);
        let _ = ack.send(&ControlAck::Rejected { error: body });
    };
    let c: StreamControl = match check_small(&v)
        .and_then(|_| parse_payload::<StreamControl>(v))
        .and_then(|c| c.validate().map(|_| c))
    {
        Ok(c) => c,
        Err(e) => return reject(ack, e.to_body()),
    };
    let Some(entry) = lock(&st.streams).get(&c.stream_id) else {
        return reject(
            ack,
            ErrorBody::new(
                ErrorCode::UnknownStream,
                format!("stream {:?} is not open", c.stream_id),
            ),
        );
    };
    if let Err(body) = entry.check_owner(&s) {
        return reject(ack, body);
    }
    let complete = {
        let mut state = lock(&entry.state);
        match ev {
            events::STREAM_PAUSE => {
                state.pause();
                None
            }
            events::STREAM_RESUME => {
                state.resume();
                None
            }
            _ => state.end(),
        }
    };
    tracing::info!(stream = %c.stream_id, event = ev, "stream control");
    let _ = ack.send(&ControlAck::Ok);
    if let Some(totals) = complete {
        let st = st.clone();
        tokio::spawn(async move { st.finish_stream(&entry, totals).await });
    }
}
