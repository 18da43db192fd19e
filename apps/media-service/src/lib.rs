//! livedub media-service: pulls a live stream, cuts its audio into fragments, has them
//! dubbed by the sts-service, and republishes the untouched video with the dubbed audio a
//! fixed delay later (ARCHITECTURE §5). See `docs/media-service.md`.

pub mod access;
pub mod api;
pub mod appearances;
pub mod artifacts;
pub mod config;
pub mod dub;
pub mod fragmenter;
pub mod ledger;
pub mod lifecycle;
pub mod manager;
pub mod memory;
pub mod metrics;
pub mod mix;
pub mod pcm;
pub mod pipeline;
pub mod policy;
pub mod redact;
pub mod spoken;
pub mod stagger;
pub mod sts;
pub mod worker;
