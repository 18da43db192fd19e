//! The coordinator's per-fragment ledger: every fragment cut from the input, in sequence
//! order, with the one stage it is in and the deadline by which it must go out.
//!
//! ```text
//! Converting --sent--> Sent --answer--> Decoding --decoded--> Resolved
//!      |                 |                  |                    ^
//!      +---- not sent / refused / deadline / failed answer ------+
//! ```
//!
//! A fragment leaves the ledger only from the front and only once resolved, so the output
//! gets fragments in order whatever order their answers come in. The ledger holds state
//! only: it never reads a clock (the caller passes `now`, so tests drive time by hand), and
//! the coordinator logs, counts and pushes what it hands back.

use crate::fragmenter::Fragment;
use crate::worker::Outcome;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use sts_protocol::FragmentProcessed;

/// What a fragment goes out as.
#[derive(Debug)]
pub enum Resolution {
    /// The dubbed (or mixed) audio, ready for the output.
    Dubbed {
        /// Internal-format audio of exactly the fragment's frames.
        pcm48: Vec<i16>,
        /// The STS's answer.
        processed: Box<FragmentProcessed>,
        /// From the send to the answer's arrival.
        roundtrip: Duration,
    },
    /// The original audio.
    Original {
        /// Why (fallback, failed, no speech).
        outcome: Outcome,
        /// In words, for the fragment log.
        reason: String,
        /// The STS's answer, when there was one.
        processed: Option<Box<FragmentProcessed>>,
    },
}

impl Resolution {
    /// Original audio for `reason`, without an answer.
    pub fn original(outcome: Outcome, reason: impl Into<String>) -> Self {
        Self::Original {
            outcome,
            reason: reason.into(),
            processed: None,
        }
    }
}

/// The one stage a fragment is in.
#[derive(Debug)]
pub enum Stage {
    /// Being converted to the STS's format and handed to it.
    Converting,
    /// Taken by the STS at this time; waiting for its answer.
    Sent(Instant),
    /// Its answer arrived and is being decoded (and mixed) off the async threads.
    Decoding {
        /// When it was sent (None when the answer came before the send was confirmed).
        sent: Option<Instant>,
    },
    /// Decided; goes out when every fragment before it has.
    Resolved(Resolution),
}

/// One fragment in the ledger.
#[derive(Debug)]
pub struct Entry {
    /// The fragment (its original audio included).
    pub frag: Fragment,
    /// When it must be resolved: past it, it goes out with its original audio.
    pub deadline: Instant,
    stage: Stage,
}

impl Entry {
    /// Its stage.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// Not resolved yet.
    pub fn is_open(&self) -> bool {
        !matches!(self.stage, Stage::Resolved(_))
    }

    fn sent_at(&self) -> Option<Instant> {
        match self.stage {
            Stage::Sent(t) => Some(t),
            Stage::Decoding { sent } => sent,
            _ => None,
        }
    }

    /// The resolution of a fragment taken from the front of the ledger.
    pub fn into_resolved(self) -> (Fragment, Instant, Resolution) {
        match self.stage {
            Stage::Resolved(r) => (self.frag, self.deadline, r),
            _ => unreachable!("only resolved entries leave the ledger"),
        }
    }
}

/// What an STS answer for a sequence number meets.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerFate {
    /// The fragment waits for it (sent, or still being handed over).
    Awaited,
    /// The fragment already went out, or was never cut by this worker.
    Gone,
    /// The fragment is already resolved (its deadline passed, or it failed): too late.
    Late,
    /// An answer for it is already being decoded: a duplicate.
    Duplicate,
}

/// Every fragment not yet pushed to the output, in sequence order.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: VecDeque<Entry>,
}

impl Ledger {
    /// Adds a newly cut fragment (sequence numbers increase).
    pub fn open(&mut self, frag: Fragment, deadline: Instant) {
        self.entries.push_back(Entry {
            frag,
            deadline,
            stage: Stage::Converting,
        });
    }

    fn find(&mut self, seq: u64) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.frag.sequence == seq)
    }

    /// The fragment `seq`, while it is in the ledger.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        self.entries.iter().find(|e| e.frag.sequence == seq)
    }

    /// The STS took `seq` at `at` (ignored unless the fragment is still converting: an
    /// answer may overtake the confirmation of its send).
    pub fn sent(&mut self, seq: u64, at: Instant) {
        if let Some(e) = self.find(seq) {
            if matches!(e.stage, Stage::Converting) {
                e.stage = Stage::Sent(at);
            }
        }
    }

    /// Resolves an open fragment at `now`. Returns the time since it was sent (zero when it
    /// never was), or None when `seq` is gone or already resolved (the resolution is
    /// dropped).
    pub fn resolve(
        &mut self,
        seq: u64,
        now: Instant,
        resolution: impl FnOnce(Duration) -> Resolution,
    ) -> Option<Duration> {
        let e = self.find(seq).filter(|e| e.is_open())?;
        let roundtrip = e
            .sent_at()
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        e.stage = Stage::Resolved(resolution(roundtrip));
        Some(roundtrip)
    }

    /// What an answer for `seq` meets now.
    pub fn answer_fate(&self, seq: u64) -> AnswerFate {
        match self.get(seq).map(|e| &e.stage) {
            None => AnswerFate::Gone,
            Some(Stage::Resolved(_)) => AnswerFate::Late,
            Some(Stage::Decoding { .. }) => AnswerFate::Duplicate,
            Some(Stage::Converting | Stage::Sent(_)) => AnswerFate::Awaited,
        }
    }

    /// An awaited answer for `seq` is being decoded. Returns false (and changes nothing)
    /// unless the answer was awaited.
    pub fn decoding(&mut self, seq: u64) -> bool {
        match self.find(seq) {
            Some(e) if matches!(e.stage, Stage::Converting | Stage::Sent(_)) => {
                e.stage = Stage::Decoding { sent: e.sent_at() };
                true
            }
            _ => false,
        }
    }

    /// Resolves every open fragment whose deadline is at or before `now` with its original
    /// audio. Returns the sequence numbers resolved, each with whether it had been sent.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, bool)> {
        let mut expired = Vec::new();
        for e in self.entries.iter_mut() {
            if e.is_open() && e.deadline <= now {
                let sent = e.sent_at().is_some();
                let reason = if sent {
                    "no answer before the deadline"
                } else {
                    "not sent before the deadline"
                };
                e.stage = Stage::Resolved(Resolution::original(Outcome::Fallback, reason));
                expired.push((e.frag.sequence, sent));
            }
        }
        expired
    }

    /// The earliest deadline of an open fragment (when the coordinator must next look).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| e.is_open())
            .map(|e| e.deadline)
            .min()
    }

    /// The front fragment, once it is resolved (fragments leave strictly in order).
    pub fn pop_ready(&mut self) -> Option<Entry> {
        if self.entries.front().is_some_and(|e| !e.is_open()) {
            self.entries.pop_front()
        } else {
            None
        }
    }

    /// Fragments sent and not yet answered (decoding included).
    pub fn in_flight(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.stage, Stage::Sent(_) | Stage::Decoding { .. }))
            .count()
    }

    /// Fragments in the ledger.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No fragment waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(seq: u64) -> Fragment {
        Fragment {
            sequence: seq,
            start_ns: seq * 1_000_000_000,
            duration_ns: 1_000_000_000,
            pcm: vec![seq as i16; 96_000],
            max_drift_ns: 0,
            partial: false,
        }
    }

    fn dubbed(seq: u64) -> impl FnOnce(Duration) -> Resolution {
        move |roundtrip| Resolution::Dubbed {
            pcm48: vec![0; 96_000],
            processed: Box::new(FragmentProcessed {
                fragment_id: format!("f-{seq}"),
                stream_id: "s".into(),
                sequence_number: seq,
                status: sts_protocol::FragmentStatus::Success,
                dubbed_audio: None,
                transcript: String::new(),
                translated_text: String::new(),
                processing_time_ms: 0,
                stage_ms: Default::default(),
                error: None,
            }),
            roundtrip,
        }
    }

    fn outcome(e: Entry) -> (u64, Option<Outcome>) {
        let seq = e.frag.sequence;
        match e.into_resolved().2 {
            Resolution::Dubbed { .. } => (seq, None),
            Resolution::Original { outcome, .. } => (seq, Some(outcome)),
        }
    }

    #[test]
    fn fragments_leave_in_order_whatever_order_their_answers_come_in() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        for seq in 0..3 {
            l.open(frag(seq), t0 + Duration::from_secs(10 + seq));
            l.sent(seq, t0);
        }
        assert_eq!(l.in_flight(), 3);
        let t = t0 + Duration::from_millis(700);
        assert_eq!(l.resolve(2, t, dubbed(2)), Some(Duration::from_millis(700)));
        assert!(l.pop_ready().is_none(), "2 waits for 0 and 1");
        l.resolve(0, t, dubbed(0));
        assert_eq!(l.pop_ready().map(outcome), Some((0, None)));
        assert!(l.pop_ready().is_none(), "1 is still open");
        l.resolve(1, t, |_| Resolution::original(Outcome::Failed, "refused"));
        assert_eq!(l.pop_ready().map(outcome), Some((1, Some(Outcome::Failed))));
        assert_eq!(l.pop_ready().map(outcome), Some((2, None)));
        assert!(l.is_empty());
    }

    #[test]
    fn a_deadline_resolves_with_the_original_and_the_answer_after_it_is_late() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        l.open(frag(0), at(3000));
        l.open(frag(1), at(4000));
        l.sent(0, t0);
        assert_eq!(l.next_deadline(), Some(at(3000)));
        assert_eq!(l.expire(at(2999)), vec![], "not yet");
        assert_eq!(l.expire(at(3000)), vec![(0, true)]);
        assert_eq!(l.next_deadline(), Some(at(4000)));
        assert_eq!(l.answer_fate(0), AnswerFate::Late);
        assert_eq!(
            l.resolve(0, at(3100), dubbed(0)),
            None,
            "a resolved fragment stays resolved"
        );
        assert_eq!(
            l.pop_ready().map(outcome),
            Some((0, Some(Outcome::Fallback)))
        );
        assert_eq!(l.answer_fate(0), AnswerFate::Gone);
        assert_eq!(l.expire(at(4000)), vec![(1, false)], "never sent");
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn decoding_is_one_stage_and_a_deadline_during_it_wins() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        l.open(frag(0), t0 + Duration::from_secs(2));
        // The answer overtook the confirmation of the send.
        assert_eq!(l.answer_fate(0), AnswerFate::Awaited);
        assert!(l.decoding(0));
        l.sent(0, t0);
        assert!(matches!(
            l.get(0).unwrap().stage(),
            Stage::Decoding { sent: None }
        ));
        assert_eq!(l.answer_fate(0), AnswerFate::Duplicate);
        assert!(!l.decoding(0), "one decode per fragment");
        assert_eq!(l.in_flight(), 1);
        let late = t0 + Duration::from_secs(2);
        assert_eq!(l.expire(late), vec![(0, false)]);
        assert_eq!(
            l.resolve(0, late, dubbed(0)),
            None,
            "the decode finished too late"
        );
        assert_eq!(l.in_flight(), 0);
        assert_eq!(
            l.pop_ready().map(outcome),
            Some((0, Some(Outcome::Fallback)))
        );
    }
}
