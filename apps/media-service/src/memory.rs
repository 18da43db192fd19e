//! Keeping the heap bounded over weeks of workers coming and going.
//!
//! A worker's graph runs on GStreamer streaming threads that come and go with it (rtspsrc,
//! queues, the muxer, the RTMP sink, decoders and encoders). glibc's malloc gives threads
//! up to 8 arenas per core and returns freed memory to the system only from the top of the
//! main heap; what a graph freed in the other arenas stays mapped, and the next worker's
//! new threads land in arenas with another free layout. Every worker appearance (a
//! publisher reconnecting, the media server restarting) so left its mark: the soak's RSS
//! climbed 102 -> 202 MiB in 30 min (19 faults), and a publisher restarted every 15 s took
//! it 99 -> 193 MiB in 5 min, while every GStreamer object was freed (`GST_TRACERS=leaks`)
//! and a stream without faults stayed flat (108 -> 109 MiB). Two measures, together (the
//! same 5 minutes: 90 -> 85 MiB; trimming alone: 93 -> 117 MiB and rising):
//!
//! - [`limit_arenas`]: at most [`ARENA_MAX`] arenas (unless `MALLOC_ARENA_MAX` says
//!   otherwise), so all threads share a few arenas whose free space is reused;
//! - [`release_freed_heap`] after each worker: `malloc_trim(0)` hands the free pages of
//!   every arena back (-47 MiB at once after 11 restarts without the cap).

/// Arenas malloc may create when `MALLOC_ARENA_MAX` is not set. The graph's threads move
/// little memory (compressed video, 48 kHz PCM), so sharing arenas costs no measurable time.
pub const ARENA_MAX: i32 = 2;

/// Caps glibc's malloc arenas at [`ARENA_MAX`] unless the environment sets
/// `MALLOC_ARENA_MAX` (glibc then follows it). Call it first thing, before threads start:
/// arenas already created stay. Returns the cap it set (`None`: left to the environment,
/// or not glibc).
pub fn limit_arenas() -> Option<i32> {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return None;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter under the allocator's lock.
        let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) } == 1;
        ok.then_some(ARENA_MAX)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Returns free heap pages of every malloc arena to the system (glibc `malloc_trim(0)`;
/// nothing elsewhere). Walks and locks every arena: call it off the async threads, once
/// per finished worker, not per buffer.
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes the allocator's own locks; it is safe to call at any
    // time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size of this process in KiB (`VmRSS` of `/proc/self/status`), when known.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_and_trimming_is_harmless() {
        let before = rss_kib().expect("VmRSS on Linux");
        assert!(before > 0);
        // Free a few MiB from another thread (another arena), then trim.
        std::thread::spawn(|| {
            let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 64 * 1024]).collect();
            drop(v);
        })
        .join()
        .unwrap();
        release_freed_heap();
        assert!(rss_kib().is_some());
    }
}
