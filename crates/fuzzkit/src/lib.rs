//! A small fuzzing harness that runs on the stable toolchain inside `cargo test`.
//!
//! A target is a closure that gets a seeded [`Rng`] per case and returns `Err` (or panics)
//! when an invariant breaks. [`run`] repeats it until its time budget is spent:
//! `FUZZ_SECS` (default [`DEFAULT_SECS`], so the unit suite stays quick; `make fuzz` runs
//! longer). Every case's seed derives from a run seed (`FUZZ_SEED`, default: from the clock)
//! and the case number, and a failure names both, so `FUZZ_SEED=<seed> FUZZ_CASE=<n>`
//! replays exactly the failing case.
//!
//! The mutators ([`mutate_bytes`], [`mutate_json`]) start from valid inputs and break them
//! the way hostile or buggy peers do: flipped bits, cut and spliced bytes, fields of the
//! wrong type, huge numbers, long strings, deep nesting.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// Seconds each target runs when `FUZZ_SECS` is not set.
pub const DEFAULT_SECS: f64 = 5.0;

/// xorshift64* — deterministic, fast, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        // splitmix64 once, so nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A number that often sits on a boundary (0, 1, powers of two, type limits).
    pub fn interesting_u64(&mut self) -> u64 {
        const EDGES: [u64; 12] = [
            0,
            1,
            2,
            127,
            255,
            65_535,
            65_536,
            i32::MAX as u64,
            u32::MAX as u64,
            i64::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ];
        match self.below(3) {
            0 => *self.pick(&EDGES),
            1 => 1u64 << self.below(64),
            _ => self.next_u64() >> self.below(64),
        }
    }
}

/// What a run did, for the log line and for the caller's own checks.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Cases run.
    pub cases: u64,
    /// Seed of the run.
    pub seed: u64,
    /// Wall time spent.
    pub elapsed: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The per-target time budget: `FUZZ_SECS` or [`DEFAULT_SECS`].
pub fn budget() -> Duration {
    let secs = std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(DEFAULT_SECS);
    Duration::from_secs_f64(secs)
}

/// Seed of case `case` in a run seeded with `seed`.
pub fn case_seed(seed: u64, case: u64) -> u64 {
    seed ^ case.wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// How a run is bounded and seeded.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Wall time to keep generating cases.
    pub budget: Duration,
    /// Run seed.
    pub seed: u64,
    /// Replay only this case.
    pub only: Option<u64>,
}

impl Settings {
    /// From `FUZZ_SECS`, `FUZZ_SEED` (default: the clock) and `FUZZ_CASE`.
    pub fn from_env() -> Self {
        Self {
            budget: budget(),
            seed: env_u64("FUZZ_SEED").unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
            }),
            only: env_u64("FUZZ_CASE"),
        }
    }
}

/// Runs `target` with [`Settings::from_env`]; see [`run_with`].
pub fn run<F>(name: &str, target: F) -> Report
where
    F: FnMut(&mut Rng) -> Result<(), String>,
{
    run_with(name, Settings::from_env(), target)
}

/// Runs `target` on fresh cases until the budget is spent (or only the replayed case).
/// Panics, naming the target, seed and case, on the first case that returns `Err` or
/// panics.
pub fn run_with<F>(name: &str, settings: Settings, mut target: F) -> Report
where
    F: FnMut(&mut Rng) -> Result<(), String>,
{
    let Settings { budget, seed, only } = settings;
    let start = Instant::now();
    let mut cases = 0u64;
    let mut case = only.unwrap_or(0);
    loop {
        let mut rng = Rng::new(case_seed(seed, case));
        let outcome = catch_unwind(AssertUnwindSafe(|| target(&mut rng)));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(msg)) => Some(msg),
            Err(panic) => Some(format!(
                "panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(non-string panic)")
            )),
        };
        cases += 1;
        if let Some(msg) = failure {
            panic!(
                "fuzz target {name} failed on case {case}: {msg}\n  replay: FUZZ_SEED={seed} FUZZ_CASE={case}"
            );
        }
        if only.is_some() || start.elapsed() >= budget {
            break;
        }
        case += 1;
    }
    let report = Report {
        cases,
        seed,
        elapsed: start.elapsed(),
    };
    eprintln!(
        "fuzz {name}: {} cases in {:.1} s ({:.0}/s), no failure; FUZZ_SEED={seed}",
        report.cases,
        report.elapsed.as_secs_f64(),
        report.cases as f64 / report.elapsed.as_secs_f64().max(1e-9)
    );
    report
}

/// Applies 1 to 8 byte-level mutations: bit flips, interesting bytes, deletions,
/// duplications, insertions of random or structural bytes, truncation.
pub fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>) {
    const STRUCTURAL: &[u8] = b"{}[]\":,\\0-+eE.nutfl \x00\xff";
    for _ in 0..rng.range(1, 8) {
        let len = data.len() as u64;
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len) as usize;
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len) as usize;
                data[i] = *rng.pick(STRUCTURAL);
            }
            2 if len > 0 => {
                let at = rng.below(len) as usize;
                let n = (rng.range(1, 16) as usize).min(data.len() - at);
                data.drain(at..at + n);
            }
            3 if len > 0 => {
                let at = rng.below(len) as usize;
                let n = (rng.range(1, 64) as usize).min(data.len() - at);
                let chunk = data[at..at + n].to_vec();
                let to = rng.below(len + 1) as usize;
                data.splice(to..to, chunk);
            }
            4 => {
                let to = rng.below(len + 1) as usize;
                let b = rng.next_u64() as u8;
                data.insert(to, b);
            }
            5 if len > 0 => {
                data.truncate(rng.below(len) as usize);
            }
            _ => {
                let to = rng.below(len + 1) as usize;
                data.insert(to, *rng.pick(STRUCTURAL));
            }
        }
    }
}

/// A random JSON value of bounded size (`depth` levels at most).
pub fn random_json(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => match rng.below(3) {
            0 => Value::from(rng.interesting_u64()),
            1 => Value::from((rng.interesting_u64() as i64).wrapping_neg()),
            _ => Value::from(f64::from_bits(rng.next_u64())),
        },
        3 => Value::String(random_string(rng)),
        4 => Value::String(String::new()),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(random_string(rng), random_json(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// A short string, sometimes very long, sometimes with control or non-ASCII characters.
pub fn random_string(rng: &mut Rng) -> String {
    const PARTS: &[&str] = &[
        "a",
        "Z",
        "0",
        "-",
        "_",
        ".",
        ":",
        "/",
        " ",
        "\u{0}",
        "\n",
        "é",
        "🎙",
        "\"",
        "\\",
        "=",
        "pcm_s16le",
        "en",
        "es",
        "..",
        "%00",
    ];
    let n = if rng.one_in(20) {
        rng.range(200, 5000)
    } else {
        rng.below(12)
    };
    (0..n).map(|_| *rng.pick(PARTS)).collect()
}

/// Applies 1 to 4 structural mutations to a JSON value: a node replaced by a random value,
/// a key removed or added, a number pushed to a limit, a string grown or emptied.
pub fn mutate_json(rng: &mut Rng, v: &mut Value) {
    for _ in 0..rng.range(1, 4) {
        mutate_node(rng, v, 0);
    }
}

fn mutate_node(rng: &mut Rng, v: &mut Value, depth: u32) {
    // Descend into a random child half of the time.
    if depth < 8 && rng.one_in(2) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                let k = rng.below(m.len() as u64) as usize;
                if let Some((_, child)) = m.iter_mut().nth(k) {
                    return mutate_node(rng, child, depth + 1);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                let k = rng.below(a.len() as u64) as usize;
                return mutate_node(rng, &mut a[k], depth + 1);
            }
            _ => {}
        }
    }
    match (rng.below(6), &mut *v) {
        (0, Value::Object(m)) if !m.is_empty() => {
            let k = rng.below(m.len() as u64) as usize;
            if let Some(key) = m.keys().nth(k).cloned() {
                m.remove(&key);
            }
        }
        (1, Value::Object(m)) => {
            let key = random_string(rng);
            let val = random_json(rng, 2);
            m.insert(key, val);
        }
        (2, Value::Number(_)) => *v = Value::from(rng.interesting_u64()),
        (3, Value::String(s)) => {
            if rng.one_in(2) {
                s.clear()
            } else {
                s.push_str(&random_string(rng))
            }
        }
        _ => *v = random_json(rng, 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..8)
            .map({
                let mut r = Rng::new(8);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_failing_target_is_reported_with_its_replay_seed() {
        let quick = Settings {
            budget: Duration::from_millis(200),
            seed: 3,
            only: None,
        };
        let r = catch_unwind(|| {
            run_with("always-fails-on-odd", quick, |rng| {
                if rng.next_u64() % 2 == 1 {
                    Err("odd".into())
                } else {
                    Ok(())
                }
            })
        });
        let msg = r
            .expect_err("the harness must fail the run")
            .downcast::<String>()
            .unwrap();
        assert!(
            msg.contains("FUZZ_SEED=") && msg.contains("FUZZ_CASE="),
            "{msg}"
        );
        // And a panicking target is caught and reported the same way.
        let r = catch_unwind(|| run_with("panics", quick, |_| panic!("boom")));
        let msg = r
            .expect_err("a panic must fail the run")
            .downcast::<String>()
            .unwrap();
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn mutators_change_their_input_and_stay_bounded() {
        let mut rng = Rng::new(1);
        let seed = br#"{"stream_id":"s1","n":5}"#.to_vec();
        let mut changed = 0;
        for _ in 0..200 {
            let mut d = seed.clone();
            mutate_bytes(&mut rng, &mut d);
            changed += usize::from(d != seed);
            assert!(d.len() < seed.len() + 8 * 64 + 8);
            let mut v: Value = serde_json::from_slice(&seed).unwrap();
            mutate_json(&mut rng, &mut v);
            assert!(serde_json::to_string(&v).unwrap().len() < 200_000);
        }
        assert!(
            changed > 150,
            "only {changed} of 200 byte mutations changed the input"
        );
    }
}
