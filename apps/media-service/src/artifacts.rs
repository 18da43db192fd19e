//! Per-stream fragment artifacts (SEGMENT_ARTIFACTS) under `SEGMENT_DIR/<stream>/`:
//! `NNNNNN-original.wav` (what was sent to the STS), `NNNNNN-dubbed.wav` (what came back) and
//! `fragments.jsonl` (one line per fragment placed).
//!
//! Names never collide: a stream's numbering continues from what its directory already
//! holds, whether that came from an earlier run of its worker, an earlier appearance of the
//! stream or an earlier process, and only the newest SEGMENT_ARTIFACTS_KEEP pairs are kept.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use tracing::warn;

/// The per-stream fragment log.
pub const LOG_FILE: &str = "fragments.jsonl";

/// How much of the end of the fragment log is read for its last sequence number.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

/// Deletes the artifacts of the fragment `keep` places before `seq` (numbers continue across
/// a stream's runs, so one deletion per new fragment keeps at most `keep` of each kind).
pub fn prune(dir: &Path, seq: u64, keep: u32) {
    let Some(old) = seq.checked_sub(keep as u64) else {
        return;
    };
    for kind in ["original", "dubbed"] {
        let p = dir.join(format!("{old:06}-{kind}.wav"));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %p.display(), error = %e, "cannot delete an old artifact"),
        }
    }
}

/// The first fragment number not used yet in the stream directory `dir`: one past the
/// highest of its WAV artifacts and of its fragment log's last lines (0 for a new,
/// empty or unreadable directory). Blocking (reads the directory).
pub fn next_sequence(dir: &Path) -> u64 {
    let from_wavs = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let (num, rest) = name.to_str()?.split_once('-')?;
            rest.ends_with(".wav").then(|| num.parse::<u64>().ok())?
        })
        .max();
    let from_log = last_logged_sequence(&dir.join(LOG_FILE));
    from_wavs
        .into_iter()
        .chain(from_log)
        .max()
        .map_or(0, |m| m.saturating_add(1))
}

/// The highest `sequence` among the last lines of a fragment log.
fn last_logged_sequence(path: &Path) -> Option<u64> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
        .ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["sequence"].as_u64())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        left
    }

    #[test]
    fn only_the_newest_artifacts_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keep = 3;
        for seq in 0..10u64 {
            prune(dir.path(), seq, keep);
            for kind in ["original", "dubbed"] {
                std::fs::write(dir.path().join(format!("{seq:06}-{kind}.wav")), b"x").unwrap();
            }
        }
        assert_eq!(
            names(dir.path()),
            [
                "000007-dubbed.wav",
                "000007-original.wav",
                "000008-dubbed.wav",
                "000008-original.wav",
                "000009-dubbed.wav",
                "000009-original.wav"
            ]
        );
    }

    #[test]
    fn numbering_continues_after_what_the_directory_holds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(next_sequence(&d.join("missing")), 0);
        assert_eq!(next_sequence(d), 0, "empty");
        std::fs::write(d.join("000004-original.wav"), b"x").unwrap();
        std::fs::write(d.join("notes.txt"), b"x").unwrap();
        assert_eq!(next_sequence(d), 5, "from the WAVs");
        // The log goes further than the WAVs (fragments without artifacts, pruned WAVs),
        // and a torn last line is skipped.
        let mut log = String::new();
        for seq in 0..12 {
            log.push_str(&format!("{{\"stream\":\"s\",\"sequence\":{seq}}}\n"));
        }
        log.push_str("{\"stream\":\"s\",\"seq");
        std::fs::write(d.join(LOG_FILE), log).unwrap();
        assert_eq!(next_sequence(d), 12, "from the log");
    }

    #[test]
    fn a_long_log_is_read_from_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = String::new();
        for seq in 0..5000u64 {
            log.push_str(&format!(
                "{{\"stream\":\"s\",\"sequence\":{seq},\"transcript\":\"{}\"}}\n",
                "x".repeat(40)
            ));
        }
        assert!(log.len() as u64 > LOG_TAIL_BYTES);
        std::fs::write(dir.path().join(LOG_FILE), log).unwrap();
        assert_eq!(next_sequence(dir.path()), 5000);
    }
}
