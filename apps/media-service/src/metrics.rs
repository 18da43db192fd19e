//! Prometheus metrics of the media-service (names fixed by ARCHITECTURE §5).

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metrics, registered in one registry.
pub struct Metrics {
    registry: Registry,
    /// `worker_audio_fragments_total{stream,status}`; status: processed | fallback | failed.
    pub fragments: IntCounterVec,
    /// `worker_av_sync_delta_ms{stream}`: bound on |audio - video| timeline offset at the output.
    pub av_sync_delta_ms: GaugeVec,
    /// `worker_sts_roundtrip_seconds`: fragment sent -> dubbed audio received.
    pub sts_roundtrip: Histogram,
    /// `worker_sts_inflight{stream}`: fragments sent and not answered.
    pub inflight: IntGaugeVec,
    /// `worker_active_workers`: workers with a running pipeline.
    pub active_workers: IntGauge,
    /// `worker_sts_reconnects_total{stream}`: STS (re)connections after the first.
    pub sts_reconnects: IntCounterVec,
    /// `worker_restarts_total{stream}`: pipeline restarts after errors (media server down...).
    pub restarts: IntCounterVec,
    /// `worker_late_answers_total{stream}`: STS answers that arrived after their deadline.
    pub late_answers: IntCounterVec,
    /// `worker_resync_frames_total{stream,kind}`: frames of silence inserted (gap) or dropped
    /// (overlap) to keep the audio timeline on the input's timestamps.
    pub resync_frames: IntCounterVec,
    /// `worker_output_delay_ms{stream}`: the fixed output delay of the running worker.
    pub output_delay_ms: IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let fragments = IntCounterVec::new(
            Opts::new("worker_audio_fragments_total", "Audio fragments by outcome: processed (dubbed audio used), fallback (original audio: late or STS unavailable), failed (STS failed or answered malformed; original audio used)"),
            &["stream", "status"],
        )
        .expect("valid metric");
        let av_sync_delta_ms = GaugeVec::new(
            Opts::new("worker_av_sync_delta_ms", "Audio/video offset at the output in ms: audio timeline drift from the input timestamps (video is passed through) plus the AAC encoder priming delay"),
            &["stream"],
        )
        .expect("valid metric");
        let sts_roundtrip = Histogram::with_opts(
            HistogramOpts::new(
                "worker_sts_roundtrip_seconds",
                "Time from sending a fragment to the STS to receiving its answer",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 30.0,
            ]),
        )
        .expect("valid metric");
        let inflight = IntGaugeVec::new(
            Opts::new(
                "worker_sts_inflight",
                "Fragments sent to the STS and not yet answered",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let active_workers =
            IntGauge::new("worker_active_workers", "Workers with a running pipeline")
                .expect("valid metric");
        let sts_reconnects = IntCounterVec::new(
            Opts::new(
                "worker_sts_reconnects_total",
                "STS reconnections after the first connection",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let restarts = IntCounterVec::new(
            Opts::new("worker_restarts_total", "Pipeline restarts after errors"),
            &["stream"],
        )
        .expect("valid metric");
        let late_answers = IntCounterVec::new(
            Opts::new(
                "worker_late_answers_total",
                "STS answers dropped because they arrived after the fragment's deadline",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let resync_frames = IntCounterVec::new(
            Opts::new(
                "worker_resync_frames_total",
                "Audio frames inserted (gap) or dropped (overlap) to follow input timestamps",
            ),
            &["stream", "kind"],
        )
        .expect("valid metric");
        let output_delay_ms = IntGaugeVec::new(
            Opts::new("worker_output_delay_ms", "Fixed output delay of the worker"),
            &["stream"],
        )
        .expect("valid metric");
        for c in [
            Box::new(fragments.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(av_sync_delta_ms.clone()),
            Box::new(sts_roundtrip.clone()),
            Box::new(inflight.clone()),
            Box::new(active_workers.clone()),
            Box::new(sts_reconnects.clone()),
            Box::new(restarts.clone()),
            Box::new(late_answers.clone()),
            Box::new(resync_frames.clone()),
            Box::new(output_delay_ms.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            fragments,
            av_sync_delta_ms,
            sts_roundtrip,
            inflight,
            active_workers,
            sts_reconnects,
            restarts,
            late_answers,
            resync_frames,
            output_delay_ms,
        }
    }

    /// Removes every series labelled with `stream` (the stream left the registry): a
    /// service that runs streams for weeks does not keep one set of series per stream it
    /// ever ran.
    pub fn forget_stream(&self, stream: &str) {
        for outcome in crate::worker::Outcome::ALL {
            let _ = self
                .fragments
                .remove_label_values(&[stream, outcome.as_str()]);
        }
        for kind in RESYNC_KINDS {
            let _ = self.resync_frames.remove_label_values(&[stream, kind]);
        }
        let _ = self.av_sync_delta_ms.remove_label_values(&[stream]);
        let _ = self.inflight.remove_label_values(&[stream]);
        let _ = self.sts_reconnects.remove_label_values(&[stream]);
        let _ = self.restarts.remove_label_values(&[stream]);
        let _ = self.late_answers.remove_label_values(&[stream]);
        let _ = self.output_delay_ms.remove_label_values(&[stream]);
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The `kind` label values of `worker_resync_frames_total`.
pub const RESYNC_KINDS: [&str; 2] = ["gap", "overlap"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
