//! Admission control: how many connections (MAX_SESSIONS), how many streams one connection
//! owns (MAX_STREAMS_PER_SESSION), how many decoded bytes one connection has queued
//! (MAX_QUEUED_BYTES_PER_SESSION), and who owns a stream id.
//!
//! The types here know nothing of sockets beyond their id ([`Sid`]), so each rule is unit
//! tested on its own; the `server` handlers apply them under their locks.

use socketioxide::socket::Sid;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The admission limits (the label of `sts_admission_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// MAX_SESSIONS: concurrent connections.
    Sessions,
    /// MAX_STREAMS_PER_SESSION: streams (and monitor subscriptions) of one connection.
    StreamsPerSession,
    /// MAX_QUEUED_BYTES_PER_SESSION: decoded bytes one connection has queued.
    QueuedBytesPerSession,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Self; 3] = [
        Self::Sessions,
        Self::StreamsPerSession,
        Self::QueuedBytesPerSession,
    ];

    /// The setting's name, e.g. `MAX_SESSIONS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sessions => "MAX_SESSIONS",
            Self::StreamsPerSession => "MAX_STREAMS_PER_SESSION",
            Self::QueuedBytesPerSession => "MAX_QUEUED_BYTES_PER_SESSION",
        }
    }
}

/// Compares a presented secret with the expected one in time that does not depend on where
/// they differ (only on their lengths), so response timing cannot reveal a prefix.
pub fn secret_eq(presented: &str, expected: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// The secret an owner gets in its `stream:init` ready ack (`resume_token`). 122 random
/// bits (UUID v4 from the OS generator); compared in constant time; never printed.
#[derive(Clone)]
pub struct ResumeToken(String);

impl ResumeToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The token as sent to the owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token (constant time).
    pub fn matches(&self, presented: &str) -> bool {
        secret_eq(presented, &self.0)
    }
}

impl std::fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeToken(<redacted>)")
    }
}

/// The connection that owns an open stream, as far as a `stream:init` needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// Its connection id.
    pub conn: Sid,
    /// False once the server has seen that connection close (its disconnect handler may
    /// not have run yet).
    pub alive: bool,
    /// The secret it was given.
    pub token: &'a ResumeToken,
}

/// Why a connection may take over a stream another connection opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeOver {
    /// The owner's connection is closed (the reconnect case, once the server noticed).
    OwnerGone,
    /// The request carried the stream's resume token (the reconnect case before the server
    /// noticed that the old connection died).
    ResumeToken,
}

/// What a `stream:init` for a stream id does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No open stream has this id: open it.
    Open,
    /// The requesting connection owns it already: re-open it with the new parameters.
    Reopen,
    /// Another connection owns it and may lose it: re-open it on the requester.
    TakeOver(TakeOver),
    /// Another live connection owns it and the request proves nothing: refused.
    OwnedByAnother,
}

impl Claim {
    /// Decides a `stream:init` from `requester` (with the `resume_token` it presented)
    /// for a stream id currently owned by `current` (None: not open).
    pub fn decide(current: Option<Owner<'_>>, requester: Sid, presented: Option<&str>) -> Self {
        let Some(owner) = current else {
            return Self::Open;
        };
        if owner.conn == requester {
            Self::Reopen
        } else if !owner.alive {
            Self::TakeOver(TakeOver::OwnerGone)
        } else if presented.is_some_and(|t| owner.token.matches(t)) {
            Self::TakeOver(TakeOver::ResumeToken)
        } else {
            Self::OwnedByAnother
        }
    }

    /// Whether the requester gets the stream.
    pub fn granted(self) -> bool {
        !matches!(self, Self::OwnedByAnother)
    }
}

/// An open stream as the [`StreamTable`] sees it.
pub trait OwnedStream {
    /// Its owner.
    fn owner(&self) -> Owner<'_>;
}

/// Why a `stream:init` was refused by [`StreamTable::open`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenRefused {
    /// Another live connection owns the id.
    #[error("stream {stream_id:?} is open and owned by another connection; a client that reconnected gets it back by sending the resume_token of its last ready ack, or once the server has seen its old connection close")]
    OwnedByAnother {
        /// The stream id.
        stream_id: String,
    },
    /// The requester already owns its limit of streams.
    #[error("this connection already owns {owned} open streams (MAX_STREAMS_PER_SESSION={limit}); end one (stream:end) or use another connection")]
    TooManyStreams {
        /// Streams it owns.
        owned: usize,
        /// The limit.
        limit: usize,
    },
}

/// Open streams by id, each owned by one connection.
pub struct StreamTable<E> {
    streams: HashMap<String, Arc<E>>,
}

impl<E> Default for StreamTable<E> {
    fn default() -> Self {
        Self {
            streams: HashMap::new(),
        }
    }
}

/// A granted [`StreamTable::open`].
pub struct Opened<E> {
    /// How it was granted.
    pub claim: Claim,
    /// The entry it replaced (re-open or take-over), to be closed by the caller.
    pub replaced: Option<Arc<E>>,
}

impl<E: OwnedStream> StreamTable<E> {
    /// The open stream `id`.
    pub fn get(&self, id: &str) -> Option<Arc<E>> {
        self.streams.get(id).cloned()
    }

    /// Open streams owned by `conn`.
    pub fn owned_by(&self, conn: Sid) -> usize {
        self.streams
            .values()
            .filter(|e| e.owner().conn == conn)
            .count()
    }

    /// Open streams.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Opens `id` for `requester` if [`Claim::decide`] grants it and the requester stays
    /// within `max_per_conn` streams (a re-open or take-over of an id it gets anyway counts
    /// as the stream it replaces only when it already owned it). `make` builds the entry.
    pub fn open(
        &mut self,
        id: &str,
        requester: Sid,
        presented: Option<&str>,
        max_per_conn: usize,
        make: impl FnOnce() -> Arc<E>,
    ) -> Result<Opened<E>, OpenRefused> {
        let claim = Claim::decide(
            self.streams.get(id).map(|e| e.owner()),
            requester,
            presented,
        );
        if !claim.granted() {
            return Err(OpenRefused::OwnedByAnother {
                stream_id: id.to_string(),
            });
        }
        if claim != Claim::Reopen {
            let owned = self.owned_by(requester);
            if owned >= max_per_conn {
                return Err(OpenRefused::TooManyStreams {
                    owned,
                    limit: max_per_conn,
                });
            }
        }
        let replaced = self.streams.insert(id.to_string(), make());
        Ok(Opened { claim, replaced })
    }

    /// Removes every stream `conn` owns (its connection closed).
    pub fn remove_owned_by(&mut self, conn: Sid) -> Vec<(String, Arc<E>)> {
        let ids: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, e)| e.owner().conn == conn)
            .map(|(k, _)| k.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.streams.remove(&id).map(|e| (id, e)))
            .collect()
    }

    /// Removes `id` if `still_it` says the entry there is the one the caller means (a
    /// stream that completed must not remove a newer stream of the same id).
    pub fn remove_if(&mut self, id: &str, still_it: impl FnOnce(&E) -> bool) -> bool {
        if self.streams.get(id).is_some_and(|e| still_it(e)) {
            self.streams.remove(id);
            true
        } else {
            false
        }
    }
}

/// A connection refused by [`Sessions::admit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server already holds {limit} connections (MAX_SESSIONS={limit}); retry later")]
pub struct SessionsFull {
    /// The limit.
    pub limit: usize,
}

/// A fragment refused by [`Session::reserve`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this connection's accepted and unanswered fragments hold {queued} bytes; {bytes} more would exceed MAX_QUEUED_BYTES_PER_SESSION={limit}; retry after one of them is answered")]
pub struct QueueFull {
    /// Bytes queued now.
    pub queued: usize,
    /// Bytes asked for.
    pub bytes: usize,
    /// The limit.
    pub limit: usize,
}

/// One admitted connection and the bytes its fragments hold.
pub struct Session {
    id: Sid,
    admitted: Instant,
    queued: Mutex<usize>,
    limit: usize,
    total: prometheus::IntGauge,
}

impl Session {
    /// The connection id.
    pub fn id(&self) -> Sid {
        self.id
    }

    /// Bytes reserved now.
    pub fn queued(&self) -> usize {
        *lock(&self.queued)
    }

    /// Reserves `bytes` of this connection's budget until the returned guard is dropped.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Result<QueuedBytes, QueueFull> {
        let mut q = lock(&self.queued);
        if q.saturating_add(bytes) > self.limit {
            return Err(QueueFull {
                queued: *q,
                bytes,
                limit: self.limit,
            });
        }
        *q += bytes;
        self.total.add(bytes as i64);
        Ok(QueuedBytes {
            session: self.clone(),
            bytes,
        })
    }
}

/// Bytes of one fragment counted against its connection; released on drop (when the
/// fragment is answered, discarded or refused).
pub struct QueuedBytes {
    session: Arc<Session>,
    bytes: usize,
}

impl QueuedBytes {
    /// Gives back what a reservation made from an upper bound did not need.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            let give_back = self.bytes - bytes;
            *lock(&self.session.queued) -= give_back;
            self.session.total.sub(give_back as i64);
            self.bytes = bytes;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for QueuedBytes {
    fn drop(&mut self) {
        *lock(&self.session.queued) -= self.bytes;
        self.session.total.sub(self.bytes as i64);
    }
}

/// How long a connection may sit between admission and its namespace CONNECT before a
/// full table may count it as gone (see [`Sessions::admit`]).
pub const ADMISSION_GRACE: Duration = Duration::from_secs(10);

/// The admitted connections.
pub struct Sessions {
    limit: usize,
    queued_limit: usize,
    live: Mutex<HashMap<Sid, Arc<Session>>>,
    total_queued: prometheus::IntGauge,
}

impl Sessions {
    /// At most `limit` connections, each with `queued_limit` bytes; `total_queued` follows
    /// the bytes queued by all of them.
    pub fn new(limit: usize, queued_limit: usize, total_queued: prometheus::IntGauge) -> Self {
        Self {
            limit,
            queued_limit,
            live: Mutex::new(HashMap::new()),
            total_queued,
        }
    }

    /// Admits connection `id`, or refuses it when `limit` connections are admitted. When
    /// full, entries admitted more than [`ADMISSION_GRACE`] ago for which `alive` says
    /// false are dropped first: a connection whose CONNECT failed after admission never
    /// runs its disconnect handler, and must not hold its slot forever.
    pub fn admit(
        &self,
        id: Sid,
        alive: impl Fn(Sid) -> bool,
    ) -> Result<Arc<Session>, SessionsFull> {
        let mut live = lock(&self.live);
        if live.len() >= self.limit {
            live.retain(|sid, s| s.admitted.elapsed() < ADMISSION_GRACE || alive(*sid));
        }
        if live.len() >= self.limit {
            return Err(SessionsFull { limit: self.limit });
        }
        let s = Arc::new(Session {
            id,
            admitted: Instant::now(),
            queued: Mutex::new(0),
            limit: self.queued_limit,
            total: self.total_queued.clone(),
        });
        live.insert(id, s.clone());
        Ok(s)
    }

    /// The admitted connection `id`.
    pub fn get(&self, id: Sid) -> Option<Arc<Session>> {
        lock(&self.live).get(&id).cloned()
    }

    /// Forgets connection `id` (it closed). Reservations of its fragments still in
    /// processing stay counted until those are done.
    pub fn release(&self, id: Sid) {
        lock(&self.live).remove(&id);
    }

    /// Admitted connections.
    pub fn len(&self) -> usize {
        lock(&self.live).len()
    }

    /// Whether none is admitted.
    pub fn is_empty(&self) -> bool {
        lock(&self.live).is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Entry {
        conn: Sid,
        alive: bool,
        token: ResumeToken,
    }

    impl OwnedStream for Entry {
        fn owner(&self) -> Owner<'_> {
            Owner {
                conn: self.conn,
                alive: self.alive,
                token: &self.token,
            }
        }
    }

    fn entry(conn: Sid, alive: bool) -> Arc<Entry> {
        Arc::new(Entry {
            conn,
            alive,
            token: ResumeToken::generate(),
        })
    }

    #[test]
    fn secrets_compare_by_value_only() {
        assert!(secret_eq("s3cret", "s3cret"));
        assert!(!secret_eq("s3cres", "s3cret"));
        assert!(!secret_eq("s3cre", "s3cret"));
        assert!(!secret_eq("", "s3cret"));
        let t = ResumeToken::generate();
        assert_eq!(t.expose().len(), 32);
        assert!(t.matches(t.expose()));
        assert!(!t.matches(ResumeToken::generate().expose()));
        assert!(!format!("{t:?}").contains(t.expose()), "Debug hides it");
    }

    #[test]
    fn claims_keep_live_streams_with_their_owner() {
        let (a, b) = (Sid::new(), Sid::new());
        let tok = ResumeToken::generate();
        let owner = |alive| Owner {
            conn: a,
            alive,
            token: &tok,
        };
        assert_eq!(Claim::decide(None, b, None), Claim::Open);
        assert_eq!(Claim::decide(Some(owner(true)), a, None), Claim::Reopen);
        // Another connection without proof: refused, also with a wrong token.
        assert_eq!(
            Claim::decide(Some(owner(true)), b, None),
            Claim::OwnedByAnother
        );
        assert_eq!(
            Claim::decide(Some(owner(true)), b, Some("guess")),
            Claim::OwnedByAnother
        );
        // The reconnect cases.
        assert_eq!(
            Claim::decide(Some(owner(false)), b, None),
            Claim::TakeOver(TakeOver::OwnerGone)
        );
        assert_eq!(
            Claim::decide(Some(owner(true)), b, Some(tok.expose())),
            Claim::TakeOver(TakeOver::ResumeToken)
        );
    }

    #[test]
    fn table_refuses_foreign_ids_and_streams_beyond_the_limit() {
        let (a, b) = (Sid::new(), Sid::new());
        let mut t: StreamTable<Entry> = StreamTable::default();
        let opened = t.open("s1", a, None, 2, || entry(a, true)).ok().unwrap();
        assert_eq!(opened.claim, Claim::Open);
        assert!(opened.replaced.is_none());
        // b may not take a live stream of a.
        let e = t.open("s1", b, None, 2, || entry(b, true)).err().unwrap();
        assert!(
            e.to_string().contains("\"s1\"") && e.to_string().contains("another connection"),
            "{e}"
        );
        assert_eq!(t.get("s1").unwrap().conn, a);
        // a re-opens its own stream even at its limit.
        t.open("s2", a, None, 2, || entry(a, true)).ok().unwrap();
        let again = t.open("s1", a, None, 2, || entry(a, true)).ok().unwrap();
        assert_eq!(again.claim, Claim::Reopen);
        assert!(again.replaced.is_some());
        // A third stream is refused, naming the limit.
        let e = t.open("s3", a, None, 2, || entry(a, true)).err().unwrap();
        assert_eq!(e, OpenRefused::TooManyStreams { owned: 2, limit: 2 });
        assert!(e.to_string().contains("MAX_STREAMS_PER_SESSION=2"), "{e}");
        assert_eq!(t.owned_by(a), 2);
        // The owner's connection closes: its streams go, and b may open s1.
        let gone = t.remove_owned_by(a);
        assert_eq!(gone.len(), 2);
        assert!(t.is_empty());
        t.open("s1", b, None, 2, || entry(b, true)).ok().unwrap();
        // A completed old entry does not remove the newer one of the same id.
        assert!(!t.remove_if("s1", |e| e.conn == a));
        assert!(t.remove_if("s1", |e| e.conn == b));
    }

    #[test]
    fn dead_owner_or_resume_token_hands_the_stream_over() {
        let (a, b, c) = (Sid::new(), Sid::new(), Sid::new());
        let mut t: StreamTable<Entry> = StreamTable::default();
        t.open("s", a, None, 8, || entry(a, false)).ok().unwrap();
        let o = t.open("s", b, None, 8, || entry(b, true)).ok().unwrap();
        assert_eq!(o.claim, Claim::TakeOver(TakeOver::OwnerGone));
        assert_eq!(o.replaced.unwrap().conn, a);
        let tok = t.get("s").unwrap().token.expose().to_string();
        assert!(t.open("s", c, Some("nope"), 8, || entry(c, true)).is_err());
        let o = t
            .open("s", c, Some(&tok), 8, || entry(c, true))
            .ok()
            .unwrap();
        assert_eq!(o.claim, Claim::TakeOver(TakeOver::ResumeToken));
        assert_eq!(t.get("s").unwrap().conn, c);
    }

    #[test]
    fn sessions_are_capped_and_stale_admissions_expire() {
        let gauge = prometheus::IntGauge::new("q", "q").unwrap();
        let s = Sessions::new(2, 1000, gauge);
        let (a, b, c) = (Sid::new(), Sid::new(), Sid::new());
        s.admit(a, |_| true).unwrap();
        s.admit(b, |_| true).unwrap();
        let e = s.admit(c, |_| true).err().unwrap();
        assert_eq!(e, SessionsFull { limit: 2 });
        assert!(e.to_string().contains("MAX_SESSIONS=2"), "{e}");
        // Entries inside the grace period are kept even if not (yet) connected.
        assert!(s.admit(c, |_| false).is_err());
        s.release(a);
        s.admit(c, |_| true).unwrap();
        assert_eq!(s.len(), 2);
        // An admission older than the grace period whose socket is gone is dropped.
        {
            let mut live = lock(&s.live);
            let old = Arc::new(Session {
                id: b,
                admitted: Instant::now() - ADMISSION_GRACE - Duration::from_secs(1),
                queued: Mutex::new(0),
                limit: 1000,
                total: s.total_queued.clone(),
            });
            live.insert(b, old);
        }
        let d = Sid::new();
        s.admit(d, |sid| sid != b).unwrap();
        assert!(s.get(b).is_none() && s.get(d).is_some());
    }

    #[test]
    fn queued_bytes_are_bounded_and_released_on_drop() {
        let gauge = prometheus::IntGauge::new("q", "q").unwrap();
        let s = Sessions::new(4, 1000, gauge.clone());
        let sess = s.admit(Sid::new(), |_| true).unwrap();
        let mut r1 = sess.reserve(600).unwrap();
        let e = sess.reserve(500).err().unwrap();
        assert_eq!(
            e,
            QueueFull {
                queued: 600,
                bytes: 500,
                limit: 1000
            }
        );
        assert!(
            e.to_string().contains("MAX_QUEUED_BYTES_PER_SESSION=1000"),
            "{e}"
        );
        // An upper-bound reservation shrinks to what decoding produced.
        r1.shrink_to(400);
        assert_eq!(sess.queued(), 400);
        let r2 = sess.reserve(500).unwrap();
        assert_eq!(gauge.get(), 900);
        drop(r1);
        drop(r2);
        assert_eq!(sess.queued(), 0);
        assert_eq!(gauge.get(), 0);
    }
}
