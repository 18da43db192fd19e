//! The glass-to-glass delay: when a piece of content reached a viewer of the output minus
//! when the publisher sent it, judged against the delay the media-service promises
//! (`OUTPUT_DELAY_MS`).
//!
//! The viewer's side comes from a [`RecordedSegment`]: every packet's arrival time. Packets
//! the media server replays from its cache, and those ffmpeg holds while it probes the
//! stream, arrive late; live ones arrive on time, so the smallest `arrival - timestamp`
//! over the connection (its *live line*) is when timestamp 0 of the recording played live.
//! The publisher's side: it sends the file in real time from when it started (`-re`), so
//! file time `t` went out at `published_at + t` (plus its start-up, a few tens of ms,
//! which the tolerance below covers).

use std::path::Path;

use crate::analyzer::{decode_audio_mono, AnalyzeError, StreamReport};
use crate::media::RecordedSegment;
use crate::placement;

/// How much earlier than promised the output may reach the viewer (ms): the publisher's
/// start-up counts towards the measure, so a measure below the promise by more than
/// this means the output really runs ahead of its promise.
pub const EARLY_TOLERANCE_MS: f64 = 150.0;
/// How much later than promised (ms): the path through the media server twice (RTSP in,
/// RTMP out), the receiving jitter buffer and the encoders; measured +0.1..+0.4 s.
pub const LATE_TOLERANCE_MS: f64 = 750.0;

/// The connection's live line (s): arrival time minus timestamp, smallest over its media
/// packets. `None` without media packets.
pub fn live_line_s(seg: &RecordedSegment) -> Option<f64> {
    seg.media_tags()
        .map(|(at, t)| at - f64::from(t.ts_ms) / 1000.0)
        .min_by(f64::total_cmp)
}

/// Glass-to-glass delay (s) of content that is at `input_s` in the published file and at
/// `output_s` in the recording of `seg` (its timestamps), the publisher having started at
/// `published_at_s` (on the segment's clock).
pub fn glass_to_glass_s(
    seg: &RecordedSegment,
    published_at_s: f64,
    input_s: f64,
    output_s: f64,
) -> Option<f64> {
    Some(live_line_s(seg)? + output_s - (published_at_s + input_s))
}

/// Why a delay could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum DelayError {
    /// ffprobe/ffmpeg on the published file or the recording.
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    /// The published file has less audio than the stretch looked for.
    #[error("{0}: too little audio to measure a delay")]
    ShortInput(String),
    /// The stretch of published audio is not in the recording.
    #[error("{0}: the published audio is not in the recording (best match {1:.3})")]
    NotFound(String, f64),
    /// The recording holds no media packet.
    #[error("{0}: no media packets recorded")]
    Empty(String),
}

/// Seconds of the published audio, from its 10th second, looked for in the recording.
const PROBE_FROM_S: usize = 10;
const PROBE_LEN_S: usize = 12;
/// Score from which the stretch counts as found: under a dub that speaks all along, the
/// original is ducked by 15 dB and scores 0.1-0.2 (unrelated audio: below 0.05).
pub const PROBE_SCORE: f64 = 0.08;

/// The glass-to-glass delay of the live-recorded output `seg` of `published` (a file sent
/// in real time from `published_at_s` on the segment's clock): a 12 s stretch of the
/// published audio (from its 10th second) is found in the recording, and its arrival at
/// the viewer compared with when it was sent. Voice-over keeps the original under the dub,
/// so dubbed outputs are measured too.
pub fn measure(
    seg: &RecordedSegment,
    published: &Path,
    published_at_s: f64,
) -> Result<Measured, DelayError> {
    let first_audio = |p: &Path| -> Result<f64, AnalyzeError> {
        Ok(StreamReport::probe(p, true)?
            .audio_pts()
            .first()
            .copied()
            .unwrap_or(0.0))
    };
    let input = decode_audio_mono(published)?;
    let output = decode_audio_mono(&seg.path)?;
    let rate = placement::RATE as usize;
    let (from, len) = (PROBE_FROM_S * rate, PROBE_LEN_S * rate);
    if input.len() < from + len {
        return Err(DelayError::ShortInput(published.display().to_string()));
    }
    let found = placement::locate(
        &output,
        &input[from..from + len],
        0.0,
        output.len() as f64 / rate as f64,
    )
    .ok_or_else(|| DelayError::NotFound(seg.path.display().to_string(), 0.0))?;
    if found.score < PROBE_SCORE {
        return Err(DelayError::NotFound(
            seg.path.display().to_string(),
            found.score,
        ));
    }
    let (input_start, output_start) = (first_audio(published)?, first_audio(&seg.path)?);
    let input_s = input_start + PROBE_FROM_S as f64;
    let output_s = output_start + found.at_s;
    let delay_s = glass_to_glass_s(seg, published_at_s, input_s, output_s)
        .ok_or_else(|| DelayError::Empty(seg.path.display().to_string()))?;
    Ok(Measured {
        delay_s,
        // The output's first audio sample, on the published file's timeline.
        lost_start_s: output_start - (output_s - input_s) - input_start,
    })
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Glass-to-glass delay (s).
    pub delay_s: f64,
    /// Seconds of the published audio before the first one the output carries (the
    /// stream's beginning that never reached the output).
    pub lost_start_s: f64,
}

/// A delay measured from the publisher's spawn, and how long its start-up may have taken
/// (until the media server listed the input): its `-re` clock started somewhere in
/// between, so the true delay lies in `from_spawn_s - start_up_s ..= from_spawn_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bracket {
    /// Delay (s) counted from the publisher's spawn: the most it can be.
    pub from_spawn_s: f64,
    /// Spawn to the input listed (s): what the publisher's start-up may have taken.
    pub start_up_s: f64,
}

impl Bracket {
    /// The least the delay can be (s).
    pub fn least_s(&self) -> f64 {
        self.from_spawn_s - self.start_up_s
    }
}

impl std::fmt::Display for Bracket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} s (counted from the publisher's spawn; {:.3} s after its {:.0} ms start-up)",
            self.from_spawn_s,
            self.least_s(),
            self.start_up_s * 1000.0
        )
    }
}

/// Judges a [`Bracket`]: late only when even its least delay is later than allowed, early
/// only when even its most is earlier (a publisher slow to start, on a loaded machine,
/// makes neither).
pub fn judge_bracket(b: Bracket, promised_ms: u64) -> Result<(), String> {
    let late_ms = b.least_s() * 1000.0 - promised_ms as f64;
    if late_ms > LATE_TOLERANCE_MS {
        return judge(b.least_s(), promised_ms).map_err(|e| {
            format!(
                "{e}; counted from the publisher's start-up ({:.0} ms after its spawn)",
                b.start_up_s * 1000.0
            )
        });
    }
    let early_ms = b.from_spawn_s * 1000.0 - promised_ms as f64;
    if early_ms < -EARLY_TOLERANCE_MS {
        return judge(b.from_spawn_s, promised_ms)
            .map_err(|e| format!("{e}; counted from the publisher's spawn"));
    }
    Ok(())
}

/// Checks a measured delay against the promised one; the error says by how much it missed.
pub fn judge(measured_s: f64, promised_ms: u64) -> Result<(), String> {
    let off_ms = measured_s * 1000.0 - promised_ms as f64;
    if (-EARLY_TOLERANCE_MS..=LATE_TOLERANCE_MS).contains(&off_ms) {
        Ok(())
    } else {
        Err(format!(
            "the output reaches viewers {measured_s:.3} s after the input, {off_ms:+.0} ms from the promised OUTPUT_DELAY_MS={promised_ms} (allowed -{EARLY_TOLERANCE_MS}..+{LATE_TOLERANCE_MS} ms)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::Tag;
    use std::path::PathBuf;

    /// A recording whose timestamp 0 played live at `live` s: 20 ms audio packets for
    /// 5 s, the first 2 s arriving in one burst at `live + 2.5` (cache and probing), the
    /// rest on time plus up to 30 ms of jitter.
    fn segment(live: f64) -> RecordedSegment {
        let tags = (0..250u32)
            .map(|i| {
                let ts_ms = i * 20;
                let t = f64::from(ts_ms) / 1000.0;
                let at = if t < 2.0 {
                    live + 2.5
                } else {
                    live + t + f64::from(i % 4) * 0.01
                };
                (
                    at,
                    Tag {
                        audio: true,
                        ts_ms,
                        config: false,
                    },
                )
            })
            .collect();
        RecordedSegment {
            path: PathBuf::from("x.flv"),
            connected_s: live - 1.0,
            tags,
        }
    }

    #[test]
    fn the_live_line_ignores_late_packets() {
        let seg = segment(9.2);
        assert!((live_line_s(&seg).unwrap() - 9.2).abs() < 1e-9);
        // Published at 0.1 s; file time 3.0 is at 2.9 in the recording: 9.2 + 2.9 - 3.1.
        let d = glass_to_glass_s(&seg, 0.1, 3.0, 2.9).unwrap();
        assert!((d - 9.0).abs() < 1e-9, "{d}");
        assert!(judge(d, 9000).is_ok());
        let empty = RecordedSegment {
            path: PathBuf::new(),
            connected_s: 0.0,
            tags: Vec::new(),
        };
        assert!(live_line_s(&empty).is_none());
    }

    #[test]
    fn a_late_or_early_output_is_rejected() {
        // Two seconds later than promised: a viewer waits longer than the service says.
        let late = glass_to_glass_s(&segment(11.2), 0.1, 3.0, 2.9).unwrap();
        let e = judge(late, 9000).unwrap_err();
        assert!(e.contains("+2000 ms"), "{e}");
        // Half a second early: no time left for the STS the promise budgets.
        let early = glass_to_glass_s(&segment(8.7), 0.1, 3.0, 2.9).unwrap();
        assert!(judge(early, 9000).unwrap_err().contains("-500 ms"));
        // The edges of the tolerance.
        assert!(judge(8.86, 9000).is_ok() && judge(9.74, 9000).is_ok());
        assert!(judge(8.84, 9000).is_err() && judge(9.76, 9000).is_err());
    }

    #[test]
    fn a_bracket_is_late_or_early_only_when_all_of_it_is() {
        let b = |from_spawn_s, start_up_s| Bracket {
            from_spawn_s,
            start_up_s,
        };
        // Seen in CI on a loaded machine: +895 ms from the spawn; a publisher that took
        // 0.6 s to start leaves +295 ms.
        assert!(judge_bracket(b(8.895, 0.6), 8000).is_ok());
        // Late however long the start-up: +800 ms after it.
        let e = judge_bracket(b(9.4, 0.6), 8000).unwrap_err();
        assert!(
            e.contains("+800 ms") && e.contains("600 ms after its spawn"),
            "{e}"
        );
        // Early even counted from the spawn.
        let e = judge_bracket(b(7.8, 0.05), 8000).unwrap_err();
        assert!(e.contains("-200 ms"), "{e}");
        // Without a start-up the bracket is the plain judgement.
        assert!(judge_bracket(b(8.76, 0.0), 8000).is_err());
        assert!(judge_bracket(b(8.74, 0.0), 8000).is_ok());
    }
}
