//! Discovery's view of the media server's inputs: which `live/<name>/in` paths are listed
//! now, and which of them already got a worker in their current appearance.
//!
//! A name is started once per appearance. An appearance begins when a poll lists a name it
//! did not list before (or that was let go, below) and ends when a poll no longer lists it,
//! or when its stream ended for good (its input gone past the grace period: a republication
//! that no poll saw as a gap, e.g. while the media server restarted, is a new appearance).
//! A start refused for capacity does not use up the appearance: the name is tried again on
//! every poll, with one warning per appearance.

use std::collections::HashSet;

/// The appearances discovery has seen; no I/O, so every rule is unit-tested.
#[derive(Debug, Default)]
pub struct Appearances {
    /// Listed, and handled in this appearance (started, or left to its own worker).
    handled: HashSet<String>,
    /// Listed, and refused for capacity in this appearance (already warned).
    capped: HashSet<String>,
}

impl Appearances {
    /// Takes one poll's list; returns the names that appeared (to be started), sorted.
    /// They count as handled from now on.
    pub fn poll(&mut self, listed: &HashSet<String>) -> Vec<String> {
        self.handled.retain(|n| listed.contains(n));
        self.capped.retain(|n| listed.contains(n));
        let mut fresh: Vec<String> = listed
            .iter()
            .filter(|n| self.handled.insert((*n).clone()))
            .cloned()
            .collect();
        fresh.sort();
        fresh
    }

    /// `name` was started. Returns whether it had been waiting for a free slot.
    pub fn started(&mut self, name: &str) -> bool {
        self.capped.remove(name)
    }

    /// Starting `name` was refused for capacity: it is tried again on the next poll.
    /// Returns whether this is the first refusal of its appearance (warn once).
    pub fn at_capacity(&mut self, name: &str) -> bool {
        self.handled.remove(name);
        self.capped.insert(name.to_string())
    }

    /// `name`'s stream ended for good: its next listing is a new appearance, even if no
    /// poll saw it vanish.
    pub fn ended(&mut self, name: &str) {
        self.handled.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_name_is_started_once_per_appearance() {
        let mut a = Appearances::default();
        assert_eq!(a.poll(&set(&["x", "y"])), list(&["x", "y"]));
        assert_eq!(
            a.poll(&set(&["x", "y"])),
            list(&[]),
            "still listed: not again"
        );
        assert_eq!(a.poll(&set(&["y"])), list(&[]));
        assert_eq!(a.poll(&set(&["x", "y"])), list(&["x"]), "x came back");
    }

    #[test]
    fn a_stream_that_ended_is_started_again_without_a_gap_in_the_list() {
        let mut a = Appearances::default();
        assert_eq!(a.poll(&set(&["x"])), list(&["x"]));
        a.ended("x");
        assert_eq!(a.poll(&set(&["x"])), list(&["x"]));
        assert_eq!(a.poll(&set(&["x"])), list(&[]));
    }

    #[test]
    fn a_capped_name_is_retried_every_poll_and_warned_once() {
        let mut a = Appearances::default();
        assert_eq!(a.poll(&set(&["x"])), list(&["x"]));
        assert!(a.at_capacity("x"), "first refusal: warn");
        assert_eq!(a.poll(&set(&["x"])), list(&["x"]), "tried again");
        assert!(!a.at_capacity("x"), "second refusal: no new warning");
        assert_eq!(a.poll(&set(&["x"])), list(&["x"]));
        assert!(a.started("x"), "started after waiting for a slot");
        assert_eq!(a.poll(&set(&["x"])), list(&[]));
        // A new appearance warns again.
        assert_eq!(a.poll(&set(&[])), list(&[]));
        assert_eq!(a.poll(&set(&["x"])), list(&["x"]));
        assert!(a.at_capacity("x"));
    }
}
