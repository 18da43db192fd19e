//! Fragment boundaries spread over the fragment length across the live streams of one
//! media-service (FRAGMENT_STAGGER, on by default).
//!
//! Each stream cuts its fragments on a grid that starts at its first audio sample. Streams
//! that start together (a schedule, a restart of the media server, a batch of encoders)
//! therefore end their fragments together, and all of them reach the STS at the same
//! moment: the STS works through them one batch after another and the last in line misses
//! its deadline (docs/capacity.md: six aligned streams at the edge of the 2.5 s budget,
//! six staggered ones well inside it). Here a new stream's first fragment is made shorter
//! when its boundaries would fall on (or near) those of a running stream, so that they
//! fall between them; every later fragment has the full length. A viewer sees no
//! difference: every fragment is placed at its own timestamps either way.
//!
//! The [`Planner`] keeps, per running worker, the wall-clock phase (modulo the fragment
//! length) at which its fragments end. A worker takes a [`Seat`] when it starts and places
//! its grid with it when its first sample arrives; dropping the seat (the worker ended, on
//! any path) frees the phase.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The phases a first fragment can be shortened by: multiples of 1/STEPS of a fragment.
pub const STEPS: u64 = 8;

/// Boundary phases of the running workers of one media-service.
#[derive(Debug)]
pub struct Planner {
    fragment_ns: u64,
    epoch: Instant,
    next_id: AtomicU64,
    /// Seat id -> the wall-clock phase (ns, < fragment_ns) at which that worker's fragments
    /// end, once it has placed its grid.
    seats: Mutex<HashMap<u64, Option<u64>>>,
}

/// One worker's place in the [`Planner`]; dropping it frees the place.
#[derive(Debug)]
pub struct Seat {
    planner: Arc<Planner>,
    id: u64,
}

impl Planner {
    /// A planner for fragments of `fragment_ms`.
    pub fn new(fragment_ms: u32) -> Arc<Self> {
        Arc::new(Self {
            fragment_ns: (fragment_ms as u64).max(1) * 1_000_000,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            seats: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Option<u64>>> {
        self.seats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A seat for a worker that is starting.
    pub fn seat(self: &Arc<Self>) -> Seat {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, None);
        Seat {
            planner: self.clone(),
            id,
        }
    }

    /// Workers holding a seat (placed or not).
    pub fn seats(&self) -> usize {
        self.lock().len()
    }
}

impl Seat {
    /// The first sample of this worker's stream arrives at `first_sample`: how much shorter
    /// its first fragment is made (ms, 0 when its natural boundaries are clear of every
    /// other stream's). Its boundary phase is held from now until the seat is dropped.
    pub fn place(&self, first_sample: Instant) -> u32 {
        let p = &self.planner;
        let f = p.fragment_ns;
        let mut seats = p.lock();
        let others: Vec<u64> = seats
            .iter()
            .filter(|(id, _)| **id != self.id)
            .filter_map(|(_, phase)| *phase)
            .collect();
        let natural = (first_sample.saturating_duration_since(p.epoch).as_nanos() as u64) % f;
        let shorten = shortening(natural, &others, f);
        if let Some(slot) = seats.get_mut(&self.id) {
            *slot = Some((natural + f - shorten) % f);
        }
        (shorten / 1_000_000) as u32
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.planner.lock().remove(&self.id);
    }
}

/// Distance of two phases on the circle of length `f`.
fn distance(a: u64, b: u64, f: u64) -> u64 {
    let d = a.abs_diff(b) % f;
    d.min(f - d)
}

/// How much (ns, a multiple of f / [`STEPS`]) to shorten the first fragment of a stream whose
/// boundaries would fall at phase `natural`, given the boundary phases of the others: none
/// when the natural ones are at least half a step from all of them, else the shortening that
/// puts them farthest from the nearest other (the smallest such, on a tie).
pub fn shortening(natural: u64, others: &[u64], f: u64) -> u64 {
    let step = (f / STEPS).max(1);
    let clearance = |s: u64| {
        let phase = (natural + f - s % f) % f;
        others
            .iter()
            .map(|&o| distance(phase, o, f))
            .min()
            .unwrap_or(f)
    };
    if clearance(0) >= step / 2 {
        return 0;
    }
    (0..STEPS)
        .map(|k| k * step)
        .max_by_key(|&s| (clearance(s), std::cmp::Reverse(s)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const F: u64 = 6_000 * MS;

    #[test]
    fn a_stream_alone_or_clear_of_the_others_keeps_its_grid() {
        assert_eq!(shortening(1_234 * MS, &[], F), 0);
        // 400 ms from the nearest other: more than half a step (375 ms).
        assert_eq!(shortening(1_000 * MS, &[600 * MS, 4_000 * MS], F), 0);
        // Across the wrap: 5900 and 300 are 400 ms apart.
        assert_eq!(shortening(300 * MS, &[5_900 * MS], F), 0);
    }

    #[test]
    fn a_stream_on_another_ones_boundaries_moves_half_a_fragment_away() {
        assert_eq!(shortening(1_000 * MS, &[1_100 * MS], F), 3_000 * MS);
    }

    #[test]
    fn streams_started_together_spread_over_the_fragment() {
        // Eight streams whose natural boundaries fall within 80 ms of each other.
        let mut placed: Vec<u64> = Vec::new();
        for i in 0..8u64 {
            let natural = 2_000 * MS + i * 10 * MS;
            let s = shortening(natural, &placed, F);
            assert_eq!(s % (F / STEPS), 0, "a whole number of steps");
            placed.push((natural + F - s) % F);
        }
        let mut gaps = Vec::new();
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[i + 1..] {
                gaps.push(distance(*a, *b, F));
            }
        }
        let closest = gaps.iter().min().unwrap();
        // 8 streams on 8 steps of 750 ms: at least a step apart, less the 70 ms spread.
        assert!(
            *closest >= 680 * MS,
            "closest boundaries {closest} ns apart: {placed:?}"
        );
    }

    #[test]
    fn seats_hold_their_phase_until_dropped() {
        let planner = Planner::new(6_000);
        let now = Instant::now();
        let a = planner.seat();
        assert_eq!(a.place(now), 0);
        let b = planner.seat();
        assert_eq!(b.place(now), 3_000, "b falls on a's boundaries");
        assert_eq!(planner.seats(), 2);
        drop(a);
        drop(b);
        assert_eq!(planner.seats(), 0);
        // With a gone, a new stream at the same moment keeps its grid.
        let c = planner.seat();
        assert_eq!(c.place(now), 0);
    }

    #[test]
    fn an_unplaced_seat_does_not_count() {
        let planner = Planner::new(6_000);
        let _waiting = planner.seat();
        let d = planner.seat();
        assert_eq!(d.place(Instant::now()), 0);
    }
}
