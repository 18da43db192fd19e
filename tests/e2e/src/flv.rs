//! A reader of FLV as it arrives (ffmpeg's `-f flv pipe:1`): copies the bytes to a file and
//! reports every audio/video tag with its timestamp, so a live recording knows when each
//! packet of the output reached the viewer (see [`crate::media::LiveRecorder`]).

use std::io::{self, Read, Write};

/// One media tag of an FLV stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// True for audio (tag type 8), false for video (9).
    pub audio: bool,
    /// The tag's timestamp (ms, 32 bits: 24 + the extension byte).
    pub ts_ms: u32,
    /// Codec configuration (AAC AudioSpecificConfig / AVC sequence header): no media time.
    pub config: bool,
}

/// Reads an FLV stream from `input`, writes every byte to `out`, and calls `on_tag` for
/// each audio and video tag as soon as it has been read whole. Returns at the end of the
/// stream (a stream cut inside a tag ends without error: the tail is kept as received).
pub fn copy_tags(
    mut input: impl Read,
    mut out: impl Write,
    mut on_tag: impl FnMut(Tag),
) -> io::Result<()> {
    // Header: "FLV", version, flags, header size (u32 BE), then PreviousTagSize0.
    let mut head = [0u8; 9];
    let n = read_full(&mut input, &mut head)?;
    if n == 0 {
        return Ok(());
    }
    if n < head.len() || &head[..3] != b"FLV" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an FLV stream",
        ));
    }
    out.write_all(&head)?;
    let header_size = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as usize;
    let mut rest = vec![0u8; header_size.saturating_sub(9) + 4];
    if !copy_exact(&mut input, &mut out, &mut rest)? {
        return out.flush();
    }
    let mut data = Vec::new();
    loop {
        let mut th = [0u8; 11];
        if !copy_exact(&mut input, &mut out, &mut th)? {
            return out.flush();
        }
        let kind = th[0] & 0x1f;
        let size = u32::from_be_bytes([0, th[1], th[2], th[3]]) as usize;
        let ts_ms = u32::from_be_bytes([th[7], th[4], th[5], th[6]]);
        // The tag's data and the PreviousTagSize that follows it.
        data.resize(size + 4, 0);
        if !copy_exact(&mut input, &mut out, &mut data)? {
            return out.flush();
        }
        if kind == 8 || kind == 9 {
            // Byte 1 of AAC and AVC tags is the packet type: 0 = codec configuration.
            let config = size >= 2 && data[1] == 0 && {
                let codec = if kind == 8 {
                    data[0] >> 4
                } else {
                    data[0] & 0x0f
                };
                (kind == 8 && codec == 10) || (kind == 9 && codec == 7)
            };
            on_tag(Tag {
                audio: kind == 8,
                ts_ms,
                config,
            });
        }
    }
}

/// Reads into `buf` until it is full or the stream ends; returns how many bytes came.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Fills `buf` from `input` and writes what came to `out`; `Ok(false)` when the stream
/// ended first.
fn copy_exact(input: &mut impl Read, out: &mut impl Write, buf: &mut [u8]) -> io::Result<bool> {
    let n = read_full(input, buf)?;
    out.write_all(&buf[..n])?;
    Ok(n == buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, ts: u32, data: &[u8]) -> Vec<u8> {
        let size = data.len() as u32;
        let mut t = vec![kind];
        t.extend_from_slice(&size.to_be_bytes()[1..]);
        t.extend_from_slice(&ts.to_be_bytes()[1..]);
        t.push((ts >> 24) as u8);
        t.extend_from_slice(&[0, 0, 0]);
        t.extend_from_slice(data);
        t.extend_from_slice(&(size + 11).to_be_bytes());
        t
    }

    fn stream() -> Vec<u8> {
        let mut s = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        s.extend(tag(18, 0, b"onMetaData"));
        s.extend(tag(9, 0, &[0x17, 0, 0, 0, 0, 1]));
        s.extend(tag(8, 0, &[0xaf, 0, 0x11, 0x90]));
        s.extend(tag(9, 33, &[0x27, 1, 0, 0, 0, 9]));
        s.extend(tag(8, 0x0123_4567, &[0xaf, 1, 0x21]));
        s
    }

    #[test]
    fn tags_are_reported_and_bytes_copied() {
        let input = stream();
        let mut out = Vec::new();
        let mut tags = Vec::new();
        copy_tags(&input[..], &mut out, |t| tags.push(t)).unwrap();
        assert_eq!(out, input);
        let plain: Vec<(bool, u32, bool)> =
            tags.iter().map(|t| (t.audio, t.ts_ms, t.config)).collect();
        assert_eq!(
            plain,
            vec![
                (false, 0, true),
                (true, 0, true),
                (false, 33, false),
                (true, 0x0123_4567, false)
            ]
        );
    }

    #[test]
    fn a_cut_stream_ends_quietly_and_garbage_is_refused() {
        let input = stream();
        let cut = &input[..input.len() - 6];
        let mut out = Vec::new();
        let mut n = 0;
        copy_tags(cut, &mut out, |_| n += 1).unwrap();
        assert_eq!(n, 3, "the cut last tag is not reported");
        assert_eq!(out, cut);
        assert!(copy_tags(&b"RIFF0000000000"[..], Vec::new(), |_| {}).is_err());
        copy_tags(&b""[..], Vec::new(), |_| {}).unwrap();
    }
}
