//! The handshake (auth token, MAX_SESSIONS), the installation of every event handler of an
//! admitted connection, and what its disconnect closes.

use super::{control, fragment, init, lock, monitor, AppState};
use crate::admission::{secret_eq, Limit, Session};
use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef};
use std::sync::Arc;
use sts_protocol::{events, ErrorCode};

/// Why a connection was refused at the handshake: the message of the client's
/// `connect_error` (`{"message": "<CODE>: ..."}`).
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub(super) struct ConnectRefused {
    code: ErrorCode,
    message: String,
}

/// The handshake's auth token, when STS_AUTH_TOKEN is set (compared in constant time).
pub(super) fn authorize(
    st: &AppState,
    s: &SocketRef,
    auth: Option<Value>,
) -> Result<(), ConnectRefused> {
    let Some(expected) = st.cfg.sts_auth_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let token = auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str);
    if token.is_some_and(|t| secret_eq(t, expected)) {
        Ok(())
    } else {
        st.metrics
            .errors
            .with_label_values(&[ErrorCode::Unauthorized.as_str()])
            .inc();
        tracing::warn!(sid = %s.id, "connection refused: missing or wrong auth token");
        Err(ConnectRefused {
            code: ErrorCode::Unauthorized,
            message: "handshake auth must be {\"token\": \"...\"} matching STS_AUTH_TOKEN".into(),
        })
    }
}

/// MAX_SESSIONS: admits the connection or refuses it at the handshake.
pub(super) fn admit(st: &AppState, s: &SocketRef) -> Result<Arc<Session>, ConnectRefused> {
    let io = st.io.get();
    match st.sessions.admit(s.id, |sid| {
        io.is_some_and(|io| io.get_socket(sid).is_some())
    }) {
        Ok(session) => Ok(session),
        Err(e) => {
            st.metrics.count_refusal(Limit::Sessions);
            st.metrics
                .errors
                .with_label_values(&[ErrorCode::TooManySessions.as_str()])
                .inc();
            tracing::warn!(sid = %s.id, limit = e.limit, "connection refused: MAX_SESSIONS reached");
            Err(ConnectRefused {
                code: ErrorCode::TooManySessions,
                message: e.to_string(),
            })
        }
    }
}

/// Installs every event handler of an authorized, admitted socket (before its CONNECT is
/// sent).
pub(super) fn register_handlers(s: SocketRef, st: Arc<AppState>, session: Arc<Session>) {
    st.metrics.clients.inc();
    on_acked(&s, &st, events::STREAM_INIT, init::on_stream_init);
    {
        let st = st.clone();
        s.on(
            events::FRAGMENT_DATA,
            move |s: SocketRef, Data(v): Data<Value>, ack: AckSender| {
                let st = st.clone();
                let session = session.clone();
                async move { fragment::on_fragment(st, session, s, v, ack).await }
            },
        );
    }
    for ev in [
        events::STREAM_PAUSE,
        events::STREAM_RESUME,
        events::STREAM_END,
    ] {
        on_acked(&s, &st, ev, move |st, s, v, ack| {
            control::on_control(st, s, ev, v, ack)
        });
    }
    on_acked(
        &s,
        &st,
        events::MONITOR_SUBSCRIBE,
        monitor::on_monitor_subscribe,
    );
    {
        let st = st.clone();
        s.on_fallback(move |s: SocketRef, Data(_v): Data<Value>| {
            let st = st.clone();
            async move {
                tracing::debug!(sid = %s.id, "unknown event ignored");
                let _ = &st;
            }
        });
    }
    s.on_disconnect(move |s: SocketRef| {
        let st = st.clone();
        async move {
            st.metrics.clients.dec();
            st.sessions.release(s.id);
            // Its streams are closed and their ids free: a reconnecting client opens them
            // again from its new connection.
            let gone = lock(&st.streams).remove_owned_by(s.id);
            for (id, e) in gone {
                lock(&e.state).close();
                st.metrics.sessions.dec();
                tracing::info!(stream = %id, "stream closed: its connection dropped (in-flight results discarded)");
            }
            tracing::info!(sid = %s.id, "client disconnected");
        }
    });
}

/// Registers `handler` for `event`: a handler that does its work (and sends its ack) at
/// once, without awaiting anything.
fn on_acked<F>(s: &SocketRef, st: &Arc<AppState>, event: &'static str, handler: F)
where
    F: Fn(&Arc<AppState>, SocketRef, Value, AckSender) + Clone + Send + Sync + 'static,
{
    let st = st.clone();
    s.on(
        event,
        move |s: SocketRef, Data(v): Data<Value>, ack: AckSender| {
            let st = st.clone();
            let handler = handler.clone();
            async move { handler(&st, s, v, ack) }
        },
    );
}
