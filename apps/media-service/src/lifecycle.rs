//! What a stream's supervisor does after each run of its worker: the stream lifecycle as
//! one explicit state machine, kept free of I/O so every transition is unit-tested.
//!
//! ```text
//!            worker run ends
//!   Running ─────────────────┬─ cancelled ───────────────────────────────► Ended(Stopped)
//!      ▲                     ├─ input stopped, live, grace > 0 ──────────► AwaitingInput{until}
//!      │                     ├─ input stopped otherwise ─────────────────► Ended(InputEnded)
//!      │                     └─ error ───────────────────────────────────► Backoff
//!      │  input back (listed again, or any attempt for a URI we cannot list)
//!   AwaitingInput{until} ──── grace over with the input gone ────────────► Ended(InputGone)
//! ```
//!
//! While a stream awaits its input, a run that ends (no media yet, or an error because the
//! path vanished again) keeps the same grace deadline: the grace counts from the moment the
//! input was last seen, never per attempt, so what a viewer gets does not depend on how
//! many attempts fit in it.

use std::time::{Duration, Instant};

/// How one run of a worker ended, as the supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// The input stopped (EOS, or no media for INPUT_IDLE_TIMEOUT_MS); the output was
    /// finished properly.
    InputStopped,
    /// The worker failed (no media at start, pipeline or network error, no audio).
    Failed,
    /// Stop requested (DELETE, SIGTERM).
    Cancelled,
}

/// Where a stream's supervisor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A worker runs (the first one, or one after a retry).
    Running,
    /// The input stopped; a worker starts again as soon as it is back, until `until`.
    AwaitingInput {
        /// End of the grace period (refreshed whenever the input is seen listed).
        until: Instant,
    },
    /// A failed worker is retried after the backoff delay.
    Backoff,
    /// The supervisor ends.
    Ended(EndReason),
}

/// Why a supervisor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Stop requested.
    Stopped,
    /// The input ended and no grace applies (a file, or INPUT_GRACE_MS=0).
    InputEnded,
    /// The input did not come back within INPUT_GRACE_MS.
    InputGone,
}

/// The stream's fixed facts the transitions depend on.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The input can come back (a live URI, not a file).
    pub live: bool,
    /// INPUT_GRACE_MS.
    pub grace: Duration,
}

impl Policy {
    /// Grace applies to this stream.
    fn awaits(&self) -> bool {
        self.live && !self.grace.is_zero()
    }
}

/// The next phase after a worker run that began in `from` and ended with `end`.
pub fn after_run(from: Phase, end: RunEnd, policy: Policy, now: Instant) -> Phase {
    match (end, from) {
        (RunEnd::Cancelled, _) => Phase::Ended(EndReason::Stopped),
        (RunEnd::InputStopped, _) if policy.awaits() => Phase::AwaitingInput {
            until: now + policy.grace,
        },
        (RunEnd::InputStopped, _) => Phase::Ended(EndReason::InputEnded),
        // Still waiting for the input: the grace keeps its deadline.
        (RunEnd::Failed, Phase::AwaitingInput { until }) => Phase::AwaitingInput { until },
        (RunEnd::Failed, _) => Phase::Backoff,
    }
}

/// The phase a run counts as having begun in, once it is known whether it got its input
/// (cut at least one fragment): a run that did ended the wait for the input, so a failure
/// after it is a new outage with a grace period of its own, not the end of the old one.
pub fn after_input_seen(from: Phase, got_input: bool) -> Phase {
    match from {
        Phase::AwaitingInput { .. } if got_input => Phase::Running,
        other => other,
    }
}

/// After a backoff, the input is known gone (its path vanished from the media server).
pub fn input_vanished(policy: Policy, now: Instant) -> Phase {
    if policy.awaits() {
        Phase::AwaitingInput {
            until: now + policy.grace,
        }
    } else {
        Phase::Ended(EndReason::InputGone)
    }
}

/// Whether a URI is a live input that can stop and come back (not a file).
pub fn is_live(uri: &str) -> bool {
    !uri.trim_start().to_ascii_lowercase().starts_with("file:")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn live() -> Policy {
        Policy {
            live: true,
            grace: GRACE,
        }
    }

    #[test]
    fn a_run_that_got_its_input_back_fails_into_a_fresh_outage_not_the_old_grace() {
        let t0 = Instant::now();
        let waiting = Phase::AwaitingInput { until: t0 + GRACE };
        // The input came back, the worker ran (long past the old deadline), then failed.
        let later = t0 + 10 * GRACE;
        let from = after_input_seen(waiting, true);
        assert_eq!(
            after_run(from, RunEnd::Failed, live(), later),
            Phase::Backoff
        );
        // A run that never got media keeps the deadline it was given.
        let from = after_input_seen(waiting, false);
        assert_eq!(after_run(from, RunEnd::Failed, live(), later), waiting);
        assert_eq!(after_input_seen(Phase::Backoff, true), Phase::Backoff);
    }

    #[test]
    fn a_stopped_live_input_is_awaited_for_the_grace_period() {
        let now = Instant::now();
        assert_eq!(
            after_run(Phase::Running, RunEnd::InputStopped, live(), now),
            Phase::AwaitingInput { until: now + GRACE }
        );
    }

    #[test]
    fn no_grace_or_a_file_input_ends_with_the_input() {
        let now = Instant::now();
        let none = Policy {
            live: true,
            grace: Duration::ZERO,
        };
        let file = Policy {
            live: false,
            grace: GRACE,
        };
        for p in [none, file] {
            assert_eq!(
                after_run(Phase::Running, RunEnd::InputStopped, p, now),
                Phase::Ended(EndReason::InputEnded)
            );
            assert_eq!(input_vanished(p, now), Phase::Ended(EndReason::InputGone));
        }
    }

    #[test]
    fn attempts_while_awaiting_keep_the_deadline() {
        let t0 = Instant::now();
        let waiting = Phase::AwaitingInput { until: t0 + GRACE };
        let later = t0 + Duration::from_secs(20);
        assert_eq!(after_run(waiting, RunEnd::Failed, live(), later), waiting);
        // A run that got media and stopped again starts a fresh grace period.
        assert_eq!(
            after_run(waiting, RunEnd::InputStopped, live(), later),
            Phase::AwaitingInput {
                until: later + GRACE
            }
        );
    }

    #[test]
    fn errors_while_running_back_off_and_cancel_always_ends() {
        let now = Instant::now();
        assert_eq!(
            after_run(Phase::Running, RunEnd::Failed, live(), now),
            Phase::Backoff
        );
        let waiting = Phase::AwaitingInput { until: now };
        for from in [Phase::Running, waiting, Phase::Backoff] {
            assert_eq!(
                after_run(from, RunEnd::Cancelled, live(), now),
                Phase::Ended(EndReason::Stopped)
            );
        }
    }

    #[test]
    fn a_vanished_live_input_is_awaited() {
        let now = Instant::now();
        assert_eq!(
            input_vanished(live(), now),
            Phase::AwaitingInput { until: now + GRACE }
        );
    }

    #[test]
    fn only_file_uris_are_not_live() {
        assert!(is_live("rtsp://h:8554/live/a/in"));
        assert!(is_live("rtmp://h/live/a"));
        assert!(is_live("srt://h:9000"));
        assert!(!is_live("file:///media/in.mp4"));
        assert!(!is_live(" FILE:///media/in.mp4"));
    }
}
