//! Checks the A/V measurement helpers on a known-good file (so a broken analyser cannot
//! make the live tests pass vacuously).

mod common;

#[test]
fn sync_clip_measures_zero_offset() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 6);
    let offs = common::av_offsets(&clip);
    assert_eq!(offs.len(), 6, "one flash+beep per second: {offs:?}");
    for o in offs {
        assert!(o.abs() < 0.03, "offset {o}");
    }
}

#[test]
fn shifted_audio_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("sync.mp4");
    common::make_sync_clip(&clip, 6);
    let shifted = dir.path().join("shifted.mkv");
    // Delay the audio by 200 ms.
    let st = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&clip)
        .args(["-itsoffset", "0.2", "-i"])
        .arg(&clip)
        .args(["-map", "0:v", "-map", "1:a", "-c", "copy"])
        .arg(&shifted)
        .status()
        .unwrap();
    assert!(st.success());
    let offs = common::av_offsets(&shifted);
    assert!(!offs.is_empty());
    for o in offs {
        assert!((o - 0.2).abs() < 0.03, "offset {o}");
    }
}
