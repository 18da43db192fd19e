//! livedub patch: what an RTSP reader that joins a publication needs to start with a picture.
//!
//! Upstream xrtsp hands a new reader only the frames published after it subscribed, so its
//! video starts at the publisher's next key frame: a reader that joins 0.2 s after the
//! publication began loses the first key frame and, with a 1-2 s key-frame interval, that
//! much of the picture. Here the publisher's frames go through one [`FrameFanOut`] per
//! publication, which keeps everything since the last key frame (a GOP cache) and hands a
//! joining reader that first, then every live frame, under one lock: nothing is sent twice
//! and nothing falls between the cached part and the live part.

use streamhub::define::{FrameData, FrameDataSender};

/// The most frames the cache keeps; past it (a key-frame interval far longer than any live
/// encoder's) the cache is dropped until the next key frame.
pub const MAX_CACHED_FRAMES: usize = 4096;
/// The most bytes the cache keeps, for the same reason.
pub const MAX_CACHED_BYTES: usize = 8 * 1024 * 1024;

/// The video codec of a publication, which decides what a key frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
}

impl VideoCodec {
    /// From an SDP `rtpmap` encoding name (`H264`, `H265`, any case).
    pub fn from_encoding_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "h264" => Some(Self::H264),
            "h265" | "hevc" => Some(Self::H265),
            _ => None,
        }
    }

    /// Whether an Annex B NAL unit (start code, then the NAL) starts a key frame: an IDR
    /// slice for H.264, an IRAP picture for H.265.
    pub fn is_key_frame(self, annexb_nal: &[u8]) -> bool {
        let Some(header) = nal_header(annexb_nal) else {
            return false;
        };
        match self {
            Self::H264 => header & 0x1f == 5,
            Self::H265 => (16..=21).contains(&((header >> 1) & 0x3f)),
        }
    }
}

/// The first byte after an Annex B start code (`00 00 01` or `00 00 00 01`).
fn nal_header(data: &[u8]) -> Option<u8> {
    let zeros = data.iter().take_while(|b| **b == 0).count();
    (zeros >= 2 && data.get(zeros) == Some(&1))
        .then(|| data.get(zeros + 1).copied())
        .flatten()
}

/// The frames since the last key frame, in the order they were published.
#[derive(Default)]
pub struct GopCache {
    /// `None`: the publication has no video this cache understands, so nothing is kept (an
    /// audio-only cache would only grow).
    codec: Option<VideoCodec>,
    frames: Vec<FrameData>,
    bytes: usize,
    /// The index just after the last video NAL unit pushed.
    after_last_video: usize,
    /// Where the access unit being received begins: just after the previous access unit's
    /// last NAL unit, so the parameter sets before a key frame and the audio published
    /// since the previous picture stay with it.
    access_unit_start: usize,
    access_unit_timestamp: Option<u32>,
    /// The cache outgrew its limits: keep nothing until the next key frame.
    overflowed: bool,
}

impl GopCache {
    pub fn new(codec: Option<VideoCodec>) -> Self {
        Self {
            codec,
            ..Self::default()
        }
    }

    /// The frames a reader joining now starts with.
    pub fn frames(&self) -> &[FrameData] {
        &self.frames
    }

    pub fn push(&mut self, frame: &FrameData) {
        let Some(codec) = self.codec else {
            return;
        };
        let size = match frame {
            FrameData::Video { timestamp, data } => {
                if self.access_unit_timestamp != Some(*timestamp) {
                    self.access_unit_timestamp = Some(*timestamp);
                    self.access_unit_start = self.after_last_video;
                }
                if codec.is_key_frame(data) {
                    self.start_at_key_frame();
                }
                data.len()
            }
            FrameData::Audio { data, .. } => data.len(),
            _ => return,
        };
        if self.overflowed {
            return;
        }
        self.frames.push(frame.clone());
        self.bytes += size;
        if matches!(frame, FrameData::Video { .. }) {
            self.after_last_video = self.frames.len();
        }
        if self.frames.len() > MAX_CACHED_FRAMES || self.bytes > MAX_CACHED_BYTES {
            self.clear();
            self.overflowed = true;
        }
    }

    /// Drops everything before the access unit that holds the key frame.
    fn start_at_key_frame(&mut self) {
        let dropped = self.access_unit_start.min(self.frames.len());
        self.bytes -= self.frames.drain(..dropped).map(frame_len).sum::<usize>();
        self.after_last_video -= dropped.min(self.after_last_video);
        self.access_unit_start = 0;
        if self.overflowed {
            // The key frame's own access unit began while nothing was kept.
            self.clear();
            self.overflowed = false;
        }
    }

    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.after_last_video = 0;
        self.access_unit_start = 0;
    }
}

fn frame_len(frame: FrameData) -> usize {
    match frame {
        FrameData::Video { data, .. } | FrameData::Audio { data, .. } => data.len(),
        _ => 0,
    }
}

/// A publication's frames on their way to its readers: the GOP cache and the readers' senders,
/// behind one lock (see the module's documentation).
#[derive(Default)]
pub struct FrameFanOut {
    cache: GopCache,
    subscribers: Vec<FrameDataSender>,
}

impl FrameFanOut {
    pub fn set_codec(&mut self, codec: Option<VideoCodec>) {
        self.cache = GopCache::new(codec);
    }

    /// A published frame: kept for readers still to come and sent to every reader; a reader
    /// that has gone is forgotten.
    pub fn publish(&mut self, frame: FrameData) {
        self.cache.push(&frame);
        self.subscribers
            .retain(|subscriber| subscriber.send(frame.clone()).is_ok());
    }

    /// A new reader: the cached frames first (when `with_cache`), then every live frame.
    pub fn subscribe(&mut self, subscriber: FrameDataSender, with_cache: bool) {
        if with_cache {
            for frame in self.cache.frames() {
                if subscriber.send(frame.clone()).is_err() {
                    return;
                }
            }
        }
        self.subscribers.push(subscriber);
    }

    /// The publisher has gone: readers see their feed end.
    pub fn close(&mut self) {
        self.subscribers.clear();
        self.cache.clear();
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }
}
