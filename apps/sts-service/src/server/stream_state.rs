//! The state of one open stream, and the transitions the handlers ask of it: whether it
//! takes a fragment (and which `backpressure` event that calls for), what an answer leads
//! to (resume? stream complete?), `stream:pause` / `stream:resume` / `stream:end`, and its
//! closing. It knows nothing of sockets, so each rule is unit tested on its own; the
//! handlers hold it under the stream's lock and emit what it returns after releasing it.
//!
//! Flow control (docs/protocol.md, "Backpressure policy"): at most `max_inflight`
//! fragments are processed and as many again wait, so at most `2 * max_inflight` are
//! accepted and unanswered. The fragment that fills every slot calls for `slow_down`, the
//! one that fills the queue for `pause`; once paused, the stream asks for `resume` when it
//! has drained to at most `max_inflight - 1` unanswered.

use sts_protocol::{BackpressureAction, ErrorBody, ErrorCode, FragmentStatus, Totals};

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Takes fragments (unless its client paused it).
    Open,
    /// `stream:end` was received: no new fragments; `stream:complete` once every accepted
    /// fragment is answered.
    Ending,
    /// Completed, or its connection dropped, or another connection took it over: results
    /// still in flight are discarded.
    Closed,
}

/// A `backpressure` event to send: `action`, with `inflight` accepted and unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal {
    /// Accepted, unanswered fragments of the stream.
    pub inflight: u32,
    /// What the client is asked to do.
    pub action: BackpressureAction,
}

/// What [`StreamState::admit`] decided about a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Accepted (counted as unanswered); send `signal`, if any, after the ack.
    Accepted {
        /// `slow_down` or `pause` when this fragment filled the slots or the queue.
        signal: Option<Signal>,
    },
    /// Refused with `error`; send `signal` (a `pause`), if any, too.
    Refused {
        /// `STREAM_NOT_ACCEPTING` or `BACKPRESSURE`.
        error: ErrorBody,
        /// `pause`, the first time a full queue refuses a fragment without having paused.
        signal: Option<Signal>,
    },
}

/// What to do with a fragment's answer ([`StreamState::answered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// The stream is closed: drop the answer.
    Discard,
    /// Send the answer; then `resume` (when the stream was paused and has drained), then
    /// `stream:complete` with the totals (when it was the last answer of an ended stream,
    /// which is now closed).
    Deliver {
        /// A `resume` to send after the answer.
        resume: Option<Signal>,
        /// The stream's totals, when the stream is complete.
        complete: Option<Totals>,
    },
}

/// The per-stream state: lifecycle, unanswered fragments, pauses and totals.
#[derive(Debug)]
pub struct StreamState {
    max_inflight: u32,
    lifecycle: Lifecycle,
    /// Accepted fragments not yet answered (or discarded).
    unanswered: u32,
    /// `stream:pause` without `stream:resume` since.
    paused_by_client: bool,
    /// A `pause` was sent and no `resume` since.
    paused_by_backpressure: bool,
    totals: Totals,
}

impl StreamState {
    /// An open stream processing at most `max_inflight` fragments at once.
    pub fn new(max_inflight: u32) -> Self {
        Self {
            max_inflight,
            lifecycle: Lifecycle::Open,
            unanswered: 0,
            paused_by_client: false,
            paused_by_backpressure: false,
            totals: Totals::default(),
        }
    }

    /// Where the stream is in its life.
    pub fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    /// Whether results are discarded (closed).
    pub fn is_closed(&self) -> bool {
        self.lifecycle == Lifecycle::Closed
    }

    /// Accepted fragments not yet answered.
    pub fn unanswered(&self) -> u32 {
        self.unanswered
    }

    /// Why the stream takes no fragments now (ended, closed, paused by its client); `None`
    /// when it does. Backpressure is not checked here (see [`Self::admit`]).
    pub fn refusal(&self) -> Option<ErrorBody> {
        let why = match self.lifecycle {
            Lifecycle::Ending => "stream:end was sent; no more fragments are accepted",
            Lifecycle::Closed => {
                "the stream is closed (it completed, or another connection took it over); no more fragments are accepted"
            }
            Lifecycle::Open if self.paused_by_client => {
                "stream is paused (stream:pause); send stream:resume first"
            }
            Lifecycle::Open => return None,
        };
        Some(ErrorBody::new(ErrorCode::StreamNotAccepting, why))
    }

    /// Takes a fragment into the stream's count of unanswered ones, or refuses it.
    pub fn admit(&mut self) -> Admission {
        if let Some(error) = self.refusal() {
            return Admission::Refused {
                error,
                signal: None,
            };
        }
        let limit = 2 * self.max_inflight;
        if self.unanswered >= limit {
            let first = !self.paused_by_backpressure;
            self.paused_by_backpressure = true;
            return Admission::Refused {
                error: ErrorBody::new(
                    ErrorCode::Backpressure,
                    format!(
                        "{} fragments are queued or processing (limit {limit}); wait for backpressure resume",
                        self.unanswered
                    ),
                ),
                signal: first.then_some(self.signal(BackpressureAction::Pause)),
            };
        }
        self.unanswered += 1;
        let signal = if self.unanswered == limit {
            self.paused_by_backpressure = true;
            Some(self.signal(BackpressureAction::Pause))
        } else if self.unanswered == self.max_inflight {
            Some(self.signal(BackpressureAction::SlowDown))
        } else {
            None
        };
        Admission::Accepted { signal }
    }

    /// A fragment was answered with `status`: counts it and says what to send.
    pub fn answered(&mut self, status: FragmentStatus) -> Answered {
        self.unanswered = self.unanswered.saturating_sub(1);
        self.totals.add(status);
        if self.is_closed() {
            return Answered::Discard;
        }
        let resume = if self.paused_by_backpressure && self.unanswered < self.max_inflight {
            self.paused_by_backpressure = false;
            Some(self.signal(BackpressureAction::Resume))
        } else {
            None
        };
        Answered::Deliver {
            resume,
            complete: self.complete_if_drained(),
        }
    }

    /// A fragment was dropped unanswered (its stream closed before it was processed).
    pub fn discarded(&mut self) {
        self.unanswered = self.unanswered.saturating_sub(1);
    }

    /// `stream:pause`: fragments are refused until [`Self::resume`].
    pub fn pause(&mut self) {
        self.paused_by_client = true;
    }

    /// `stream:resume`.
    pub fn resume(&mut self) {
        self.paused_by_client = false;
    }

    /// `stream:end`: no new fragments. Returns the totals when the stream is complete now
    /// (nothing unanswered; it is closed), else it completes with its last answer.
    pub fn end(&mut self) -> Option<Totals> {
        if self.lifecycle == Lifecycle::Open {
            self.lifecycle = Lifecycle::Ending;
        }
        self.complete_if_drained()
    }

    /// Closes the stream without completing it (its connection dropped, or it was taken
    /// over): answers still to come are discarded.
    pub fn close(&mut self) {
        self.lifecycle = Lifecycle::Closed;
    }

    fn complete_if_drained(&mut self) -> Option<Totals> {
        if self.lifecycle == Lifecycle::Ending && self.unanswered == 0 {
            self.lifecycle = Lifecycle::Closed;
            Some(self.totals)
        } else {
            None
        }
    }

    fn signal(&self, action: BackpressureAction) -> Signal {
        Signal {
            inflight: self.unanswered,
            action,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sts_protocol::BackpressureAction::{Pause, Resume, SlowDown};

    fn accepted(signal: Option<(u32, BackpressureAction)>) -> Admission {
        Admission::Accepted {
            signal: signal.map(|(inflight, action)| Signal { inflight, action }),
        }
    }

    fn delivered(resume: Option<u32>, complete: Option<Totals>) -> Answered {
        Answered::Deliver {
            resume: resume.map(|inflight| Signal {
                inflight,
                action: Resume,
            }),
            complete,
        }
    }

    fn refused_code(a: &Admission) -> ErrorCode {
        match a {
            Admission::Refused { error, .. } => error.code,
            a => panic!("expected a refusal, got {a:?}"),
        }
    }

    #[test]
    fn slow_down_at_max_inflight_pause_at_twice_then_refuse() {
        let mut s = StreamState::new(3);
        assert_eq!(s.admit(), accepted(None));
        assert_eq!(s.admit(), accepted(None));
        assert_eq!(s.admit(), accepted(Some((3, SlowDown))), "every slot busy");
        assert_eq!(s.admit(), accepted(None));
        assert_eq!(s.admit(), accepted(None));
        assert_eq!(s.admit(), accepted(Some((6, Pause))), "the queue is full");
        assert_eq!(s.unanswered(), 6);
        // Beyond 2 * MAX_INFLIGHT: refused, and no second pause.
        let a = s.admit();
        assert_eq!(refused_code(&a), ErrorCode::Backpressure);
        let Admission::Refused { error, signal } = a else {
            unreachable!()
        };
        assert_eq!(signal, None, "already paused");
        assert!(
            error.message.contains("6 fragments") && error.message.contains("limit 6"),
            "{}",
            error.message
        );
        assert_eq!(s.unanswered(), 6, "a refused fragment is not counted");
    }

    #[test]
    fn resume_once_drained_below_max_inflight() {
        let mut s = StreamState::new(3);
        for _ in 0..6 {
            s.admit();
        }
        let ok = FragmentStatus::Success;
        assert_eq!(s.answered(ok), delivered(None, None), "5 unanswered");
        assert_eq!(s.answered(ok), delivered(None, None), "4");
        assert_eq!(s.answered(ok), delivered(None, None), "3 = MAX_INFLIGHT");
        assert_eq!(s.answered(ok), delivered(Some(2), None), "2: resume");
        assert_eq!(s.answered(ok), delivered(None, None), "resumed once only");
        // Flowing again: the thresholds apply afresh.
        assert_eq!(s.admit(), accepted(None));
        assert_eq!(s.admit(), accepted(Some((3, SlowDown))));
    }

    #[test]
    fn max_inflight_one_slows_down_at_one_and_pauses_at_two() {
        let mut s = StreamState::new(1);
        let ok = FragmentStatus::Success;
        assert_eq!(s.admit(), accepted(Some((1, SlowDown))));
        assert_eq!(s.admit(), accepted(Some((2, Pause))));
        assert_eq!(refused_code(&s.admit()), ErrorCode::Backpressure);
        assert_eq!(s.answered(ok), delivered(None, None), "1 is not below 1");
        assert_eq!(s.answered(ok), delivered(Some(0), None));
    }

    #[test]
    fn a_full_queue_not_yet_paused_sends_pause_with_its_first_refusal() {
        let mut s = StreamState::new(1);
        s.admit();
        s.admit();
        s.paused_by_backpressure = false; // (not reachable through admit/answered)
        let pause = Some(Signal {
            inflight: 2,
            action: Pause,
        });
        assert!(matches!(s.admit(), Admission::Refused { signal, .. } if signal == pause));
        assert!(matches!(s.admit(), Admission::Refused { signal: None, .. }));
    }

    #[test]
    fn client_pause_refuses_until_resume() {
        let mut s = StreamState::new(3);
        s.pause();
        let a = s.admit();
        assert_eq!(refused_code(&a), ErrorCode::StreamNotAccepting);
        assert!(s.refusal().unwrap().message.contains("stream:resume"));
        assert_eq!(s.unanswered(), 0);
        s.resume();
        assert_eq!(s.refusal(), None);
        assert_eq!(s.admit(), accepted(None));
    }

    #[test]
    fn ended_stream_completes_once_drained() {
        let mut s = StreamState::new(3);
        s.admit();
        s.admit();
        assert_eq!(s.end(), None, "two still unanswered");
        assert_eq!(s.lifecycle(), Lifecycle::Ending);
        let a = s.admit();
        assert_eq!(refused_code(&a), ErrorCode::StreamNotAccepting);
        assert!(s.refusal().unwrap().message.contains("stream:end"));
        assert_eq!(s.answered(FragmentStatus::Success), delivered(None, None));
        let totals = Totals {
            success: 1,
            timeout: 1,
            ..Totals::default()
        };
        assert_eq!(
            s.answered(FragmentStatus::Timeout),
            delivered(None, Some(totals)),
            "the last answer completes the stream"
        );
        assert_eq!(s.lifecycle(), Lifecycle::Closed);
        // Complete once only: a repeated stream:end or a late answer changes nothing.
        assert_eq!(s.end(), None);
        assert_eq!(s.answered(FragmentStatus::Success), Answered::Discard);
    }

    #[test]
    fn end_with_nothing_unanswered_completes_at_once() {
        let mut s = StreamState::new(3);
        assert_eq!(s.end(), Some(Totals::default()));
        assert!(s.is_closed());
        assert_eq!(s.end(), None);
    }

    #[test]
    fn closed_stream_discards_answers_and_never_completes() {
        let mut s = StreamState::new(3);
        s.admit();
        s.admit();
        s.close();
        assert!(s.is_closed());
        assert_eq!(
            refused_code(&s.admit()),
            ErrorCode::StreamNotAccepting,
            "closed"
        );
        assert_eq!(s.answered(FragmentStatus::Success), Answered::Discard);
        s.discarded();
        assert_eq!(s.unanswered(), 0);
        assert_eq!(s.end(), None, "a closed stream does not complete");
        assert_eq!(s.lifecycle(), Lifecycle::Closed);
    }

    #[test]
    fn closing_while_ending_discards_the_rest() {
        let mut s = StreamState::new(3);
        s.admit();
        assert_eq!(s.end(), None);
        s.close();
        assert_eq!(s.answered(FragmentStatus::Success), Answered::Discard);
        assert_eq!(s.unanswered(), 0);
    }
}
