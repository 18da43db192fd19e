#!/usr/bin/env bash
# Creates the Python virtualenv used by the interoperability tests (a standard
# python-socketio client talking to our Rust server) and, with --bench, the
# faster-whisper baseline of the ASR benchmark. Idempotent.
set -euo pipefail

CACHE="${LIVEDUB_CACHE:-/var/cache/livedub}"
VENV="$CACHE/venv"
log() { printf '[install-python] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import socketio, websocket, requests' 2>/dev/null; then
  log "installing python-socketio[client] into $VENV"
  "$VENV/bin/pip" install --disable-pip-version-check -q 'python-socketio[client]>=5.10' websocket-client requests
fi
log "python-socketio ready: $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("python-socketio"))' 2>/dev/null || echo '?')"

if [ "${1:-}" = "--bench" ]; then
  BENCH="$CACHE/venv-bench"
  [ -x "$BENCH/bin/python" ] || python3 -m venv "$BENCH"
  if ! "$BENCH/bin/python" -c 'import faster_whisper' 2>/dev/null; then
    log "installing faster-whisper into $BENCH (a few minutes)"
    "$BENCH/bin/pip" install --disable-pip-version-check -q faster-whisper
  fi
  log "faster-whisper ready in $BENCH"
fi
