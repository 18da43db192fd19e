//! Stream analysis with ffprobe (codecs, durations, per-packet PTS of both streams) and
//! audio extraction with ffmpeg, for fixtures and recorded outputs alike.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::fingerprint;

/// Errors from probing or decoding a media file.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// ffprobe/ffmpeg could not be run.
    #[error("running {tool} on {file}: {source}")]
    Run {
        /// ffprobe or ffmpeg.
        tool: &'static str,
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The tool ran and failed.
    #[error("{tool} failed on {file}: {stderr}")]
    Failed {
        /// ffprobe or ffmpeg.
        tool: &'static str,
        /// The file.
        file: String,
        /// Its error output.
        stderr: String,
    },
    /// Its output was not what ffprobe writes.
    #[error("unexpected ffprobe output for {file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// What was wrong.
        message: String,
    },
}

/// The video stream's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Codec name as ffprobe writes it (`h264`).
    pub codec: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Average frame rate.
    pub fps: f64,
}

/// The audio stream's properties.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Codec name as ffprobe writes it (`aac`).
    pub codec: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u32,
}

/// One packet: which stream, its presentation time and duration in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Packet {
    /// True for the audio stream, false for video.
    pub audio: bool,
    /// Presentation timestamp in seconds.
    pub pts: f64,
    /// Duration in seconds (0 when unknown).
    pub duration: f64,
}

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReport {
    /// Container duration in seconds.
    pub duration: f64,
    /// The first video stream, if any.
    pub video: Option<VideoInfo>,
    /// The first audio stream, if any.
    pub audio: Option<AudioInfo>,
    /// Packets of those two streams in file (arrival) order.
    pub packets: Vec<Packet>,
}

/// A/V timing measured from the packets of a file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncReport {
    /// First audio PTS minus first video PTS, in ms. A live output whose reader joined
    /// mid-GOP starts its video at the next key frame, so this is reported, not judged.
    pub start_delta_ms: f64,
    /// End of the last audio packet minus end of the last video frame, in ms (reported).
    pub end_delta_ms: f64,
    /// Largest hole in the audio timeline (next PTS minus end of the previous packet), ms.
    pub max_audio_gap_ms: f64,
    /// Largest step between consecutive video PTS beyond one frame interval, ms.
    pub max_video_gap_ms: f64,
    /// Largest |latest audio PTS - latest video PTS| seen while reading the packets in
    /// file order, over the span where both streams are present: how far apart the two
    /// streams are at any point of the live output.
    pub max_interleave_delta_ms: f64,
    /// Audio end time minus the sum of audio packet durations, ms: drift of timestamps
    /// against the samples actually carried.
    pub audio_drift_ms: f64,
}

impl SyncReport {
    /// The worst of the deltas judged against the sync budget (holes, live skew, drift;
    /// not the start/end deltas, see their docs).
    pub fn worst_ms(&self) -> f64 {
        [
            self.max_audio_gap_ms,
            self.max_video_gap_ms,
            self.max_interleave_delta_ms,
            self.audio_drift_ms.abs(),
        ]
        .into_iter()
        .fold(0.0, f64::max)
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn rate(v: &Value) -> Option<f64> {
    let s = v.as_str()?;
    let (n, d) = s.split_once('/')?;
    let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
    (d != 0.0).then_some(n / d)
}

impl StreamReport {
    /// Runs ffprobe on `path` (with `-show_packets` when `packets`).
    pub fn probe(path: &Path, packets: bool) -> Result<Self, AnalyzeError> {
        let file = path.display().to_string();
        let mut cmd = Command::new("ffprobe");
        cmd.args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ]);
        if packets {
            cmd.args([
                "-show_entries",
                "packet=stream_index,pts_time,duration_time",
            ]);
            cmd.arg("-show_packets");
        }
        let out = cmd.arg(path).output().map_err(|source| AnalyzeError::Run {
            tool: "ffprobe",
            file: file.clone(),
            source,
        })?;
        if !out.status.success() {
            return Err(AnalyzeError::Failed {
                tool: "ffprobe",
                file,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Self::from_ffprobe_json(&String::from_utf8_lossy(&out.stdout))
            .map_err(|message| AnalyzeError::Parse { file, message })
    }

    /// Parses ffprobe's JSON (`-show_format -show_streams [-show_packets]`).
    pub fn from_ffprobe_json(text: &str) -> Result<Self, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let streams = json["streams"].as_array().ok_or("no \"streams\" array")?;
        let mut video = None;
        let mut audio = None;
        let mut video_index = None;
        let mut audio_index = None;
        for s in streams {
            let index = s["index"].as_u64().ok_or("stream without index")?;
            let codec = s["codec_name"].as_str().unwrap_or("unknown").to_string();
            match s["codec_type"].as_str() {
                Some("video") if video.is_none() => {
                    video_index = Some(index);
                    video = Some(VideoInfo {
                        codec,
                        width: s["width"].as_u64().unwrap_or(0) as u32,
                        height: s["height"].as_u64().unwrap_or(0) as u32,
                        fps: rate(&s["avg_frame_rate"])
                            .or_else(|| rate(&s["r_frame_rate"]))
                            .unwrap_or(0.0),
                    });
                }
                Some("audio") if audio.is_none() => {
                    audio_index = Some(index);
                    audio = Some(AudioInfo {
                        codec,
                        sample_rate: num(&s["sample_rate"]).unwrap_or(0.0) as u32,
                        channels: s["channels"].as_u64().unwrap_or(0) as u32,
                    });
                }
                _ => {}
            }
        }
        let duration = num(&json["format"]["duration"]).unwrap_or(0.0);
        let mut packets = Vec::new();
        for p in json["packets"].as_array().into_iter().flatten() {
            let index = p["stream_index"].as_u64();
            let is_audio = index.is_some() && index == audio_index;
            if !is_audio && (index.is_none() || index != video_index) {
                continue;
            }
            let Some(pts) = num(&p["pts_time"]) else {
                continue;
            };
            packets.push(Packet {
                audio: is_audio,
                pts,
                duration: num(&p["duration_time"]).unwrap_or(0.0),
            });
        }
        Ok(StreamReport {
            duration,
            video,
            audio,
            packets,
        })
    }

    /// Seconds of audio carried: AAC packets hold 1024 samples each (exact, unlike the
    /// millisecond-rounded packet durations of FLV); other codecs sum packet durations.
    pub fn audio_seconds(&self) -> f64 {
        match &self.audio {
            Some(a) if a.codec == "aac" && a.sample_rate > 0 => {
                self.packets.iter().filter(|p| p.audio).count() as f64 * 1024.0
                    / f64::from(a.sample_rate)
            }
            _ => self
                .packets
                .iter()
                .filter(|p| p.audio)
                .map(|p| p.duration)
                .sum(),
        }
    }

    /// PTS of the video packets, in file order.
    pub fn video_pts(&self) -> Vec<f64> {
        self.packets
            .iter()
            .filter(|p| !p.audio)
            .map(|p| p.pts)
            .collect()
    }

    /// PTS of the audio packets, in file order.
    pub fn audio_pts(&self) -> Vec<f64> {
        self.packets
            .iter()
            .filter(|p| p.audio)
            .map(|p| p.pts)
            .collect()
    }

    /// Measures A/V timing from the packets; `None` when a stream has no packets.
    pub fn sync(&self) -> Option<SyncReport> {
        let mut video: Vec<f64> = self.video_pts();
        let mut audio: Vec<&Packet> = self.packets.iter().filter(|p| p.audio).collect();
        if video.len() < 2 || audio.is_empty() {
            return None;
        }
        video.sort_by(f64::total_cmp);
        audio.sort_by(|a, b| a.pts.total_cmp(&b.pts));
        let steps: Vec<f64> = video.windows(2).map(|w| w[1] - w[0]).collect();
        let mut sorted_steps = steps.clone();
        sorted_steps.sort_by(f64::total_cmp);
        let frame = sorted_steps[sorted_steps.len() / 2];
        let max_video_gap = steps.iter().map(|s| s - frame).fold(0.0, f64::max);
        let last_audio = audio[audio.len() - 1];
        let frame_s = match &self.audio {
            Some(a) if a.codec == "aac" && a.sample_rate > 0 => 1024.0 / f64::from(a.sample_rate),
            _ => last_audio.duration,
        };
        let mut max_audio_gap = 0.0f64;
        for w in audio.windows(2) {
            // Timestamps may be rounded to 1 ms (FLV): allow that much per packet.
            let dur = if w[0].duration > 0.0 {
                w[0].duration
            } else {
                frame_s
            };
            max_audio_gap = max_audio_gap.max(w[1].pts - (w[0].pts + dur) - 0.001);
        }
        let first_audio = audio[0].pts;
        let audio_end = last_audio.pts + frame_s;
        let video_end = video[video.len() - 1] + frame;
        let carried = self.audio_seconds();
        // Live view: walk the packets as they arrived, within the common span.
        let (span_start, span_end) = (first_audio.max(video[0]), audio_end.min(video_end));
        let (mut last_a, mut last_v) = (None::<f64>, None::<f64>);
        let mut max_interleave = 0.0f64;
        for p in self
            .packets
            .iter()
            .filter(|p| p.pts >= span_start - 0.001 && p.pts < span_end)
        {
            if p.audio {
                last_a = Some(last_a.map_or(p.pts, |a: f64| a.max(p.pts)));
            } else {
                last_v = Some(last_v.map_or(p.pts, |v: f64| v.max(p.pts)));
            }
            if let (Some(a), Some(v)) = (last_a, last_v) {
                max_interleave = max_interleave.max((a - v).abs());
            }
        }
        Some(SyncReport {
            start_delta_ms: (first_audio - video[0]) * 1000.0,
            end_delta_ms: (audio_end - video_end) * 1000.0,
            max_audio_gap_ms: max_audio_gap * 1000.0,
            max_video_gap_ms: max_video_gap * 1000.0,
            max_interleave_delta_ms: max_interleave * 1000.0,
            audio_drift_ms: (audio_end - first_audio - carried) * 1000.0,
        })
    }
}

/// Decodes the first audio stream of `path` to mono samples at the fingerprint rate.
pub fn decode_audio_mono(path: &Path) -> Result<Vec<f32>, AnalyzeError> {
    let file = path.display().to_string();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-ac", "1", "-ar"])
        .arg(fingerprint::SAMPLE_RATE.to_string())
        .args(["-f", "s16le", "-"])
        .output()
        .map_err(|source| AnalyzeError::Run {
            tool: "ffmpeg",
            file: file.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(AnalyzeError::Failed {
            tool: "ffmpeg",
            file,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(fingerprint::pcm_s16le_to_f32(&out.stdout))
}

/// RMS level in dBFS of `samples` (very negative for silence).
pub fn rms_db(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let ms = samples
        .iter()
        .map(|s| f64::from(*s) * f64::from(*s))
        .sum::<f64>()
        / samples.len() as f64;
    10.0 * (ms + 1e-15).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{
      "packets": [
        {"stream_index": 0, "pts_time": "0.000000", "duration_time": "0.033333"},
        {"stream_index": 1, "pts_time": "0.010000", "duration_time": "0.021333"},
        {"stream_index": 1, "pts_time": "0.031333", "duration_time": "0.021333"},
        {"stream_index": 0, "pts_time": "0.033333", "duration_time": "0.033333"},
        {"stream_index": 1, "pts_time": "0.052666", "duration_time": "0.021333"},
        {"stream_index": 0, "pts_time": "0.066667", "duration_time": "0.033333"},
        {"stream_index": 0, "pts_time": "0.300000", "duration_time": "0.033333"},
        {"stream_index": 2, "pts_time": "9.0"}
      ],
      "streams": [
        {"index": 0, "codec_name": "h264", "codec_type": "video", "width": 1280, "height": 720, "avg_frame_rate": "30/1"},
        {"index": 1, "codec_name": "aac", "codec_type": "audio", "sample_rate": "48000", "channels": 2},
        {"index": 2, "codec_name": "bin_data", "codec_type": "data"}
      ],
      "format": {"duration": "30.000000"}
    }"#;

    #[test]
    fn parses_streams_and_packets() {
        let r = StreamReport::from_ffprobe_json(JSON).unwrap();
        assert_eq!(r.duration, 30.0);
        let v = r.video.as_ref().unwrap();
        assert_eq!(
            (v.codec.as_str(), v.width, v.height, v.fps),
            ("h264", 1280, 720, 30.0)
        );
        let a = r.audio.as_ref().unwrap();
        assert_eq!(
            (a.codec.as_str(), a.sample_rate, a.channels),
            ("aac", 48000, 2)
        );
        assert_eq!(r.packets.len(), 7, "data stream packets are ignored");
        assert_eq!(r.video_pts(), vec![0.0, 0.033333, 0.066667, 0.3]);
        assert_eq!(r.audio_pts().len(), 3);
    }

    #[test]
    fn sync_reports_offsets_and_gaps() {
        let r = StreamReport::from_ffprobe_json(JSON).unwrap();
        let s = r.sync().unwrap();
        assert!((s.start_delta_ms - 10.0).abs() < 0.01, "{s:?}");
        // Video jumps from 0.0667 to 0.3: 233 ms step, 200 ms beyond one frame.
        assert!((s.max_video_gap_ms - 200.0).abs() < 0.1, "{s:?}");
        assert!(s.max_audio_gap_ms < 0.01, "{s:?}");
        // Audio ends at 0.074, video at 0.3333.
        assert!((s.end_delta_ms + 259.3).abs() < 0.5, "{s:?}");
        // Within the common span (until the audio ends at 0.074), the video packet at
        // 0.0333 arrived when audio was at 0.0527: 19.3 ms apart; the frame at 0.3 is
        // outside the span (reported as the end delta, judged as a video hole).
        assert!((s.max_interleave_delta_ms - 19.33).abs() < 0.1, "{s:?}");
        assert!((s.worst_ms() - 200.0).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn rejects_non_ffprobe_output() {
        assert!(StreamReport::from_ffprobe_json("nope").is_err());
        assert!(StreamReport::from_ffprobe_json("{}").is_err());
        let none = StreamReport::from_ffprobe_json(r#"{"streams": []}"#).unwrap();
        assert!(none.sync().is_none());
    }

    #[test]
    fn rms_of_silence_and_tone() {
        assert!(rms_db(&[0.0; 100]) < -100.0);
        let tone: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.1).sin() * 0.5).collect();
        let db = rms_db(&tone);
        assert!((db - (-9.03)).abs() < 0.2, "{db}");
    }
}
