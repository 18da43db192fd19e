#!/usr/bin/env bash
# Dub a file or stream into a file with the real sts-service (started here if none answers).
#   scripts/demo-dub.sh [INPUT] [OUTPUT]
# Defaults: the bundled 30 s English counting video -> out/demo-dubbed.mp4 (+ .report.json).
# Env: CARGO_TARGET_DIR (binaries), STS_PORT (default 3000), STS_SERVICE_URL (use an existing
# STS instead), any media-service / sts-service variable (FRAGMENT_DURATION_MS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
INPUT="${1:-tests/e2e/fixtures/test_streams/30s-counting-english.mp4}"
OUTPUT="${2:-out/demo-dubbed.mp4}"
TARGET="${CARGO_TARGET_DIR:-/var/cache/livedub/target}"
MEDIA_BIN="${MEDIA_SERVICE_BIN:-$TARGET/debug/media-service}"
STS_BIN="${STS_SERVICE_BIN:-$TARGET/debug/sts-service}"
STS_PORT="${STS_PORT:-3000}"
for b in "$MEDIA_BIN" "$STS_BIN"; do
  [ -x "$b" ] || { echo "demo: $b is missing; run: cargo build -p media-service -p sts-service" >&2; exit 1; }
done

STS_PID=""
cleanup() { if [ -n "$STS_PID" ]; then kill "$STS_PID" 2>/dev/null || true; wait "$STS_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT INT TERM

if [ -z "${STS_SERVICE_URL:-}" ]; then
  export STS_SERVICE_URL="http://127.0.0.1:$STS_PORT"
  if ! curl -fsS "$STS_SERVICE_URL/health" >/dev/null 2>&1; then
    mkdir -p out
    echo "demo: starting sts-service on :$STS_PORT (log: out/demo-sts.log)" >&2
    STS_PORT="$STS_PORT" HOST=127.0.0.1 LOG_LEVEL="${STS_LOG_LEVEL:-INFO}" "$STS_BIN" >out/demo-sts.log 2>&1 &
    STS_PID=$!
    for _ in $(seq 1 240); do
      curl -fsS "$STS_SERVICE_URL/health" >/dev/null 2>&1 && break
      kill -0 "$STS_PID" 2>/dev/null || { echo "demo: sts-service exited; see out/demo-sts.log:" >&2; tail -5 out/demo-sts.log >&2; exit 1; }
      sleep 0.5
    done
    curl -fsS "$STS_SERVICE_URL/health" >/dev/null || { echo "demo: sts-service not healthy after 120 s" >&2; exit 1; }
  fi
fi

LOG_LEVEL="${LOG_LEVEL:-WARN}" SEGMENT_DIR="${SEGMENT_DIR:-out/segments}" \
  "$MEDIA_BIN" dub --input "$INPUT" --output "$OUTPUT"

REPORT="$OUTPUT.report.json"
if command -v jq >/dev/null && [ -f "$REPORT" ]; then
  echo
  echo "transcript -> Spanish as spoken by the dub, per fragment ($REPORT):"
  jq -r '.fragments[] | "  [\(.pts_ms/1000)s] \(.status): \(.transcript) -> \(.spoken // .translation)"' "$REPORT"
  jq -r '"mix: \(.mix_mode)" + (if .mix_mode == "voice-over" then " (original ducked \(.duck_db) dB under the dubbed voice)" else " (dubbed audio only)" end)' "$REPORT"
fi
echo "dubbed video: $OUTPUT"
