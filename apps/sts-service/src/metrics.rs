//! Prometheus metrics (all prefixed `sts_`).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Buckets of `sts_stream_busy_slots`: one per slot count up to 8, then coarser up to
/// MAX_INFLIGHT's largest value (64).
const BUSY_SLOT_BUCKETS: [f64; 12] = [
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 12.0, 16.0, 32.0, 64.0,
];

/// All metrics of the service, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `sts_stage_duration_seconds{stage=asr|translation|tts|fit}`.
    pub stage: HistogramVec,
    /// `sts_fragment_duration_seconds{status}`: acceptance to answer.
    pub fragment: HistogramVec,
    /// `sts_fragments_total{status=success|partial|failed|timeout|no_speech}`.
    pub fragments: IntCounterVec,
    /// `sts_fragments_rejected_total{code}`.
    pub rejected: IntCounterVec,
    /// `sts_errors_total{code}`: `error` events sent.
    pub errors: IntCounterVec,
    /// `sts_backpressure_events_total{action}`.
    pub backpressure: IntCounterVec,
    /// `sts_active_sessions`: open streams.
    pub sessions: IntGauge,
    /// `sts_connected_clients`.
    pub clients: IntGauge,
    /// `sts_inflight_fragments`: accepted and not yet answered (all streams).
    pub inflight: IntGauge,
    /// `sts_ready`: 1 once models are loaded.
    pub ready: IntGauge,
    /// `sts_admission_refused_total{limit=MAX_SESSIONS|MAX_STREAMS_PER_SESSION|MAX_QUEUED_BYTES_PER_SESSION}`.
    pub admission_refused: IntCounterVec,
    /// `sts_queued_bytes`: decoded PCM of accepted, unanswered fragments (all connections).
    pub queued_bytes: IntGauge,
    /// `sts_fragments_shed_total{stage=asr|tts}`: fragments answered `timeout` without
    /// running `stage` (and what follows it) because their `answer_within_ms` had passed.
    pub shed: IntCounterVec,
    /// `sts_stream_busy_slots`: how many of its stream's MAX_INFLIGHT processing slots were
    /// in use (this fragment's included) each time a fragment started processing.
    pub busy_slots: Histogram,
}

impl Metrics {
    /// Counts one request refused by an admission limit.
    pub fn count_refusal(&self, limit: crate::admission::Limit) {
        self.admission_refused
            .with_label_values(&[limit.as_str()])
            .inc();
    }

    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0,
        ];
        let stage = HistogramVec::new(
            HistogramOpts::new("sts_stage_duration_seconds", "Time per processing stage")
                .buckets(buckets.clone()),
            &["stage"],
        )
        .expect("valid metric");
        let fragment = HistogramVec::new(
            HistogramOpts::new(
                "sts_fragment_duration_seconds",
                "Time from fragment acceptance to its fragment:processed answer",
            )
            .buckets(buckets),
            &["status"],
        )
        .expect("valid metric");
        let fragments = IntCounterVec::new(
            Opts::new("sts_fragments_total", "Fragments answered, by status"),
            &["status"],
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new(
                "sts_fragments_rejected_total",
                "Fragments rejected at acceptance, by code",
            ),
            &["code"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("sts_errors_total", "error events sent to clients, by code"),
            &["code"],
        )
        .expect("valid metric");
        let backpressure = IntCounterVec::new(
            Opts::new(
                "sts_backpressure_events_total",
                "backpressure events sent, by action",
            ),
            &["action"],
        )
        .expect("valid metric");
        let sessions = IntGauge::new("sts_active_sessions", "Open streams").expect("valid metric");
        let clients = IntGauge::new("sts_connected_clients", "Connected Socket.IO clients")
            .expect("valid metric");
        let inflight = IntGauge::new(
            "sts_inflight_fragments",
            "Fragments accepted and not yet answered (queued or processing)",
        )
        .expect("valid metric");
        let ready = IntGauge::new("sts_ready", "1 when models are loaded").expect("valid metric");
        let admission_refused = IntCounterVec::new(
            Opts::new(
                "sts_admission_refused_total",
                "Connections, streams and fragments refused by an admission limit, by limit",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let queued_bytes = IntGauge::new(
            "sts_queued_bytes",
            "Decoded PCM bytes of accepted fragments not yet answered (all connections)",
        )
        .expect("valid metric");
        let shed = IntCounterVec::new(
            Opts::new(
                "sts_fragments_shed_total",
                "Fragments past their answer_within_ms deadline answered timeout without running the stage named, by stage",
            ),
            &["stage"],
        )
        .expect("valid metric");
        let busy_slots = Histogram::with_opts(
            HistogramOpts::new(
                "sts_stream_busy_slots",
                "Processing slots of its stream in use (its own included) when a fragment starts processing: never above MAX_INFLIGHT",
            )
            .buckets(BUSY_SLOT_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        for c in [
            Box::new(shed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(busy_slots.clone()),
            Box::new(stage.clone()),
            Box::new(fragment.clone()),
            Box::new(fragments.clone()),
            Box::new(rejected.clone()),
            Box::new(errors.clone()),
            Box::new(backpressure.clone()),
            Box::new(sessions.clone()),
            Box::new(clients.clone()),
            Box::new(inflight.clone()),
            Box::new(ready.clone()),
            Box::new(admission_refused.clone()),
            Box::new(queued_bytes.clone()),
        ] {
            registry.register(c).expect("unique metric");
        }
        // Pre-create label sets so dashboards see zeros before traffic.
        for s in ["asr", "translation", "tts", "fit"] {
            stage.with_label_values(&[s]);
        }
        for s in ["success", "partial", "failed", "timeout", "no_speech"] {
            fragments.with_label_values(&[s]);
        }
        for s in ["asr", "tts"] {
            shed.with_label_values(&[s]);
        }
        for l in crate::admission::Limit::ALL {
            admission_refused.with_label_values(&[l.as_str()]);
        }
        Self {
            registry,
            stage,
            fragment,
            fragments,
            rejected,
            errors,
            backpressure,
            sessions,
            clients,
            inflight,
            ready,
            admission_refused,
            queued_bytes,
            shed,
            busy_slots,
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
