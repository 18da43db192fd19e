//! The binary's env contract and start-up validation.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sts-service"))
}

#[test]
fn print_env_contract_is_json_generated_from_the_parser() {
    let out = bin().arg("--print-env-contract").output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let rows = v.as_array().unwrap();
    let find = |n: &str| {
        rows.iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(find("STS_PORT")["default"], "3000");
    assert_eq!(find("PROCESSING_TIMEOUT")["default"], "30");
    assert_eq!(find("MAX_INFLIGHT")["default"], "3");
    assert_eq!(find("DEVICE")["default"], "cpu");
    assert!(find("STS_AUTH_TOKEN")["default"].is_null());
    assert!(rows
        .iter()
        .all(|r| r["meaning"].as_str().is_some_and(|m| !m.is_empty())));
}

fn bad(var: &str, value: &str) -> String {
    // Port 0 (not 3000) in case a bad value were ever accepted; the variable under test wins.
    let mut cmd = bin();
    cmd.env("STS_PORT", "0").env(var, value);
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "{var}={value} must stop the service");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(var), "names the variable: {err}");
    assert!(err.contains(value), "names the value: {err}");
    err
}

#[test]
fn bad_values_stop_the_service_with_one_line() {
    assert!(bad("MAX_INFLIGHT", "0").contains("1..=64"));
    assert!(bad("TRANSLATION_PROVIDER", "deepl").contains("apertium"));
    assert!(bad("TTS_PROVIDER", "festival").contains("espeak"));
    assert!(bad("STS_MODE", "mirror").contains("echo"));
    assert!(bad("PROCESSING_TIMEOUT", "soon").contains("seconds"));
    assert!(bad("ASR_MODEL", "whisper-huge").contains("whisper-tiny.en"));
    assert!(bad("DEVICE", "cuda").contains("cpu"));
    assert!(bad("STS_PORT", "http").contains("STS_PORT"));
}

#[test]
fn providers_missing_keys_fail_at_start() {
    let out = bin()
        .env("TRANSLATION_PROVIDER", "google")
        .env_remove("GOOGLE_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GOOGLE_API_KEY"), "{err}");
    let out = bin()
        .env("TTS_PROVIDER", "coqui")
        .env_remove("TTS_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TTS_URL"));
}
